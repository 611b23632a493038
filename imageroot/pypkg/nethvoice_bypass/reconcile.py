"""reconcile-bypass and the event handlers: re-apply everything recorded.

Forwards follow NethVoice's ports and instances; bypassed trunks, NAT settings and
domain aliases are re-applied where NethVoice or the proxy changed them back.
"""

import os

from . import bypass_actions, bypass_plan, forward_actions, systemd
from .cluster import read_cluster
from .model import Refused
from .step import Failure, PartialFailure, critical, log
from .store import Store


def reconcile(data=None, action="reconcile-bypass"):
    """Re-apply what is recorded; then, changed or not, the self-check refreshes the
    metrics (after each reconcile-bypass and each event handler)."""
    dry_run = bool((data or {}).get("dry_run"))
    try:
        return reconcile_all(dry_run, action)
    finally:
        if not dry_run:
            systemd.start_self_check(action)


def reconcile_all(dry_run, action):
    store = Store()
    result = {"plan": [], "dry_run": dry_run, "changed": False, "conntrack": [], "reloaded": [], "problems": []}
    with store.locked(), critical():
        intent = store.load()
        if not intent["forwards"] and not intent.get("bypass") and not intent.get("pending"):
            return result
        cluster = read_cluster()
        try:
            forwards = forward_actions.reconcile_forwards(store, intent, cluster, dry_run, action)
            result["plan"] += forwards["plan"]
            result["conntrack"] = forwards["conntrack"]
        except (Failure, Refused) as err:  # the trunks, NAT and routes are still tried
            log(f"reconcile of the forwards failed: {err}")
            result["problems"].append({"instance": "", "part": "forwards", "message": str(err)})
        for instance, mine in sorted(intent.get("bypass", {}).items()):
            if instance not in cluster.nethvoice or not any(mine.values()):
                continue  # gone (the record waits for its return), or nothing recorded
            request = dict(bypass_plan.recorded_request(mine), dry_run=dry_run)
            try:
                out = bypass_actions.configure_instance(store, intent, cluster, instance, request, action)
            except (Failure, Refused) as err:
                # one instance's problem must not stop the others nor the forwards
                log(f"reconcile of {instance} failed: {err}")
                result["problems"].append({"instance": instance, "part": "bypass", "message": str(err)})
                continue
            result["plan"] += [dict(c, instance=instance) for c in out["plan"]]
            if out["reloaded"]:
                result["reloaded"].append(instance)
    result["changed"] = any(c["op"] != "flush_conntrack" for c in result["plan"])
    if result["problems"]:
        raise PartialFailure("reconcile-bypass tried every part; failed: " + "; ".join(
            f"{p['instance'] or p['part']}: {p['message']}" for p in result["problems"]), result)
    return result


def undo_all(action="destroy-module"):
    """On module removal: withdraw our firewalld rules and proxy routes, give trunks
    their proxy back and FreePBX its previous NAT settings. Each part is tried even
    when another fails; if any fails, the action fails, so remove-module stops and
    the state dir, which records what is left to undo, survives."""
    store = Store()
    result = {"removed": [], "restored": [], "problems": []}
    with store.locked(), critical():
        intent = store.load()
        try:
            result["removed"] = forward_actions.remove_all_forwards(store, intent, action)
        except Failure as err:
            result["problems"].append({"instance": "", "message": str(err)})
        bypassed = {i: m for i, m in intent.get("bypass", {}).items() if any(m.values())}
        if bypassed:
            restore_all(store, intent, bypassed, action, result)
    if result["problems"]:
        module = os.environ.get("MODULE_ID", "<module id>")
        raise Failure("the bypass could not be fully undone, so the module stays installed: "
                      + "; ".join(p["message"] for p in result["problems"])
                      + f" (fix the cause and remove it again, or force: remove-module --force {module})")
    return result


def restore_all(store, intent, bypassed, action, result):
    try:
        cluster = read_cluster()
    except Failure as err:
        result["problems"].append({"instance": "", "message": str(err)})
        return
    for instance in sorted(bypassed):
        if instance not in cluster.nethvoice:
            continue  # gone with its database: nothing to give back
        try:
            bypass_actions.configure_instance(store, intent, cluster, instance,
                                         {"trunks": [], "nat": None, "domain_aliases": []}, action)
            result["restored"].append(instance)
        except (Failure, Refused) as err:
            log(f"could not undo the bypass of {instance}: {err}")
            result["problems"].append({"instance": instance, "message": str(err)})
