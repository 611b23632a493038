"""get-status: the core's status plus one read-only view of the bypass, with checks.

Reads run side by side: the core's own get-status step (a subprocess), one mysql
call per NethVoice instance (threads), one Redis pipeline and one firewalld listing
per configuration. Each part that cannot be read (firewalld, Redis, a FreePBX
database, the proxy's routes) leaves its place empty and becomes an `error` finding
naming what is down; every read is bounded to a few seconds.
"""

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from . import checks, forwards
from .forwarding import describe_all, known_rules, observe
from .forwards import PERMANENT, RUNTIME, target_port
from .model import BYPASS_PRIORITY, parse_rich_rule
from .step import Failure, log
from .store import Store

CORE_STEP = os.path.join("get-status", "20read")


def start_core_status():
    """The core's get-status step, when this runs on a node (it is overridden by ours)."""
    base = os.environ.get("AGENT_BASEACTIONS_DIR") or "/usr/local/agent/actions"
    path = os.path.join(base, CORE_STEP)
    if not os.access(path, os.X_OK):
        return None
    data, feed = os.pipe()  # its task data goes in now: it runs while we gather ours
    os.write(feed, b"null")
    os.close(feed)
    try:
        return subprocess.Popen([path], stdin=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(data)


def finish_core_status(proc):
    if proc is not None:
        try:
            out, err = proc.communicate(timeout=CORE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = f"no answer within {CORE_TIMEOUT} s"
        if proc.returncode == 0:
            try:
                return json.loads(out)
            except json.JSONDecodeError:
                pass
        log(f"core get-status failed ({proc.returncode}): {err.strip()[-200:]}")
    # the equivalent where the core's step is not installed
    return {"instance": os.environ.get("MODULE_ID", ""), "ui_name": "", "node": os.environ.get("NODE_ID", ""),
            "node_ui_name": "", "services": [], "images": [], "volumes": []}


CORE_TIMEOUT = 8


def read_site(instance):
    from . import freepbx

    try:
        return freepbx.read_site(instance, freepbx.READ_TIMEOUT)
    except Failure as err:
        log(str(err))
        return {"trunks": [], "externip": "", "localnets": [], "error": str(err)}


def proxy_view(cluster, zone_rules):
    env = cluster.proxy
    if env is None:
        return None
    return {
        "id": cluster.proxy_id,
        "public_ip": env.get("PUBLIC_IP", ""),
        "private_ip": env.get("PRIVATE_IP", ""),
        "behind_nat": env.get("BEHIND_NAT", "") == "true",
        "local_networks": [n for n in env.get("LOCALNETWORKS", "").split(",") if n],
        "service_net": env.get("SERVICE_NET", ""),
        "sip_ports": {t: int(s["port"]) if str(s.get("port", "")).isdigit() else None
                      for t, s in cluster.proxy_srv.items()},
        "rules": [r.to_rich_rule() for r in forwards.proxy_rules(zone_rules)],
    }


def read_routes(cluster, intent):
    """The proxy's routes, when a domain alias needs them: {domain: route}, None when
    unreadable (with the reason), {} when not needed."""
    from .configure import read_routes

    if cluster is None or not any(b.get("domain_aliases") for b in intent.get("bypass", {}).values()):
        return {}, None
    try:
        return read_routes(cluster, timeout=5), None
    except Failure as err:
        log(f"proxy routes not readable: {err}")
        return None, str(err)


def routes_view(routes, intent):
    wanted = {i: b.get("domain_aliases", {}) for i, b in intent.get("bypass", {}).items()}
    return {i: [{"domain": d, "uri": a.get("uri", ""), "present": None if routes is None else d in routes}
                for d, a in sorted(aliases.items())] for i, aliases in wanted.items()}


def orphaned_rules(zone_rules, ours):
    """Rules shaped like ours (our priority, forward-port) that stand for no managed
    forward: left by a restore without the state, an older install or a hand edit."""
    return sorted(text for text in zone_rules - ours
                  if (rule := parse_rich_rule(text)) and rule.priority == BYPASS_PRIORITY)


def read_firewall(intent):
    from .firewalld import Firewalld

    fw = Firewalld()
    zone = fw.default_zone()
    observed = observe(fw, {zone} | {e["zone"] for e in intent["forwards"].values()})
    return zone, observed, fw.config_properties()


def read_parts(intent):
    """Every part that can be read, side by side; `outages` says what could not."""
    from .cluster import read_cluster

    outages = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        firewall = pool.submit(read_firewall, intent)
        try:
            cluster = read_cluster()
        except Failure as err:
            cluster, outages["redis"] = None, str(err)
        instances = list(cluster.nethvoice) if cluster else []
        sites = pool.map(read_site, instances)
        routes = pool.submit(read_routes, cluster, intent)
        try:
            zone, observed, props = firewall.result()
        except Failure as err:
            zone, observed, props, outages["firewalld"] = "", None, {}, str(err)
        sites = dict(zip(instances, sites, strict=True))
        routes, problem = routes.result()
    if problem:
        outages["proxy_routes"] = problem
    outages["freepbx"] = {i: site["error"] for i, site in sites.items() if "error" in site}
    return cluster, zone, observed, props, sites, routes, outages


def bypass_view(intent, cluster, zone, observed, props, sites, routes):
    zone_rules = observed[zone][RUNTIME] | observed[zone][PERMANENT] if observed else set()
    described = describe_all(intent, cluster, observed)
    trunks, nat = {}, {}
    for instance, site in sites.items():
        if "error" in site:
            continue
        managed = intent.get("bypass", {}).get(instance, {})
        ids = set(managed.get("trunks", {}))
        trunks[instance] = [
            {"id": str(t["id"]), "name": t["name"], "registration": t.get("registration") or "",
             "transport": t.get("transport") or "", "outbound_proxy": t.get("outbound_proxy") or "",
             "bypassed": not t.get("outbound_proxy"), "managed": str(t["id"]) in ids,
             "drift": str(t["id"]) in ids and bool(t.get("outbound_proxy"))}
            for t in site["trunks"]]
        nat[instance] = {"externip": site["externip"], "localnets": site["localnets"],
                         "managed": bool(managed.get("nat"))}
    return {
        "zone": zone,
        "instances": cluster.nethvoice if cluster else {},
        "proxy": proxy_view(cluster, zone_rules) if cluster else None,
        "forwards": described,
        "orphaned_rules": orphaned_rules(zone_rules, known_rules(intent, observed)) if observed else [],
        "trunks": trunks,
        "nat": nat,
        "domain_aliases": routes_view(routes, intent),
        "cluster_network": cluster.cluster_network if cluster else None,
        "strict_forward_ports": str(props.get("StrictForwardPorts", "no")).lower() in ("yes", "true"),
        "conntrack_available": shutil.which("conntrack") is not None,
    }


def read_bypass(store):
    """get-status's `bypass` part, and the cluster view it was read with (None when
    Redis could not be read)."""
    intent = store.load()  # read-only: no lock, the intent file is replaced atomically
    cluster, zone, observed, props, sites, routes, outages = read_parts(intent)
    snapshot = bypass_view(intent, cluster, zone, observed, props, sites, routes)
    snapshot.update(outages=outages, pending=intent.get("pending"),
                    instance_pending={i: {k: m[k] for k in ("pending", "reload_pending") if m.get(k)}
                                      for i, m in intent.get("bypass", {}).items()})
    instances = [{"id": i, "host": env.get("NETHVOICE_HOST", ""),
                  "sip_ports": {"udp": target_port(env, "udp"), "tcp": target_port(env, "tcp"),
                                "tls": int(env["ASTERISK_SIPS_PORT"]) if env.get("ASTERISK_SIPS_PORT", "").isdigit()
                                else None}}
                 for i, env in snapshot["instances"].items()]
    bypass = {
        "zone": snapshot["zone"],
        "instances": instances,
        "proxy": snapshot["proxy"],
        "forwards": snapshot["forwards"],
        "orphaned_rules": snapshot["orphaned_rules"],
        "trunks": snapshot["trunks"],
        "nat": snapshot["nat"],
        "domain_aliases": snapshot["domain_aliases"],
        "firewalld": {"strict_forward_ports": snapshot["strict_forward_ports"],
                      "conntrack_available": snapshot["conntrack_available"]},
        "checks": checks.run_checks(snapshot),
        "audit": [{"time": r.get("time", ""), "task": r.get("task", ""), "user": r.get("user", ""),
                   "action": r.get("action", ""), "changes": len(r.get("changes") or [])}
                  for r in store.audit_tail(10)],
    }
    return bypass, intent, cluster


def get_status(_data=None):
    from .selfcheck import last_result

    core = start_core_status()
    store = Store()
    bypass, _intent, _cluster = read_bypass(store)
    bypass["self_check"] = last_result(store)
    status = finish_core_status(core)
    status["bypass"] = bypass
    return status
