"""Port-forward actions: check the input, read the world, plan, apply, record.

Every action that changes something holds the state lock from reading to recording,
so concurrent tasks and event handlers see each other's results; planning is
forward_plan's, applying and recording forward_changes'.
"""

from concurrent.futures import ThreadPoolExecutor

from . import forward_plan as plan
from . import forward_requests as requests
from .cluster import read_cluster
from .firewalld import Firewalld
from .forward_changes import commit, recover
from .forward_plan import CONFIGS, PERMANENT, RUNTIME, rule_changes
from .model import Refused, problem, transport_protocol
from .step import Failure, critical, log, set_progress
from .store import Store, now

# --- reading the world ---------------------------------------------------------------

def read_world(intent, store=None):
    """The cluster view and firewalld's rules of every zone in use. firewalld is read in
    a thread: its D-Bus waits overlap the (slow) import of redis-py. With the store
    (the caller holds its lock), an interrupted change is undone first (recover)."""
    def firewall():
        fw = Firewalld()
        if store is not None:
            recover(store, intent, fw)
        return (fw, *observe_in_use(fw, intent))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(firewall)
        cluster = read_cluster()
        fw, zone, observed = pending.result()
    return cluster, fw, zone, observed


def observe(fw, zones):
    return {zone: {config: fw.rich_rules(zone, config) for config in CONFIGS} for zone in sorted(zones)}


def observe_in_use(fw, intent):
    """The default zone, and the rules of it and of every zone a forward is in."""
    zone = fw.default_zone()
    return zone, observe(fw, {zone} | {e["zone"] for e in intent["forwards"].values()})


def read_trunks_via_proxy(entries):
    """The trunks that still use the proxy, for the forwards without a source (their
    warning names them): {(instance, protocol): [trunks]}."""
    from .freepbx import read_trunks

    found = {}
    for instance in sorted({e["instance"] for e in entries if e["source"] is None}):
        try:
            trunks = read_trunks(instance)
        except Failure as err:
            log(f"trunk list not available for warnings: {err}")
            continue
        for trunk in trunks:
            if trunk.get("outbound_proxy"):
                found.setdefault((instance, transport_protocol(trunk)), []).append(trunk)
    return found


# --- actions -------------------------------------------------------------------------

def add_port_forward(data):
    checked = requests.checked_requests(data)
    dry_run = bool((data or {}).get("dry_run"))
    store = Store()
    with store.locked(), critical():
        intent = store.load()
        cluster, fw, zone, observed = read_world(intent, None if dry_run else store)
        entries = requests.new_entries(checked, intent, cluster.nethvoice, zone, now())
        set_progress(30)
        changes, warnings = plan.plan_additions(entries, intent, cluster, zone, observed,
                                                read_trunks_via_proxy(entries))
        result = {"plan": changes, "dry_run": dry_run, "changed": bool(rule_changes(changes)),
                  "warnings": warnings, "conntrack": []}
        # new, moved, re-described, or found already in firewalld
        recorded = [e for e in entries if intent["forwards"].get(e["id"]) != dict(e, applied=True)]
        if not dry_run and (changes or recorded):
            set_progress(60)
            update = {e["id"]: dict(e, applied=True, updated=now()) for e in recorded}
            result["conntrack"] = commit(store, intent, fw, changes, "add-port-forward", update=update)
            observed = plan.observed_after(observed, changes)
        planned = "planned" if result["changed"] else "in_sync"
        result["forwards"] = [dict(plan.describe(e, cluster, observed), **({"state": planned} if dry_run else {}))
                              for e in entries]
    if len(result["forwards"]) == 1 and "forwards" not in (data or {}):
        result["forward"] = result["forwards"][0]
    return result


def removal_ids(data):
    data = data or {}
    if "id" not in data and "ids" not in data:
        raise Refused.one("id", "required", None)
    return ("ids", data["ids"]) if "ids" in data else ("id", [data["id"]])


def remove_port_forward(data):
    field, ids = removal_ids(data)
    dry_run = bool((data or {}).get("dry_run"))
    store = Store()
    with store.locked(), critical():
        intent = store.load()
        missing = [problem(f"{field}.{i}" if field == "ids" else field, "not_found", fid)
                   for i, fid in enumerate(ids) if fid not in intent["forwards"]]
        if missing:
            raise Refused(missing)
        fw = Firewalld()
        if not dry_run:
            recover(store, intent, fw)
        entries = [intent["forwards"][fid] for fid in ids]
        changes = plan.plan_removals(entries, observe(fw, {e["zone"] for e in entries}))
        result = {"plan": changes, "dry_run": dry_run, "changed": bool(changes), "conntrack": [],
                  "removed": ids}
        if not dry_run:
            result["conntrack"] = commit(store, intent, fw, changes, "remove-port-forward", remove=ids)
    return result


def list_port_forwards(_data=None):
    intent = Store().load()  # read-only: no lock, the intent file is replaced atomically
    cluster, _fw, zone, observed = read_world(intent)
    zone_rules = observed[zone][RUNTIME] | observed[zone][PERMANENT]
    proxy = [r.to_rich_rule() for r in plan.proxy_rules(zone_rules)]
    ours = plan.known_rules(intent, observed)
    return {
        "zone": zone,
        "forwards": plan.describe_all(intent, cluster, observed),
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
    changes, updates = plan.plan_reconcile(intent, cluster, observe(fw, {e["zone"] for e in
                                                                        intent["forwards"].values()}))
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
    changes = plan.plan_removals(entries, observe(fw, {e["zone"] for e in entries}))
    commit(store, intent, fw, changes, action, remove=[e["id"] for e in entries])
    return [e["id"] for e in entries]
