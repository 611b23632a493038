"""configure-bypass: trunks without the proxy, FreePBX NAT settings, domain aliases.

Order of apply: proxy routes first (each is undone if a later step fails), then all
FreePBX changes in one database transaction, then one `fwconsole reload`.
"""

import os

from . import bypass, freepbx
from .cluster import read_cluster
from .forwards import select_instance
from .step import Cancelled, Failure, ValidationFailed, cancel_requested, critical, log, set_progress
from .store import Store, now

DB_OPS = {"bypass_trunk", "restore_trunk", "set_externip", "set_localnets"}


def empty_instance_intent():
    return {"trunks": {}, "nat": None, "domain_aliases": {}}


def proxy_task(cluster, action, data, timeout=None):
    from .clusterapi import DEFAULT_TIMEOUT, run_task

    if not cluster.proxy_id:
        raise Failure("this node has no nethvoice-proxy: domain aliases need one")
    return run_task(cluster.proxy_id, action, data, timeout=timeout or DEFAULT_TIMEOUT, check=True)["output"]


def read_routes(cluster, timeout=None):
    return {r["domain"]: r for r in proxy_task(cluster, "list-routes", {}, timeout) or []}


def other_instance_trunks(cluster, instance):
    names = {}
    for other in cluster.nethvoice:
        if other != instance:
            try:
                names[other] = [t["name"] for t in freepbx.read_trunks(other)]
            except Failure as err:
                log(f"trunks of {other} not readable: {err}")
    return names


def plan_configuration(data, cluster, instance, site, mine, routes):
    """Everything configure-bypass would change, or ValidationFailed."""
    nv = cluster.nethvoice[instance]
    changes, errors = [], []
    desired_trunks = None
    if "trunks" in data:
        desired_trunks, errs = bypass.resolve_trunks(data["trunks"], site["trunks"], {})
        if errs:  # only then is it worth reading the other instances, to say where a trunk is
            desired_trunks, errs = bypass.resolve_trunks(data["trunks"], site["trunks"],
                                                         other_instance_trunks(cluster, instance))
        errors += errs
    nat_desired = None
    if "nat" in data and data["nat"] is not None:
        nat_desired, errs = bypass.check_nat(data["nat"], cluster.cluster_network)
        errors += errs
    domains = None
    if "domain_aliases" in data:
        hosts = {e.get("NETHVOICE_HOST", "").lower() for e in cluster.nethvoice.values()} - {""}
        domains, errs = bypass.check_domains(data["domain_aliases"], hosts, routes or {}, mine["domain_aliases"])
        errors += errs
    if errors:
        raise ValidationFailed(errors)
    if desired_trunks is not None:
        changes += bypass.plan_trunks(desired_trunks, site["trunks"], mine["trunks"],
                                      bypass.proxy_outbound_value(nv))
    if nat_desired is not None:
        changes += bypass.plan_nat(nat_desired, site)
    elif "nat" in data and mine["nat"]:  # null: give FreePBX back what it had before us
        changes += bypass.plan_nat(mine["nat"]["previous"], site)
    if domains is not None:
        changes += bypass.plan_domains(domains, routes, mine["domain_aliases"],
                                       bypass.route_uri(cluster.proxy, nv), f"{instance} via nethvoice-bypass")
    return changes, desired_trunks, nat_desired, domains


def apply_routes(cluster, changes):
    done = []
    try:
        for change in changes:
            if change["op"] == "add_route":
                proxy_task(cluster, "add-route", {"domain": change["domain"], "address": [
                    {"uri": change["uri"], "description": change["description"]}]})
            elif change["op"] == "remove_route":
                proxy_task(cluster, "remove-route", {"domain": change["domain"]})
            else:
                continue
            done.append(change)
    except BaseException:
        undo_routes(cluster, done)
        raise
    return done


def undo_routes(cluster, done):
    for change in reversed(done):
        try:
            if change["op"] == "add_route" and not change["before"]:
                proxy_task(cluster, "remove-route", {"domain": change["domain"]})
            elif change["op"] == "remove_route":
                proxy_task(cluster, "add-route", {"domain": change["domain"],
                                                  "address": change["before"]["address"]})
        except Failure as err:
            log(f"could not undo the route change for {change['domain']}: {err}")


def configure_bypass(data):
    data = data or {}
    store = Store()
    with store.locked(), critical():
        cluster = read_cluster()
        instance = select_instance(cluster.nethvoice, data.get("instance"))
        return configure_instance(store, store.load(), cluster, instance, data, "configure-bypass")


def recorded_request(mine):
    """The configure-bypass input that re-applies what was recorded for an instance."""
    data = {"trunks": [int(t) for t in mine["trunks"]]}
    if mine["domain_aliases"]:
        data["domain_aliases"] = list(mine["domain_aliases"])
    if mine["nat"]:
        data["nat"] = {"external_address": mine["nat"]["externip"], "local_networks": mine["nat"]["localnets"],
                       "include_cluster_network": False}
    return data


