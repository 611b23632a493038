# SPDX-License-Identifier: GPL-3.0-or-later
"""reconcile-bypass and the event handlers: re-apply what the platform undid, report
every other difference as a conflict, and apply the ways out the user chose.

Unattended runs (events, the self-check timer) repair only what the platform is known
to undo: a firewalld reload or restart, NethVoice's SIP ports or instances changing,
NethVoice putting its proxy back on a bypassed trunk. `keep_theirs` / `put_ours_back`
name conflicts (their keys, as get-status lists them) to release or to re-apply.
"""

import os
from dataclasses import replace

from . import bypass_actions, forward_actions, keeper, migration, proxy, systemd
from .changes import FLUSH_CONNTRACK, RECORD_OPS, RELEASE_ROUTE, REMOVE_ROUTE, RouteChange, plan_json
from .cluster import read_cluster
from .conflicts import Resolutions
from .errors import Failure, PartialFailure, Refused, problem
from .step import critical, log
from .store import Store


def reconcile(data=None, action="reconcile-bypass"):
    """Re-apply what is recorded; then, changed or not, the self-check refreshes the
    metrics (after each reconcile-bypass and each event handler)."""
    data = data or {}
    dry_run = bool(data.get("dry_run"))
    resolutions = Resolutions(frozenset(data.get("keep_theirs") or ()), frozenset(data.get("put_ours_back") or ()))
    try:
        return reconcile_all(dry_run, action, resolutions)
    finally:
        if not dry_run:
            systemd.start_self_check(action)


def check_resolutions(record, resolutions):
    """Each key names something the module owns, and is chosen one way only."""
    owned = {f"forward:{fid}" for fid in record.forwards}
    for instance, mine in record.instances.items():
        owned |= {f"trunk:{instance}:{t}" for t in mine.trunks} | {f"nat:{instance}:{n}" for n in mine.nat}
        owned |= {f"alias:{instance}:{d}" for d in mine.aliases}
    problems = []
    for name in ("keep_theirs", "put_ours_back"):
        for i, key in enumerate(sorted(getattr(resolutions, name))):
            if key not in owned:
                problems.append(problem(f"{name}.{i}", "not_owned", key))
            elif name == "put_ours_back" and key in resolutions.keep_theirs:
                problems.append(problem(f"{name}.{i}", "both_ways", key))
    if problems:
        raise Refused(problems)


def reconcile_all(dry_run, action, resolutions):
    store = Store()
    result = {"plan": [], "dry_run": dry_run, "changed": False, "conntrack": [], "reloaded": [], "problems": [],
              "conflicts": []}
    with store.locked(), critical():
        record = keeper.load_for_change(store, migration.read_facts)
        check_resolutions(record, resolutions)
        if record.is_empty():
            return result
        cluster = read_cluster()
        try:
            record, forwards = forward_actions.reconcile_forwards(store, record, cluster, dry_run, action,
                                                                  resolutions)
            result["plan"] += forwards["plan"]
            result["conntrack"] = forwards["conntrack"]
            result["conflicts"] += forwards["conflicts"]
        except (Failure, Refused) as err:  # the trunks, NAT and routes are still tried
            log(f"reconcile of the forwards failed: {err}")
            result["problems"].append({"instance": "", "part": "forwards", "message": str(err)})
        for instance in sorted(record.instances):
            try:
                if instance in cluster.nethvoice:
                    record, out = bypass_actions.configure_instance(store, record, cluster, instance, None, action,
                                                                    resolutions, dry_run)
                else:
                    record, out = withdraw_gone(store, record, cluster, instance, action, dry_run)
            except (Failure, Refused) as err:
                # one instance's problem must not stop the others nor the forwards
                log(f"reconcile of {instance} failed: {err}")
                result["problems"].append({"instance": instance, "part": "bypass", "message": str(err)})
                continue
            result["plan"] += out["plan"]
            result["conflicts"] += out["conflicts"]
            if out["reloaded"]:
                result["reloaded"].append(instance)
    return finish(result)


def finish(result):
    result["plan"] = [c if isinstance(c, dict) else c.to_json() for c in result["plan"]]
    result["conflicts"] = [c if isinstance(c, dict) else c.to_json() for c in result["conflicts"]]
    result["changed"] = any(c["op"] not in (FLUSH_CONNTRACK, *RECORD_OPS) for c in result["plan"])
    if result["problems"]:
        raise PartialFailure("reconcile-bypass tried every part; failed: " + "; ".join(
            f"{p['instance'] or p['part']}: {p['message']}" for p in result["problems"]), result)
    return result


def withdraw_gone(store, record, cluster, instance, action, dry_run):
    """An instance that is gone: its routes, which live in the proxy, are withdrawn where
    they still hold the module's URIs, and released; its trunks and NAT settings went
    with its database, and the record keeps them for its return (a restore)."""
    mine = record.instance(instance)
    out = {"plan": [], "conflicts": [], "reloaded": False}
    if not mine.aliases:
        return record, out
    routes = proxy.read_routes(cluster)
    current = proxy.route_uris(routes)
    changes = []
    for domain, alias in sorted(mine.aliases.items()):
        ours = current.get(domain) == alias.uris
        changes.append(RouteChange(REMOVE_ROUTE if ours else RELEASE_ROUTE, domain, current.get(domain), None,
                                   alias.description, f"instance {instance} is gone" if ours else
                                   "instance gone; the route no longer holds the module's URIs: left as it is",
                                   instance))
    out["plan"] = plan_json(changes)
    if not dry_run:
        proxy.apply_routes(cluster, changes, routes)
        after = record.with_instance(instance, replace(mine, aliases={}))
        record = keeper.save(store, record, after, action, changes, instance=instance)
    return record, out


def undo_all(action="destroy-module"):
    """On module removal: withdraw our firewalld rules and proxy routes, give trunks and
    FreePBX's NAT settings back what they had before the module, where they still hold
    what the module set (what someone else changed is left as they set it). Each part
    is tried even when another fails; if any fails, the action fails, so remove-module
    stops and the state dir, which records what is left to undo, survives."""
    store = Store()
    result = {"removed": [], "restored": [], "problems": [], "plan": []}
    with store.locked(), critical():
        record = keeper.load_for_change(store, migration.read_facts)
        try:
            record, result["removed"] = forward_actions.remove_all_forwards(store, record, action)
        except Failure as err:
            result["problems"].append({"instance": "", "message": str(err)})
        if record.instances:
            restore_all(store, record, action, result)
    if result["problems"]:
        module = os.environ.get("MODULE_ID", "<module id>")
        raise Failure("the bypass could not be fully undone, so the module stays installed: "
                      + "; ".join(p["message"] for p in result["problems"])
                      + f" (fix the cause and remove it again, or force: remove-module --force {module})")
    return result


def restore_all(store, record, action, result):
    try:
        cluster = read_cluster()
    except Failure as err:
        result["problems"].append({"instance": "", "message": str(err)})
        return
    for instance in sorted(record.instances):
        try:
            if instance in cluster.nethvoice:
                record, out = bypass_actions.configure_instance(
                    store, record, cluster, instance, {"trunks": [], "nat": None, "domain_aliases": []}, action)
            else:
                record, out = withdraw_gone(store, record, cluster, instance, action, False)
            result["restored"].append(instance)
            result["plan"] += out["plan"]
        except (Failure, Refused) as err:
            log(f"could not undo the bypass of {instance}: {err}")
            result["problems"].append({"instance": instance, "message": str(err)})
