# SPDX-License-Identifier: GPL-3.0-or-later
"""Port-forward actions: check the input, read the world, plan, apply, record.

Every action that changes something holds the state lock from reading to recording,
so concurrent tasks and event handlers see each other's results; planning is
forward_plan's, applying and recording forward_changes'.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from . import forward_plan as plan
from . import forward_requests as requests
from . import forward_view as view
from . import keeper, migration
from .changes import plan_json
from .cluster import read_cluster
from .conflicts import forward_key
from .errors import Failure, Refused, problem
from .firewalld import Firewalld
from .forward_changes import commit, recover, rule_changes
from .forward_plan import PERMANENT, RUNTIME
from .model import SIP_PORT, transport_protocol
from .step import critical, log, set_progress
from .store import Store, now

# --- reading the world ---------------------------------------------------------------


def read_world(record, store=None):
    """The cluster view and firewalld's rules of every zone in use. firewalld is read in
    a thread: its D-Bus waits overlap the (slow) import of redis-py. With the store
    (the caller holds its lock), an interrupted change is undone first (recover):
    returns (record, cluster, fw, zone, observed)."""
    def firewall():
        fw = Firewalld()
        recovered = recover(store, record, fw) if store is not None else record
        return (recovered, fw, *observe_in_use(fw, recovered))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(firewall)
        cluster = read_cluster()
        record, fw, zone, observed = pending.result()
    return record, cluster, fw, zone, observed


def observe(fw, zones):
    return {zone: {config: fw.rich_rules(zone, config) for config in plan.CONFIGS} for zone in sorted(zones)}


def observe_in_use(fw, record):
    """The default zone, and the rules of it and of every zone a forward is in."""
    zone = fw.default_zone()
    return zone, observe(fw, {zone} | {e.zone for e in record.forwards.values()})


def read_trunks_via_proxy(entries):
    """The trunks that still use the proxy, for the forwards without a source (their
    warning names them): {(instance, protocol): [trunks]}."""
    from .freepbx import read_trunks

    found = {}
    for instance in sorted({e.instance for e in entries if e.source is None}):
        try:
            trunks = read_trunks(instance)
        except Failure as err:
            log(f"trunk list not available for warnings: {err}")
            continue
        for trunk in trunks:
            if trunk.get("outbound_proxy"):
                found.setdefault((instance, transport_protocol(trunk)), []).append(trunk)
    return found


def node_port_holders(fw, zone, cluster):
    """Who holds which ports on this node: its own services, the cluster VPN, the proxy,
    every module's ports, what firewalld opens in the zone."""
    from .cluster import vpn_endpoint_port
    from .guards import port_holders

    return port_holders(open_ports=fw.open_ports(zone), modules=cluster.modules, proxy_id=cluster.proxy_id,
                        proxy_srv=cluster.proxy_srv, vpn_ports=[vpn_endpoint_port(cluster.node_id)])


# --- actions -------------------------------------------------------------------------

def plan_additions(entries, record, nethvoice, proxy_env, zone, observed, trunks_via_proxy):
    """(changes, entries after, warnings) for requested forwards: new ones planned from
    scratch (adopted when their rule is already there), owned ones put back as asked."""
    changes, after, warnings = [], {}, []
    lan_rules = plan.proxy_rules(observed[zone][RUNTIME] | observed[zone][PERMANENT])
    ours = plan.known_rules(record.forwards, nethvoice, observed)
    others = [r for r in (plan.desired_rule(e, nethvoice) for e in record.forwards.values()) if r]
    index = plan.rule_index(observed)
    for entry, owned in entries:
        desired = plan.desired_rule(entry, nethvoice)
        outcome = (plan.plan_reconcile(entry, desired, observed, explicit=True) if owned
                   else plan.plan_new(entry, desired, observed))
        changes += outcome.changes
        after[entry.id] = outcome.entry
        warnings += view.forward_warnings(desired, lan_rules, proxy_env,
                                          trunks_via_proxy.get((entry.instance, entry.protocol), []), others,
                                          plan.competing_rules(outcome.entry, observed, ours | {outcome.entry.rule},
                                                               index))
    return changes, after, warnings


