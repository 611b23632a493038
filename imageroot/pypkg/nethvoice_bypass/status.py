# SPDX-License-Identifier: GPL-3.0-or-later
"""get-status: the core's status plus one read-only view of the bypass, with checks.

Reads run side by side: the core's own get-status step (a subprocess), one mysql
call per NethVoice instance (threads), one Redis pipeline and one firewalld listing
per configuration. Each part that cannot be read (firewalld, Redis, a FreePBX
database, the proxy's routes) leaves its place empty and becomes an `error` finding
naming what is down; every read is bounded to a few seconds. The view is status_view's.
"""

from concurrent.futures import ThreadPoolExecutor

from . import checks, conntrack, corestatus, keeper, status_view
from .errors import Failure
from .step import log
from .store import Store

SELF_CHECK_RESULT = "selfcheck.json"  # in the state dir: the last self-check's summary


def read_site(instance):
    from . import freepbx

    try:
        return freepbx.read_site(instance, freepbx.READ_TIMEOUT)
    except Failure as err:
        log(str(err))
        return {"trunks": [], "nat": {}, "error": str(err)}


def read_routes(cluster, record):
    """The proxy's routes, when a domain alias needs them: ({domain: (uris)} or None
    when unreadable, the reason)."""
    from .proxy import read_routes, route_uris

    if cluster is None or not any(m.aliases for m in record.instances.values()):
        return {}, None
    try:
        return route_uris(read_routes(cluster, timeout=5)), None
    except Failure as err:
        log(f"proxy routes not readable: {err}")
        return None, str(err)


def read_firewall(record):
    from .firewalld import Firewalld
    from .forward_actions import observe_in_use

    fw = Firewalld()
    return (*observe_in_use(fw, record), fw.config_properties())


def read_proxy_live(cluster):
    """What the proxy's Kamailio says now: its trace switch and its destinations (None
    without a proxy; an `error` when its RPC does not answer)."""
    from . import kamailio

    if cluster is None or not cluster.proxy_id:
        return None
    port = kamailio.srv_port(cluster.proxy_srv)
    try:
        return {"siptrace": kamailio.siptrace(port), "destinations": kamailio.dispatcher_list(port)}
    except Failure as err:
        log(f"the proxy's RPC does not answer: {err}")
        return {"siptrace": None, "destinations": [], "error": str(err)}


def read_parts(record):
    """Every part that can be read, side by side; `outages` says what could not."""
    from .cluster import read_cluster

    outages = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        firewall = pool.submit(read_firewall, record)
        try:
            cluster = read_cluster()
        except Failure as err:
            cluster, outages["redis"] = None, str(err)
        instances = list(cluster.nethvoice) if cluster else []
        sites = pool.map(read_site, instances)
        routes = pool.submit(read_routes, cluster, record)
        live = pool.submit(read_proxy_live, cluster)
        try:
            zone, observed, props = firewall.result()
        except Failure as err:
            zone, observed, props, outages["firewalld"] = "", None, {}, str(err)
        sites = dict(zip(instances, sites, strict=True))
        routes, problem = routes.result()
        live = live.result()
    if problem:
        outages["proxy_routes"] = problem
    outages["freepbx"] = {i: site["error"] for i, site in sites.items() if "error" in site}
    return {"cluster": cluster, "zone": zone, "observed": observed, "props": props, "sites": sites,
            "routes": routes, "outages": outages, "conntrack_available": conntrack.available(), "proxy_live": live}


def stale_trace_marker(store):
    """The mark of a diagnosis that switched the proxy's trace on and is gone (None if none)."""
    from . import siptrace_guard

    marker = siptrace_guard.read_marker(store.dir)
    return marker if marker and not siptrace_guard.alive(int(marker.get("pid", 0))) else None


def read_bypass(store):
    """get-status's `bypass` part, the record and the cluster view it was read with
    (None when Redis could not be read)."""
    loaded = keeper.load_for_view(store)  # read-only: no lock, the file is replaced atomically
    parts = dict(read_parts(loaded.record), siptrace_marker=stale_trace_marker(store))
    snapshot = status_view.bypass_view(loaded, parts)
    bypass = status_view.bypass_status(snapshot, checks.run_checks(snapshot), store.audit_tail(10))
    return bypass, loaded.record, parts["cluster"]


def get_status(_data=None):
    core = corestatus.start()
    store = Store()
    bypass, _record, _cluster = read_bypass(store)
    bypass["self_check"] = store.read_json(SELF_CHECK_RESULT)
    status = corestatus.finish(core)
    status["bypass"] = bypass
    return status
