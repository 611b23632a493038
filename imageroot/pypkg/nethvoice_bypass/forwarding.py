"""Port-forward actions: validate, read the world, plan, apply, record.

Every action holds the state lock from reading to recording, so concurrent tasks
and event handlers see each other's results.
"""

from concurrent.futures import ThreadPoolExecutor

from . import conntrack, forwards
from .cluster import read_cluster
from .firewalld import INPUT_ERRORS, Firewalld, FirewalldError
from .forwards import CONFIGS, PERMANENT, RUNTIME
from .model import (
    PROXY_LAN_PORTS,
    SIP_PORT,
    SIPS_PORT,
    InvalidValue,
    canonical_source,
    family_of,
    forward_id,
)
from .step import Failure, ValidationFailed, log, set_progress, validation_error
from .store import Store, now

FORWARD_FIELDS = ("instance", "protocol", "family", "port", "source", "allow_any_source", "description")


# --- input -------------------------------------------------------------------------

def forward_requests(data):
    """One forward from the top level, or several from `forwards` (one task for many)."""
    data = data or {}
    if "forwards" in data:
        mixed = [f for f in FORWARD_FIELDS if f in data and f != "instance"]
        if mixed:
            raise ValidationFailed([validation_error(mixed[0], "not_allowed_with_forwards", data[mixed[0]])])
        return [({"instance": data.get("instance"), **item}, f"forwards.{i}.")
                for i, item in enumerate(data["forwards"])]
    return [(data, "")]


def check_forward_request(request, prefix):
    """Canonical values for one requested forward, or the list of its errors."""
    errors = []

    def fail(name, reason, value):
        errors.append(validation_error(prefix + name, reason, value))

    port = request.get("port", SIP_PORT)
    if port == SIPS_PORT:
        fail("port", "sips_not_supported", port)
    elif port in PROXY_LAN_PORTS:
        fail("port", "reserved_by_proxy", port)
    source, family = request.get("source"), request.get("family")
    if source is not None:
        try:
            source = canonical_source(source, family)
            family = family or family_of(source)
        except InvalidValue as err:
            fail("source", err.reason, request.get("source"))
        if request.get("allow_any_source"):
            fail("allow_any_source", "conflicts_with_source", True)
    elif not request.get("allow_any_source"):
        fail("source", "required", None)
    return errors, {
        "instance": request.get("instance"),
        "protocol": request.get("protocol", "udp"),
        "family": family or "ipv4",
        "port": port,
        "source": source,
        "description": (request.get("description") or "").strip(),
    }


# --- reading the world ---------------------------------------------------------------

def read_world(intent):
    """The cluster view and firewalld's rules of every zone in use. firewalld is read in
    a thread: its D-Bus waits overlap the (slow) import of redis-py."""
    def firewall():
        fw = Firewalld()
        zone = fw.default_zone()
        return fw, zone, observe(fw, {zone} | {e["zone"] for e in intent["forwards"].values()})

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(firewall)
        cluster = read_cluster()
        fw, zone, observed = pending.result()
    return cluster, fw, zone, observed


def observe(fw, zones):
    return {zone: {config: fw.rich_rules(zone, config) for config in CONFIGS} for zone in sorted(zones)}


def trunks_via_proxy(instance, protocol):
    from .freepbx import read_trunks, transport_protocol

    try:
        trunks = read_trunks(instance)
    except Failure as err:
        log(f"trunk list not available for warnings: {err}")
        return []
    return [t for t in trunks if t.get("outbound_proxy") and transport_protocol(t) == protocol]


def describe_all(intent, cluster, observed):
    return [describe(e, cluster, observed) for e in sorted(intent["forwards"].values(), key=lambda e: e["id"])]


def describe(entry, cluster, observed):
    desired = forwards.desired_rule(entry, cluster)
    rule = forwards.current_rule(entry, desired, observed)
    return {
        "id": entry["id"],
        "instance": entry["instance"],
        "family": entry["family"],
        "protocol": entry["protocol"],
        "port": entry["port"],
        "source": entry.get("source"),
        "description": entry.get("description", ""),
        "zone": entry["zone"],
        "rule": rule,
        "target_port": desired.to_port if desired else None,
        "state": forwards.forward_state(entry, desired, observed),
        "present": forwards.presence(rule, entry["zone"], observed),
    }


def known_rules(intent, observed):
    """Every rule text that stands for a managed forward (forwards.related_rules)."""
    return set().union(*(forwards.related_rules(e, observed) for e in intent["forwards"].values()))


# --- applying ------------------------------------------------------------------------

