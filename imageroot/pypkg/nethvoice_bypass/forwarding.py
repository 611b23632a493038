"""Port-forward actions: validate, read the world, plan, apply, record.

Every action holds the state lock from reading to recording, so concurrent tasks
and event handlers see each other's results.
"""

import os
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
from .step import (
    SD_WARNING,
    Cancelled,
    Failure,
    ValidationFailed,
    cancel_requested,
    checkpoint,
    critical,
    log,
    set_progress,
    validation_error,
)
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

def read_world(intent, store=None):
    """The cluster view and firewalld's rules of every zone in use. firewalld is read in
    a thread: its D-Bus waits overlap the (slow) import of redis-py. With the store
    (the caller holds its lock), an interrupted change is undone first (recover)."""
    def firewall():
        fw = Firewalld()
        if store is not None:
            recover(store, intent, fw)
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
    """One forward's view; its state is "unknown" while the cluster or firewalld cannot
    be read (cluster or observed None)."""
    desired = forwards.desired_rule(entry, cluster) if cluster else None
    rule = forwards.current_rule(entry, desired, observed) if observed else entry["rule"]
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
        "state": forwards.forward_state(entry, desired, observed) if cluster and observed else "unknown",
        "present": forwards.presence(rule, entry["zone"], observed) if observed else
        {"runtime": None, "permanent": None},
    }


def known_rules(intent, observed):
    """Every rule text that stands for a managed forward (forwards.related_rules)."""
    return set().union(*(forwards.related_rules(e, observed) for e in intent["forwards"].values()))


# --- applying ------------------------------------------------------------------------

def apply_changes(fw, changes):
    """Apply rule changes, every permanent change before the runtime ones: a firewalld
    reload between two calls then re-creates only what was about to be added and
    cannot bring back what was removed. Permanent changes go in one write per zone.
    On failure or cancel, what was done is undone and the error raised. Conntrack
    flushes come last and never fail the action."""
    rules = rule_changes(changes)
    done = []
    try:
        for zone in sorted({c["zone"] for c in rules if c["config"] == PERMANENT}):
            ours = [c for c in rules if c["config"] == PERMANENT and c["zone"] == zone]
            fw.change_permanent_rules(zone, add=[c["rule"] for c in ours if c["op"] == "add_rule"],
                                      remove=[c["rule"] for c in ours if c["op"] == "remove_rule"])
            done += ours
            stop_if_cancelled("after_permanent")
        for change in (c for c in rules if c["config"] == RUNTIME):
            (fw.add_rich_rule if change["op"] == "add_rule" else fw.remove_rich_rule)(
                change["zone"], change["rule"], RUNTIME)
            done.append(change)
            stop_if_cancelled("after_runtime")
    except Failure as err:
        failures = undo(fw, done)
        if failures:
            raise UndoFailed(f"{err}; undoing the changes already made failed too ({failures[0]}): the next "
                             "change or reconcile-bypass undoes them") from err
        if isinstance(err, Cancelled):
            raise Cancelled(f"cancelled: the {len(done)} firewalld changes already made were undone") from err
        if isinstance(err, FirewalldError) and err.code in INPUT_ERRORS and not done:
            raise ValidationFailed([validation_error("(root)", "rejected_by_firewalld",
                                                     f"{err.code}: {err.detail}")]) from err
        raise Failure(f"{err}; the changes already made were undone") from err
    flushes = [c for c in changes if c["op"] == "flush_conntrack"]
    return [dict(result, forward=c["forward"]) for c, result in zip(flushes, conntrack.flush_many(flushes),
                                                                      strict=True)]


def stop_if_cancelled(point):
    checkpoint(point)
    if cancel_requested():
        raise Cancelled("cancelled")


class UndoFailed(Failure):
    """A failure after which some changes could not be undone: they stay pending."""


def undo(fw, done, strict=False):
    """The inverse of done changes, in the same order of configurations. Each is
    idempotent, so undoing a change that was never made does nothing. Returns the
    failures (logged); strict: raises the first one, after trying everything."""
    failures = []
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
                failures.append(err)
    if strict and failures:
        raise failures[0]
    return failures


def rule_changes(changes):
    return [c for c in changes if c["op"] != "flush_conntrack"]


