# SPDX-License-Identifier: GPL-3.0-or-later
"""configure-bypass: trunks without the proxy, FreePBX NAT settings, domain aliases.

The input is checked before anything is read; then the instance's world is read (its
FreePBX site, the proxy's routes when an alias is asked or owned, the other instances'
trunk names), the plan is bypass_plan's, and it is applied: proxy routes first (each
undone if a later step fails), then all FreePBX changes in one database transaction,
then one reload.
"""

import os
from dataclasses import replace

from . import bypass_plan as plan
from . import bypass_request as request
from . import freepbx, keeper, migration, proxy, systemd
from .changes import DB_OPS, plan_json
from .cluster import read_cluster
from .conflicts import NONE
from .errors import Failure, Refused
from .forward_requests import select_instance
from .record import Task
from .step import SD_WARNING, critical, log, set_progress, stop_if_cancelled
from .store import Store, now


def configure_bypass(data):
    """What is wrong with the input is known before anything is read: it is the answer
    when a read fails (Redis or the cluster API down); when the reads work, the plan
    refuses it with every other problem the world shows."""
    data = data or {}
    early = request.request_problems(data)
    store = Store()
    with store.locked(), critical():
        try:
            cluster = read_cluster()
            instance = select_instance(cluster.nethvoice, data.get("instance"))
            record = keeper.load_for_change(store, migration.read_facts)
            _, result = configure_instance(store, record, cluster, instance, data, "configure-bypass")
            return result
        except Failure:
            if early:
                raise Refused(early) from None
            raise


def read_instance(cluster, instance, data, mine):
    """(InstanceWorld, the proxy's routes as read) for one instance; data None: a run
    without a request."""
    data = data or {}
    others = {}
    if "trunks" in data:  # to say on which instance a trunk that is not here is
        for other in (i for i in cluster.nethvoice if i != instance):
            try:
                others[other] = [t["name"] for t in freepbx.read_trunks(other)]
            except Failure as err:
                log(f"trunks of {other} not readable: {err}")
    site = freepbx.read_site(instance)
    routes = proxy.read_routes(cluster) if data.get("domain_aliases") or mine.aliases else {}
    world = plan.InstanceWorld(
        instance=instance, nethvoice=cluster.nethvoice[instance], proxy=cluster.proxy,
        cluster_network=cluster.cluster_network, other_trunks=others, trunks=tuple(site["trunks"]),
        nat=site["nat"], routes=proxy.route_uris(routes),
        nethvoice_hosts=frozenset(e.get("NETHVOICE_HOST", "").lower() for e in cluster.nethvoice.values()) - {""})
    return world, routes


def configure_instance(store, record, cluster, instance, data, action, resolutions=NONE, dry_run=None):
    """Plan and apply one instance's bypass; the caller holds the state lock and is inside
    step.critical(). data None: no request (keep what is owned, repair what the platform
    undid, apply the chosen ways out). Returns (record, result).

    The new record is written before the first change, marked pending: a step that
    dies midway leaves its changes recorded, and reconcile re-applies them. A failure
    or a cancel before the database commit undoes the route changes and restores the
    record. After the commit the change is recorded whatever happens to the reload;
    a reload that fails stays due (reload_pending) and the next run does it."""
    dry_run = bool((data or {}).get("dry_run")) if dry_run is None else dry_run
    mine = record.instance(instance)
    world, routes = read_instance(cluster, instance, data, mine)
    set_progress(30)
    wanted = request.desired(data, world, mine) if data is not None else plan.Desired()
    planned = plan.plan_instance(wanted, world, mine, now(), explicit=data is not None, resolutions=resolutions)
    changes = list(planned.changes)
    trunks_by_id = {str(t["id"]): t for t in world.trunks}
    reload_due = plan.needs_reload(changes) or mine.reload_pending
    result = {"instance": instance, "plan": plan_json(changes), "dry_run": dry_run, "changed": bool(changes),
              "needs_reload": reload_due, "reloaded": False, "conflicts": [c.to_json() for c in planned.conflicts],
              "warnings": request.warnings_for(trunks_by_id, sorted(planned.mine.trunks), changes)}
    after = planned.mine.settled()
    if dry_run or (not changes and not reload_due and after == mine.settled()):
        return record, result
    record = apply_configuration(store, record, cluster, instance, changes, after, reload_due, action, routes)
    result["reloaded"] = reload_due
    return record, result


def apply_configuration(store, record, cluster, instance, changes, after, reload_due, action, routes):
    stop_if_cancelled()
    task = Task(action, os.environ.get("AGENT_TASK_ID", ""), now())
    start, text = record, store.read_record_text()
    store.save_record(record.with_instance(instance, replace(after, reload_pending=reload_due,
                                                                 pending=task)).to_json())
    try:
        done_routes = proxy.apply_routes(cluster, changes, routes)
        not_live = proxy.make_live(cluster, done_routes)
        try:
            set_progress(60)
            stop_if_cancelled()
            db_changes = [c for c in changes if c.op in DB_OPS]
            if db_changes:
                freepbx.apply_changes(instance, db_changes)
        except BaseException:
            proxy.undo_routes(cluster, done_routes, routes)
            raise
    except BaseException as err:
        store.restore_record_text(text)
        if isinstance(err, Failure) and changes:
            raise type(err)(f"{err}; nothing was changed (route changes undone, database left as it was)") from err
        raise
    record = start.with_instance(instance, replace(after, reload_pending=reload_due))
    store.save_record(record.to_json())
    if reload_due:
        try:
            freepbx.reload(instance)
        except Failure as err:
            keeper.save(store, start, record, action, changes, instance=instance, reloaded=False)
            raise Failure(f"the changes were applied and recorded, but {err}: the next configure-bypass or "
                          "reconcile-bypass reloads") from err
    record = keeper.save(store, start, start.with_instance(instance, after), action, changes, instance=instance)
    systemd.start_self_check(action)
    if not_live:
        log(f"the proxy's routes for {', '.join(not_live)} are written but not live yet: the proxy refused "
            "its reloads; the next change or a proxy restart applies them", SD_WARNING)
    return record