def add_port_forward(data):
    checked = requests.checked_requests(data)
    dry_run = bool((data or {}).get("dry_run"))
    store = Store()
    with store.locked(), critical():
        record = keeper.load_for_change(store, migration.read_facts)
        record, cluster, fw, zone, observed = read_world(record, None if dry_run else store)
        if any(wanted["port"] != SIP_PORT for _, wanted in checked):
            requests.check_ports_held(checked, node_port_holders(fw, zone, cluster))
        entries = requests.new_entries(checked, record, cluster.nethvoice, zone, now())
        set_progress(30)
        changes, after, warnings = plan_additions(entries, record, cluster.nethvoice, cluster.proxy, zone,
                                                  observed, read_trunks_via_proxy([e for e, _ in entries]))
        result = {"plan": plan_json(changes), "dry_run": dry_run, "changed": bool(rule_changes(changes)),
                  "warnings": warnings, "conntrack": []}
        update = {fid: e for fid, e in after.items() if record.forwards.get(fid) != e}
        if not dry_run and (changes or update):
            set_progress(60)
            stamped = {fid: _stamped(e, record.forwards.get(fid)) for fid, e in update.items()}
            record, result["conntrack"] = commit(store, record, fw, changes, "add-port-forward", update=stamped)
            observed = plan.observed_after(observed, changes)
            after = {fid: record.forwards[fid] for fid in after}
        planned = "planned" if result["changed"] else "in_sync"
        result["forwards"] = [dict(view.describe(e, cluster.nethvoice, observed), **({"state": planned} if dry_run
                                                                                       else {}))
                              for e in after.values()]
    if len(result["forwards"]) == 1 and "forwards" not in (data or {}):
        result["forward"] = result["forwards"][0]
    return result


def _stamped(entry, old):
    return replace(entry, updated=now()) if old is not None else entry


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
        record = keeper.load_for_change(store, migration.read_facts)
        missing = [problem(f"{field}.{i}" if field == "ids" else field, "not_found", fid)
                   for i, fid in enumerate(ids) if fid not in record.forwards]
        if missing:
            raise Refused(missing)
        fw = Firewalld()
        if not dry_run:
            record = recover(store, record, fw)
        changes = removal_plan(record, [record.forwards[fid] for fid in ids], fw)
        result = {"plan": plan_json(changes), "dry_run": dry_run, "changed": bool(rule_changes(changes)),
                  "conntrack": [], "removed": ids}
        if not dry_run:
            _, result["conntrack"] = commit(store, record, fw, changes, "remove-port-forward", remove=ids)
    return result


def removal_plan(record, entries, fw):
    """The rules to withdraw for these forwards: reading Redis only when one of them
    may stand as a rule NethVoice moved (its instance's current port is needed)."""
    observed = observe(fw, {e.zone for e in entries})
    moved = [e for e in entries if not any(plan.presence(e.rule, e.zone, observed).to_json().values())]
    nethvoice = read_cluster().nethvoice if moved else {}
    return [c for e in entries for c in plan.plan_removal(e, plan.desired_rule(e, nethvoice), observed)]


def list_port_forwards(_data=None):
    record = keeper.load_for_view(Store()).record  # read-only: no lock, the file is replaced atomically
    record, cluster, _fw, zone, observed = read_world(record)
    zone_rules = observed[zone][RUNTIME] | observed[zone][PERMANENT]
    proxy = [r.to_rich_rule() for r in plan.proxy_rules(zone_rules)]
    ours = plan.known_rules(record.forwards, cluster.nethvoice, observed)
    conflicts = [plan.plan_reconcile(e, plan.desired_rule(e, cluster.nethvoice), observed).conflict
                 for e in record.forwards.values()]
    return {
        "zone": zone,
        "forwards": view.describe_all(record.forwards, cluster.nethvoice, observed),
        "conflicts": [c.to_json() for c in conflicts if c],
        "proxy_rules": proxy,
        "other_rules": sorted(r for r in zone_rules - ours - set(proxy) if "forward-port" in r),
    }


def reconcile_forwards(store, record, cluster, dry_run, action, resolutions):
    """Bring firewalld back to the record where the platform undid it (a reload, NethVoice's
    ports or instances), apply the conflicts' ways out chosen, and report the other
    conflicts. The caller holds the state lock. Returns (record, {plan, conntrack, conflicts})."""
    result = {"plan": [], "conntrack": [], "conflicts": []}
    if not record.forwards and not record.pending:
        return record, result
    fw = Firewalld()
    if not dry_run:
        record = recover(store, record, fw)
    observed = observe(fw, {e.zone for e in record.forwards.values()})
    changes, update, released = [], {}, []
    for entry in record.forwards.values():
        choice = resolutions.choice(forward_key(entry.id))
        outcome = plan.plan_reconcile(entry, plan.desired_rule(entry, cluster.nethvoice), observed, choice)
        changes += outcome.changes
        if outcome.conflict:
            result["conflicts"].append(outcome.conflict)
        if outcome.entry is None:
            released.append(entry.id)
        elif outcome.entry != entry:
            update[entry.id] = replace(outcome.entry, updated=now())
    result["plan"] = changes
    if (changes or update or released) and not dry_run:
        record, result["conntrack"] = commit(store, record, fw, changes, action, update=update, remove=released)
    return record, result


def remove_all_forwards(store, record, action):
    """Withdraw every rule this module made, and nothing else (adopted rules stay). The
    caller holds the state lock. Returns (record, removed ids)."""
    if not record.forwards and not record.pending:
        return record, []
    fw = Firewalld()
    record = recover(store, record, fw)
    ids = sorted(record.forwards)
    changes = removal_plan(record, list(record.forwards.values()), fw)
    record, _ = commit(store, record, fw, changes, action, remove=ids)
    return record, ids
