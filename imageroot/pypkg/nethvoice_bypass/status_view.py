"""The pure view of get-status: what was read, as the `bypass` part shows it."""

from .forward_plan import PERMANENT, RUNTIME, describe_all, known_rules, proxy_rules, target_port
from .model import BYPASS_PRIORITY, parse_rich_rule


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
        "rules": [r.to_rich_rule() for r in proxy_rules(zone_rules)],
    }


def routes_view(routes, intent):
    """Each instance's domain aliases; present is None while the routes are unknown."""
    wanted = {i: b.get("domain_aliases", {}) for i, b in intent.get("bypass", {}).items()}
    return {i: [{"domain": d, "uri": a.get("uri", ""), "present": None if routes is None else d in routes}
                for d, a in sorted(aliases.items())] for i, aliases in wanted.items()}


def orphaned_rules(zone_rules, ours):
    """Rules shaped like ours (our priority, forward-port) that stand for no managed
    forward: left by a restore without the state, an older install or a hand edit."""
    return sorted(text for text in zone_rules - ours
                  if (rule := parse_rich_rule(text)) and rule.priority == BYPASS_PRIORITY)


def trunks_view(site, managed):
    ids = set(managed.get("trunks", {}))
    return [{"id": str(t["id"]), "name": t["name"], "registration": t.get("registration") or "",
             "transport": t.get("transport") or "", "outbound_proxy": t.get("outbound_proxy") or "",
             "bypassed": not t.get("outbound_proxy"), "managed": str(t["id"]) in ids,
             "drift": str(t["id"]) in ids and bool(t.get("outbound_proxy"))}
            for t in site["trunks"]]


def instances_view(nethvoice):
    return [{"id": i, "host": env.get("NETHVOICE_HOST", ""),
             "sip_ports": {"udp": target_port(env, "udp"), "tcp": target_port(env, "tcp"),
                           "tls": int(env["ASTERISK_SIPS_PORT"]) if env.get("ASTERISK_SIPS_PORT", "").isdigit()
                           else None}}
            for i, env in nethvoice.items()]


def bypass_view(intent, parts):
    """The snapshot the checks run on. parts: what read_parts read (cluster and
    observed None when unreadable; sites carry an `error` then)."""
    cluster, zone, observed = parts["cluster"], parts["zone"], parts["observed"]
    zone_rules = observed[zone][RUNTIME] | observed[zone][PERMANENT] if observed else set()
    ok_sites = {i: site for i, site in parts["sites"].items() if "error" not in site}
    managed = intent.get("bypass", {})
    return {
        "zone": zone,
        "instances": cluster.nethvoice if cluster else {},
        "proxy": proxy_view(cluster, zone_rules) if cluster else None,
        "forwards": describe_all(intent, cluster, observed),
        "orphaned_rules": orphaned_rules(zone_rules, known_rules(intent, observed)) if observed else [],
        "trunks": {i: trunks_view(site, managed.get(i, {})) for i, site in ok_sites.items()},
        "nat": {i: {"externip": site["externip"], "localnets": site["localnets"],
                    "managed": bool(managed.get(i, {}).get("nat"))} for i, site in ok_sites.items()},
        "domain_aliases": routes_view(parts["routes"], intent),
        "cluster_network": cluster.cluster_network if cluster else None,
        "strict_forward_ports": str(parts["props"].get("StrictForwardPorts", "no")).lower() in ("yes", "true"),
        "conntrack_available": parts["conntrack_available"],
        "outages": parts["outages"],
        "pending": intent.get("pending"),
        "instance_pending": {i: {k: m[k] for k in ("pending", "reload_pending") if m.get(k)}
                             for i, m in managed.items()},
    }


def bypass_status(snapshot, findings, audit):
    """get-status's `bypass` part."""
    return {
        "zone": snapshot["zone"],
        "instances": instances_view(snapshot["instances"]),
        **{k: snapshot[k] for k in ("proxy", "forwards", "orphaned_rules", "trunks", "nat", "domain_aliases")},
        "firewalld": {"strict_forward_ports": snapshot["strict_forward_ports"],
                      "conntrack_available": snapshot["conntrack_available"]},
        "checks": findings,
        "audit": [{"time": r.get("time", ""), "task": r.get("task", ""), "user": r.get("user", ""),
                   "action": r.get("action", ""), "changes": len(r.get("changes") or [])} for r in audit],
    }
