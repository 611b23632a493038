"""reconcile-bypass and the event handlers: re-apply everything recorded.

Forwards follow NethVoice's ports and instances; bypassed trunks, NAT settings and
domain aliases are re-applied where NethVoice or the proxy changed them back.
"""

from . import configure, forwarding
from .cluster import read_cluster
from .step import Failure, ValidationFailed, log
from .store import Store


def reconcile(data=None, action="reconcile-bypass"):
    dry_run = bool((data or {}).get("dry_run"))
    store = Store()
    result = {"plan": [], "dry_run": dry_run, "changed": False, "conntrack": [], "reloaded": [], "problems": []}
    with store.locked():
        intent = store.load()
        if not intent["forwards"] and not intent.get("bypass"):
            return result
        cluster = read_cluster()
        forwards = forwarding.reconcile_forwards(store, intent, cluster, dry_run, action)
        result["plan"] += forwards["plan"]
        result["conntrack"] = forwards["conntrack"]
        for instance, mine in sorted(intent.get("bypass", {}).items()):
            if instance not in cluster.nethvoice or not any(mine.values()):
                continue  # gone (the record waits for its return), or nothing recorded
            request = dict(configure.recorded_request(mine), dry_run=dry_run)
            try:
                out = configure.configure_instance(store, intent, cluster, instance, request, action)
            except (Failure, ValidationFailed) as err:
                # one instance's problem must not stop the others nor the forwards
                log(f"reconcile of {instance} failed: {err}")
                result["problems"].append({"instance": instance, "message": str(err)})
                continue
            result["plan"] += [dict(c, instance=instance) for c in out["plan"]]
            if out["reloaded"]:
                result["reloaded"].append(instance)
    result["changed"] = any(c["op"] != "flush_conntrack" for c in result["plan"])
    return result
