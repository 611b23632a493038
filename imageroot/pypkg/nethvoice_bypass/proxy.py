"""The node's NethVoice proxy and its route API (add-route, remove-route,
list-routes), run through the cluster API with the module's own credentials."""

from .step import Failure, log


def proxy_task(cluster, action, data, timeout=None):
    from .clusterapi import DEFAULT_TIMEOUT, run_task

    if not cluster.proxy_id:
        raise Failure("this node has no nethvoice-proxy: domain aliases need one")
    return run_task(cluster.proxy_id, action, data, timeout=timeout or DEFAULT_TIMEOUT, check=True)["output"]


def read_routes(cluster, timeout=None):
    """{domain: route} of the node's proxy."""
    return {r["domain"]: r for r in proxy_task(cluster, "list-routes", {}, timeout) or []}


def apply_routes(cluster, changes):
    """The route changes of a plan, in order; on failure those made are undone."""
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
    """Each route change made, undone. A route add_route re-pointed is one of ours
    (another route is refused), so it gets back its URIs with our description."""
    for change in reversed(done):
        try:
            if change["op"] == "add_route" and change["before"]:
                proxy_task(cluster, "add-route", {"domain": change["domain"], "address": [
                    {"uri": uri, "description": change["description"]} for uri in change["before"]]})
            elif change["op"] == "add_route":
                proxy_task(cluster, "remove-route", {"domain": change["domain"]})
            elif change["op"] == "remove_route":
                proxy_task(cluster, "add-route", {"domain": change["domain"],
                                                  "address": change["before"]["address"]})
        except Failure as err:
            log(f"could not undo the route change for {change['domain']}: {err}")