def recorded_state(mine, site, cluster, instance, data, desired_trunks, nat_desired, domains):
    """What the instance's record becomes once the plan is applied. Trunks asked for
    are managed even when they need no change (already without the proxy)."""
    after = settled(mine)
    trunks_by_id = {str(t["id"]): t for t in site["trunks"]}
    if desired_trunks is not None:
        after["trunks"] = {tid: {"name": trunks_by_id[tid]["name"],
                                 "since": mine["trunks"].get(tid, {}).get("since", now())} for tid in desired_trunks}
    if nat_desired is not None:
        previous = (mine["nat"] or {}).get("previous") or {"externip": site["externip"],
                                                          "localnets": site["localnets"]}
        after["nat"] = {**nat_desired, "previous": previous}
    elif "nat" in data:
        after["nat"] = None
    if domains is not None:
        after["domain_aliases"] = {d: {"uri": bypass.route_uri(cluster.proxy, cluster.nethvoice[instance])}
                                   for d in domains}
    return after


def configure_instance(store, intent, cluster, instance, data, action):
    """Plan and apply one instance's bypass; the caller holds the state lock and is
    inside step.critical().

    The new record is written before the first change, marked pending: a step that
    dies midway leaves its changes recorded, and reconcile re-applies them. A failure
    or a cancel before the database commit undoes the route changes and restores the
    record. After the commit the change is recorded whatever happens to the reload;
    a reload that fails stays due (reload_pending) and the next run does it."""
    dry_run = bool(data.get("dry_run"))
    mine = intent.setdefault("bypass", {}).get(instance) or empty_instance_intent()
    site = freepbx.read_site(instance)
    routes = read_routes(cluster) if "domain_aliases" in data or mine["domain_aliases"] else {}
    set_progress(30)
    changes, desired_trunks, nat_desired, domains = plan_configuration(data, cluster, instance, site, mine,
                                                                      routes)
    trunks_by_id = {str(t["id"]): t for t in site["trunks"]}
    bypassed = desired_trunks if desired_trunks is not None else list(mine["trunks"])
    warnings = bypass.warnings_for(trunks_by_id, bypassed,
                                   [c for c in changes if c["op"] in ("set_externip", "set_localnets")])
    db_changes = [c for c in changes if c["op"] in DB_OPS]
    reload_due = bool(db_changes) or bool(mine.get("reload_pending"))
    after = recorded_state(mine, site, cluster, instance, data, desired_trunks, nat_desired, domains)
    result = {"instance": instance, "plan": changes, "dry_run": dry_run, "changed": bool(changes),
              "reloaded": False, "warnings": warnings}
    if dry_run or (not changes and not reload_due and after == settled(mine)):
        return result
    stop_if_cancelled()
    task = {"action": action, "task": os.environ.get("AGENT_TASK_ID", ""), "since": now()}
    restore = restorer(store, intent, instance)
    record(store, intent, instance, dict(after, reload_pending=reload_due, pending=task))
    try:
        done_routes = apply_routes(cluster, changes)
        try:
            set_progress(60)
            stop_if_cancelled()
            if db_changes:
                freepbx.apply_changes(instance, db_changes)
        except BaseException:
            undo_routes(cluster, done_routes)
            raise
    except BaseException as err:
        restore()
        if isinstance(err, Failure) and changes:
            raise type(err)(f"{err}; nothing was changed (route changes undone, database left as it was)") from err
        raise
    record(store, intent, instance, dict(after, reload_pending=reload_due))
    if reload_due:
        try:
            freepbx.reload(instance)
        except Failure as err:
            store.audit(action, changes, mine, intent["bypass"][instance], instance=instance, reloaded=False)
            raise Failure(f"the changes were applied and recorded, but {err}: the next configure-bypass or "
                          "reconcile-bypass reloads") from err
        result["reloaded"] = True
    record(store, intent, instance, after)
    store.audit(action, changes, mine, after, instance=instance)
    return result


def settled(mine):
    """An instance's record without the marks of a change in progress."""
    return {**empty_instance_intent(), **{k: v for k, v in mine.items() if k not in ("pending", "reload_pending")}}


def restorer(store, intent, instance):
    """Puts the intent back as it is now, file included."""
    existed = os.path.exists(store.intent_path)
    previous = intent.get("bypass", {}).get(instance)

    def restore():
        if previous is None:
            intent["bypass"].pop(instance, None)
        else:
            intent["bypass"][instance] = previous
        if existed:
            store.save(intent)
        else:
            os.remove(store.intent_path)
    return restore


def record(store, intent, instance, mine):
    intent["bypass"][instance] = mine
    store.save(intent)


def stop_if_cancelled():
    if cancel_requested():
        raise Cancelled("cancelled")
