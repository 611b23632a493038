"""configure-bypass: trunks without the proxy, FreePBX NAT settings, domain aliases.

The input is checked before anything is read; then the instance's world is read
(its FreePBX site, the proxy's routes, the other instances' trunk names), the plan is
bypass_plan's, and it is applied: proxy routes first (each undone if a later step
fails), then all FreePBX changes in one database transaction, then one reload.
"""

import os

from . import bypass_plan as plan
from . import freepbx, proxy, systemd
from .cluster import read_cluster
from .forward_requests import select_instance
from .model import Refused
from .step import Failure, critical, log, set_progress, stop_if_cancelled
from .store import Store, now


def configure_bypass(data):
    """What is wrong with the input is known before anything is read: it is the answer
    when a read fails (Redis or the cluster API down); when the reads work, the plan
    refuses it with every other problem the world shows."""
    data = data or {}
    early = plan.request_problems(data)
    store = Store()
    with store.locked(), critical():
        try:
            cluster = read_cluster()
            instance = select_instance(cluster.nethvoice, data.get("instance"))
            return configure_instance(store, store.load(), cluster, instance, data, "configure-bypass")
        except Failure:
            if early:
                raise Refused(early) from None
            raise


def read_instance(cluster, instance, data, mine):
    """Everything plan_configuration needs about one instance, read first."""
    others = {}
    if "trunks" in data:  # to say on which instance a trunk that is not here is
        for other in (i for i in cluster.nethvoice if i != instance):
            try:
                others[other] = [t["name"] for t in freepbx.read_trunks(other)]
            except Failure as err:
                log(f"trunks of {other} not readable: {err}")
    return {
        "instance": instance, "nethvoice": cluster.nethvoice[instance], "proxy": cluster.proxy,
        "cluster_network": cluster.cluster_network, "other_trunks": others, "mine": mine,
        "nethvoice_hosts": {e.get("NETHVOICE_HOST", "").lower() for e in cluster.nethvoice.values()} - {""},
        "site": freepbx.read_site(instance),
        "routes": proxy.read_routes(cluster) if "domain_aliases" in data or mine["domain_aliases"] else {},
    }


def configure_instance(store, intent, cluster, instance, data, action):
    """Plan and apply one instance's bypass; the caller holds the state lock and is
    inside step.critical().

    The new record is written before the first change, marked pending: a step that
    dies midway leaves its changes recorded, and reconcile re-applies them. A failure
    or a cancel before the database commit undoes the route changes and restores the
    record. After the commit the change is recorded whatever happens to the reload;
    a reload that fails stays due (reload_pending) and the next run does it."""
    dry_run = bool(data.get("dry_run"))
    mine = intent.setdefault("bypass", {}).get(instance) or plan.empty_instance_intent()
    world = read_instance(cluster, instance, data, mine)
    set_progress(30)
    changes, desired_trunks, nat_desired, domains = plan.plan_configuration(data, world)
    trunks_by_id = {str(t["id"]): t for t in world["site"]["trunks"]}
    bypassed = desired_trunks if desired_trunks is not None else list(mine["trunks"])
    warnings = plan.warnings_for(trunks_by_id, bypassed,
                                 [c for c in changes if c["op"] in ("set_externip", "set_localnets")])
    reload_due = plan.needs_reload(changes) or bool(mine.get("reload_pending"))
    after = plan.recorded_state(mine, world, data, desired_trunks, nat_desired, domains, now())
    result = {"instance": instance, "plan": changes, "dry_run": dry_run, "changed": bool(changes),
              "needs_reload": reload_due, "reloaded": False, "warnings": warnings}
    if dry_run or (not changes and not reload_due and after == plan.settled(mine)):
        return result
    apply_configuration(store, intent, cluster, instance, changes, mine, after, reload_due, action)
    result["reloaded"] = reload_due
    return result


def apply_configuration(store, intent, cluster, instance, changes, mine, after, reload_due, action):
    stop_if_cancelled()
    task = {"action": action, "task": os.environ.get("AGENT_TASK_ID", ""), "since": now()}
    restore = restorer(store, intent, instance)
    record(store, intent, instance, dict(after, reload_pending=reload_due, pending=task))
    try:
        done_routes = proxy.apply_routes(cluster, changes)
        try:
            set_progress(60)
            stop_if_cancelled()
            db_changes = [c for c in changes if c["op"] in plan.DB_OPS]
            if db_changes:
                freepbx.apply_changes(instance, db_changes)
        except BaseException:
            proxy.undo_routes(cluster, done_routes)
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
    record(store, intent, instance, after)
    store.audit(action, changes, mine, after, instance=instance)
    systemd.start_self_check(action)


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
