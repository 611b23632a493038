# SPDX-License-Identifier: GPL-3.0-or-later
"""The node's NethVoice proxy and its route API (add-route, remove-route,
list-routes), run through the cluster API with the module's own credentials."""

from .changes import ADD_ROUTE, REMOVE_ROUTE
from .errors import Failure
from .step import log


def proxy_task(cluster, action, data, timeout=None):
    from .clusterapi import DEFAULT_TIMEOUT, run_task

    if not cluster.proxy_id:
        raise Failure("this node has no nethvoice-proxy: domain aliases need one")
    return run_task(cluster.proxy_id, action, data, timeout=timeout or DEFAULT_TIMEOUT, check=True)["output"]


def read_routes(cluster, timeout=None):
    """{domain: [{"uri", "description"}]} of the node's proxy, as list-routes gives them."""
    return {r["domain"]: r.get("address") or [] for r in proxy_task(cluster, "list-routes", {}, timeout) or []}


def route_uris(routes):
    """{domain: (uris)}: what the planners compare."""
    return {domain: tuple(a.get("uri", "") for a in address) for domain, address in routes.items()}


def apply_routes(cluster, changes, routes):
    """The route changes of a plan, in order; on failure those made are undone.
    routes: what read_routes gave, so an undo writes back exactly what was there."""
    done = []
    try:
        for change in changes:
            if change.op == ADD_ROUTE:
                proxy_task(cluster, "add-route", {"domain": change.domain, "address": [
                    {"uri": uri, "description": change.description} for uri in change.after]})
            elif change.op == REMOVE_ROUTE:
                proxy_task(cluster, "remove-route", {"domain": change.domain})
            else:
                continue
            done.append(change)
    except BaseException:
        undo_routes(cluster, done, routes)
        raise
    return done


def undo_routes(cluster, done, routes):
    """Each route change made, undone: the route as it was (its own descriptions), or
    no route where there was none."""
    for change in reversed(done):
        try:
            if change.domain in routes:
                proxy_task(cluster, "add-route", {"domain": change.domain, "address": routes[change.domain]})
            else:
                proxy_task(cluster, "remove-route", {"domain": change.domain})
        except Failure as err:
            log(f"could not undo the route change for {change.domain}: {err}")
