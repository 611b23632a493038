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


# Kamailio refuses a second dialplan/dispatcher reload within reload_delta (5 s), and the
# proxy's add-route sends its reloads without looking (kamcmd > /dev/null): a route
# changed soon after another one is in the tables but not live. After a task's route
# changes, the module looks at what is live and reloads once more when it must.
LIVE_ATTEMPTS, RELOAD_DELTA = 3, 5.5


def live_routes(port):
    """{domain: {URIs}} of the domain rules Kamailio applies now (dialplan 1, dispatcher)."""
    from . import kamailio

    sets = {}
    for dest in kamailio.dispatcher_list(port):
        sets.setdefault(str(dest["setid"]), set()).add(dest["uri"])
    return {r["match"]: sets.get(str(r["setid"]), set()) for r in kamailio.dialplan(port, 1)}


def not_live(changes, live):
    """The domains whose change is not in effect yet."""
    return sorted({c.domain for c in changes
                   if (c.domain not in live or not set(c.after) <= live[c.domain] if c.op == ADD_ROUTE
                       else c.domain in live)})


def make_live(cluster, changes, sleep=None):
    """Reload the proxy until the route changes are live, a few times at most; the
    domains still not live (empty when they all are or the RPC does not answer)."""
    import time

    from . import kamailio

    changes = [c for c in changes if c.op in (ADD_ROUTE, REMOVE_ROUTE)]
    if not changes:
        return []
    port = kamailio.srv_port(cluster.proxy_srv)
    pending = []
    try:
        for attempt in range(LIVE_ATTEMPTS):
            pending = not_live(changes, live_routes(port))
            if not pending:
                return []
            if attempt:
                (sleep or time.sleep)(RELOAD_DELTA)  # the previous reload was refused: its delta must pass
            log(f"proxy routes not live yet ({', '.join(pending)}): reloading the proxy's tables")
            kamailio.reload(port, "domain", "dialplan", "dispatcher")
        pending = not_live(changes, live_routes(port))
    except Failure as err:
        log(f"the proxy's live routes cannot be checked: {err}")
        return []
    return pending