def commit(store, intent, fw, changes, action, update=None, remove=()):
    """Apply changes and record the outcome (the caller holds the lock and is inside
    step.critical()). Crash-safe: the intent names the changes as pending before the
    first is made, so wherever the step dies, no rule it wrote is without a record and
    the next locked action undoes them (recover); the forwards are updated once every
    change is made, in the same atomic write that clears the pending changes."""
    before = {k: dict(v) for k, v in intent["forwards"].items()}
    rules = rule_changes(changes)
    stop_if_cancelled("planned")
    if rules:
        intent["pending"] = {"action": action, "task": os.environ.get("AGENT_TASK_ID", ""), "since": now(),
                             "changes": rules}
        store.save(intent)
    try:
        stop_if_cancelled("pending_saved")
        flushed = apply_changes(fw, changes)
    except UndoFailed:
        raise  # pending stays: recover() undoes the rest
    except BaseException:
        intent.pop("pending", None)  # apply_changes undid what it did
        store.save(intent)
        raise
    checkpoint("before_commit")
    intent["forwards"].update(update or {})
    for fid in remove:
        intent["forwards"].pop(fid, None)
    intent.pop("pending", None)
    store.save(intent)
    checkpoint("committed")
    store.audit(action, rules, before, intent["forwards"])
    if cancel_requested():
        log("cancel requested after every change was made: the changes are kept and recorded", SD_WARNING)
    return flushed


def recover(store, intent, fw):
    """Undo the changes of a step that died before recording them (see commit)."""
    pending = intent.get("pending")
    if not pending:
        return
    log(f"undoing the changes of an interrupted {pending['action']} (task {pending['task'] or '-'})", SD_WARNING)
    undo(fw, pending["changes"], strict=True)  # on failure the record stays for the next try
    del intent["pending"]
    store.save(intent)
    store.audit("recover", pending["changes"], intent["forwards"], intent["forwards"], interrupted=pending)


# --- actions -------------------------------------------------------------------------

def add_port_forward(data):
    requests = forward_requests(data)
    checked = [check_forward_request(request, prefix) for request, prefix in requests]
    errors = [e for errs, _ in checked for e in errs]
    if errors:
        raise ValidationFailed(errors)
    dry_run = bool((data or {}).get("dry_run"))
    store = Store()
    with store.locked(), critical():
        intent = store.load()
        cluster, fw, zone, observed = read_world(intent, None if dry_run else store)
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
            # new, moved, re-described, or found already in firewalld
            update = {e["id"]: dict(e, applied=True, updated=now()) for e in recorded}
            result["conntrack"] = commit(store, intent, fw, changes, "add-port-forward", update=update)
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
    with store.locked(), critical():
        intent = store.load()
        errors = [validation_error(f"{field}.{i}" if field == "ids" else field, "not_found", fid)
                  for i, fid in enumerate(ids) if fid not in intent["forwards"]]
        if errors:
            raise ValidationFailed(errors)
        fw = Firewalld()
        if not dry_run:
            recover(store, intent, fw)
        entries = [intent["forwards"][fid] for fid in ids]
        observed = observe(fw, {e["zone"] for e in entries})
        changes = [c for e in entries for c in forwards.plan_forward(e, None, observed, removing=True)]
        result = {"plan": changes, "dry_run": dry_run, "changed": bool(changes), "conntrack": [],
                  "removed": ids}
        if not dry_run:
            result["conntrack"] = commit(store, intent, fw, changes, "remove-port-forward", remove=ids)
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
    if not intent["forwards"] and not intent.get("pending"):
        return result
    fw = Firewalld()
    if not dry_run:
        recover(store, intent, fw)
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
        update = {fid: dict(intent["forwards"][fid], rule=rule, updated=now()) for fid, rule in updates.items()}
        result["conntrack"] = commit(store, intent, fw, changes, action, update=update)
    return result


def remove_all_forwards(store, intent, action):
    """Withdraw every rule this module recorded, and nothing else. The caller holds
    the state lock."""
    if not intent["forwards"] and not intent.get("pending"):
        return []
    fw = Firewalld()
    recover(store, intent, fw)
    entries = list(intent["forwards"].values())
    observed = observe(fw, {e["zone"] for e in entries})
    changes = [c for e in entries for c in forwards.plan_forward(e, None, observed, removing=True)]
    commit(store, intent, fw, changes, action, remove=[e["id"] for e in entries])
    return [e["id"] for e in entries]