def apply_changes(fw, changes):
    """Apply rule changes: runtime one by one, permanent in one write per zone; on
    failure undo what was done and re-raise. Conntrack flushes come last and never
    fail the action."""
    done = []
    try:
        for change in changes:
            if change["op"] in ("add_rule", "remove_rule") and change["config"] == RUNTIME:
                (fw.add_rich_rule if change["op"] == "add_rule" else fw.remove_rich_rule)(
                    change["zone"], change["rule"], RUNTIME)
                done.append(change)
        for zone in sorted({c["zone"] for c in changes if c.get("config") == PERMANENT}):
            ours = [c for c in changes if c.get("config") == PERMANENT and c["zone"] == zone]
            fw.change_permanent_rules(zone, add=[c["rule"] for c in ours if c["op"] == "add_rule"],
                                      remove=[c["rule"] for c in ours if c["op"] == "remove_rule"])
            done += ours
    except Failure as err:
        undo(fw, done)
        if isinstance(err, FirewalldError) and err.code in INPUT_ERRORS and not done:
            raise ValidationFailed([validation_error("(root)", "rejected_by_firewalld",
                                                     f"{err.code}: {err.detail}")]) from err
        raise Failure(f"{err}; the changes already made were undone") from err
    flushes = [c for c in changes if c["op"] == "flush_conntrack"]
    return [dict(result, forward=c["forward"]) for c, result in zip(flushes, conntrack.flush_many(flushes),
                                                                      strict=True)]


def undo(fw, done):
    for config in (PERMANENT, RUNTIME):
        for zone in sorted({c["zone"] for c in done if c["config"] == config}):
            ours = [c for c in done if c["config"] == config and c["zone"] == zone]
            added = [c["rule"] for c in ours if c["op"] == "add_rule"]
            removed = [c["rule"] for c in ours if c["op"] == "remove_rule"]
            try:
                if config == PERMANENT:
                    fw.change_permanent_rules(zone, add=removed, remove=added)
                else:
                    for rule in added:
                        fw.remove_rich_rule(zone, rule, RUNTIME)
                    for rule in removed:
                        fw.add_rich_rule(zone, rule, RUNTIME)
            except Failure as err:
                log(f"could not undo the {config} changes in zone {zone}: {err}")


def rule_changes(changes):
    return [c for c in changes if c["op"] != "flush_conntrack"]


# --- actions -------------------------------------------------------------------------

def add_port_forward(data):
    requests = forward_requests(data)
    checked = [check_forward_request(request, prefix) for request, prefix in requests]
    errors = [e for errs, _ in checked for e in errs]
    if errors:
        raise ValidationFailed(errors)
    dry_run = bool((data or {}).get("dry_run"))
    store = Store()
    with store.locked():
        intent = store.load()
        cluster, fw, zone, observed = read_world(intent)
        before = {k: dict(v) for k, v in intent["forwards"].items()}
        entries, errors = [], []
        for (_, prefix), (_, wanted) in zip(requests, checked, strict=True):
            try:
                instance = forwards.select_instance(cluster.nethvoice, wanted["instance"], prefix + "instance")
            except ValidationFailed as err:
                errors += err.errors
                continue
            if forwards.target_port(cluster.nethvoice[instance], wanted["protocol"]) is None:
                errors.append(validation_error(prefix + "instance", "no_sip_port", instance))
                continue
            fid = forward_id(wanted["family"], wanted["protocol"], wanted["port"], wanted["source"])
            existing = intent["forwards"].get(fid)
            if existing and existing["instance"] != instance:
                errors.append(validation_error(prefix + "source", "already_forwarded", wanted["source"]))
                continue
            entry = dict(existing) if existing else {
                **wanted, "id": fid, "instance": instance, "zone": zone, "rule": "", "applied": False,
                "created": now(),
            }
            if wanted["description"]:
                entry["description"] = wanted["description"]
            entries.append(entry)
        if errors:
            raise ValidationFailed(errors)
        set_progress(30)
        changes, warnings = [], []
        lan_rules = forwards.proxy_rules(observed[zone][RUNTIME] | observed[zone][PERMANENT])
        ours = [forwards.desired_rule(e, cluster) for e in intent["forwards"].values()]
        for entry in entries:
            desired = forwards.desired_rule(entry, cluster)
            if not entry["rule"]:
                entry["rule"] = desired.to_rich_rule()
            changes += forwards.plan_forward(entry, desired, observed)
            via_proxy = trunks_via_proxy(entry["instance"], entry["protocol"]) \
                if entry["source"] is None else []
            warnings += forwards.forward_warnings(desired, lan_rules, cluster.proxy, via_proxy,
                                                  [r for r in ours if r])
            entry["rule"] = desired.to_rich_rule()
        result = {"plan": changes, "dry_run": dry_run, "changed": bool(rule_changes(changes)),
                  "warnings": warnings, "conntrack": []}
        recorded = [e for e in entries if intent["forwards"].get(e["id"]) != dict(e, applied=True)]
        if not dry_run and (changes or recorded):
            set_progress(60)
            result["conntrack"] = apply_changes(fw, changes)
            for entry in recorded:  # new, moved, re-described, or found already in firewalld
                intent["forwards"][entry["id"]] = dict(entry, applied=True, updated=now())
            store.save(intent)
            store.audit("add-port-forward", rule_changes(changes), before, intent["forwards"])
            observed = observe(fw, {zone} | {e["zone"] for e in entries})
        result["forwards"] = [
            describe(e, cluster, observed) if not dry_run else
            dict(describe(e, cluster, observed), state="planned" if rule_changes(changes) else "in_sync")
            for e in entries]
    if len(result["forwards"]) == 1 and "forwards" not in (data or {}):
        result["forward"] = result["forwards"][0]
    return result


def remove_port_forward(data):
    data = data or {}
    if "id" not in data and "ids" not in data:
        raise ValidationFailed([validation_error("id", "required", None)])
    ids = data["ids"] if "ids" in data else [data["id"]]
    field = "ids" if "ids" in data else "id"
    dry_run = bool(data.get("dry_run"))
    store = Store()
    with store.locked():
        intent = store.load()
        errors = [validation_error(f"{field}.{i}" if field == "ids" else field, "not_found", fid)
                  for i, fid in enumerate(ids) if fid not in intent["forwards"]]
        if errors:
            raise ValidationFailed(errors)
        fw = Firewalld()
        entries = [intent["forwards"][fid] for fid in ids]
        observed = observe(fw, {e["zone"] for e in entries})
        changes = [c for e in entries for c in forwards.plan_forward(e, None, observed, removing=True)]
        result = {"plan": changes, "dry_run": dry_run, "changed": bool(changes), "conntrack": [],
                  "removed": ids}
        if not dry_run:
            before = {k: dict(v) for k, v in intent["forwards"].items()}
            result["conntrack"] = apply_changes(fw, changes)
            for fid in ids:
                del intent["forwards"][fid]
            store.save(intent)
            store.audit("remove-port-forward", rule_changes(changes), before, intent["forwards"])
    return result


def list_port_forwards(_data=None):
    intent = Store().load()  # read-only: no lock, the intent file is replaced atomically
    cluster, _fw, zone, observed = read_world(intent)
    zone_rules = observed[zone][RUNTIME] | observed[zone][PERMANENT]
    proxy = [r.to_rich_rule() for r in forwards.proxy_rules(zone_rules)]
    described = describe_all(intent, cluster, observed)
    ours = known_rules(intent, observed)
    return {
        "zone": zone,
        "forwards": described,
        "proxy_rules": proxy,
        "other_rules": sorted(r for r in zone_rules - ours - set(proxy) if "forward-port" in r),
    }


def reconcile_forwards(store, intent, cluster, dry_run, action):
    """Bring firewalld back to the intent: re-add missing rules, follow port changes,
    withdraw rules whose NethVoice instance is gone (kept in intent for its return).
    The caller holds the state lock."""
    result = {"plan": [], "conntrack": []}
    if not intent["forwards"]:
        return result
    fw = Firewalld()
    entries = list(intent["forwards"].values())
    observed = observe(fw, {e["zone"] for e in entries})
    changes, updates = [], {}
    for entry in entries:
        desired = forwards.desired_rule(entry, cluster)
        changes += forwards.plan_forward(entry, desired, observed)
        if desired is not None and desired.to_rich_rule() != entry["rule"]:
            updates[entry["id"]] = desired.to_rich_rule()
    result["plan"] = changes
    if (changes or updates) and not dry_run:  # updates alone: someone else moved the rule already
        before = {k: dict(v) for k, v in intent["forwards"].items()}
        result["conntrack"] = apply_changes(fw, changes)
        for fid, rule in updates.items():
            intent["forwards"][fid].update(rule=rule, updated=now())
        store.save(intent)
        store.audit(action, rule_changes(changes), before, intent["forwards"])
    return result


def remove_all_forwards(store, intent, action):
    """Withdraw every rule this module recorded, and nothing else. The caller holds
    the state lock."""
    entries = list(intent["forwards"].values())
    if not entries:
        return []
    fw = Firewalld()
    observed = observe(fw, {e["zone"] for e in entries})
    changes = [c for e in entries for c in forwards.plan_forward(e, None, observed, removing=True)]
    before = {k: dict(v) for k, v in intent["forwards"].items()}
    apply_changes(fw, changes)
    intent["forwards"] = {}
    store.save(intent)
    store.audit(action, rule_changes(changes), before, {})
    return [e["id"] for e in entries]
