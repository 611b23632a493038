# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure view of get-status: what was read, as the `bypass` part shows it, and the
snapshot the checks run on. Drift and conflicts come from the same planners the
actions use, run without a request: what a reconcile would repair, what it would not."""

from .bypass_plan import Desired, InstanceWorld, plan_instance, proxy_outbound_value
from .changes import RECORD_OPS
from .forward_plan import (
    PERMANENT,
    RUNTIME,
    competing_rules,
    desired_rule,
    known_rules,
    plan_reconcile,
    proxy_rules,
    rule_index,
    target_port,
)
from .forward_view import describe_all
from .model import BYPASS_PRIORITY, parse_rich_rule
from .sipsettings import meaning


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


def orphaned_rules(zone_rules, ours):
    """Rules shaped like ours (our priority, forward-port) that stand for no managed
    forward: left by a restore without the state, an older install or a hand edit."""
    return sorted(text for text in zone_rules - ours
                  if (rule := parse_rich_rule(text)) and rule.priority == BYPASS_PRIORITY)


def trunks_view(site, mine, env):
    proxy_value = proxy_outbound_value(env or {})
    out = []
    for t in site["trunks"]:
        entry = mine.trunks.get(str(t["id"]))
        managed = entry is not None and entry.name == t["name"] and entry.tech == (t.get("tech") or "pjsip")
        value = t.get("outbound_proxy") or ""
        out.append({"id": str(t["id"]), "name": t["name"], "registration": t.get("registration") or "",
                    "transport": t.get("transport") or "", "outbound_proxy": value, "bypassed": not value,
                    "managed": managed, "drift": managed and value == proxy_value,
                    "conflict": managed and bool(value) and value != proxy_value,
                    "before": entry.before if managed else None})
    return out


def nat_view(site, mine):
    nat = site["nat"]
    return {"externip": meaning("externip", nat.get("externip")),
            "localnets": list(meaning("localnets", nat.get("localnets"))),
            "managed": bool(mine.nat), "owned": sorted(mine.nat)}


def aliases_view(routes, mine):
    """present: the route holds the module's URIs (None while the routes are unknown)."""
    return [{"domain": d, "uri": (a.uris or ("",))[0], "present": None if routes is None else routes.get(d) == a.uris}
            for d, a in sorted(mine.aliases.items())]


def instances_view(nethvoice):
    return [{"id": i, "host": env.get("NETHVOICE_HOST", ""),
             "sip_ports": {"udp": target_port(env, "udp"), "tcp": target_port(env, "tcp"),
                           "tls": int(env["ASTERISK_SIPS_PORT"]) if env.get("ASTERISK_SIPS_PORT", "").isdigit()
                           else None}}
            for i, env in nethvoice.items()]


def ownership(record, cluster, observed, sites, routes):
    """What a reconcile without a request would do: (repairs, releases, conflicts),
    from the same planners; parts that could not be read are left out."""
    repairs, releases, conflicts = [], [], []
    if cluster is not None and observed is not None:
        for entry in record.forwards.values():
            outcome = plan_reconcile(entry, desired_rule(entry, cluster.nethvoice), observed)
            repairs += [c for c in outcome.changes if c.op not in RECORD_OPS]
            conflicts += [outcome.conflict] if outcome.conflict else []
    for instance, mine in record.instances.items():
        site = sites.get(instance)
        if cluster is None or instance not in cluster.nethvoice or not site or "error" in site or \
                (mine.aliases and routes is None):
            continue
        world = InstanceWorld(instance, cluster.nethvoice[instance], cluster.proxy, cluster.cluster_network,
                              trunks=tuple(site["trunks"]), nat=site["nat"], routes=routes or {})
        planned = plan_instance(Desired(), world, mine, "", explicit=False)
        repairs += [c for c in planned.changes if c.op not in RECORD_OPS]
        releases += [c for c in planned.changes if c.op in RECORD_OPS]
        conflicts += planned.conflicts
    return repairs, releases, conflicts


def competing(record, observed, ours):
    """{forward id: [rules of someone else for the same packets]}, from one index of the rules."""
    if not observed:
        return {}
    index = rule_index(observed)
    return {e.id: found for e in record.forwards.values() if (found := competing_rules(e, observed, ours, index))}


def bypass_view(loaded, parts):
    """The snapshot the checks run on. parts: what read_parts read (cluster and
    observed None when unreadable; sites carry an `error` then)."""
    record = loaded.record
    cluster, zone, observed = parts["cluster"], parts["zone"], parts["observed"]
    zone_rules = observed[zone][RUNTIME] | observed[zone][PERMANENT] if observed else set()
    ok_sites = {i: site for i, site in parts["sites"].items() if "error" not in site}
    nethvoice = cluster.nethvoice if cluster else None
    ours = known_rules(record.forwards, nethvoice, observed) if observed is not None and nethvoice is not None \
        else set()
    repairs, releases, conflicts = ownership(record, cluster, observed, parts["sites"], parts["routes"])
    return {
        "zone": zone,
        "instances": cluster.nethvoice if cluster else {},
        "proxy": proxy_view(cluster, zone_rules) if cluster else None,
        "forwards": describe_all(record.forwards, nethvoice, observed),
        "orphaned_rules": orphaned_rules(zone_rules, ours) if observed else [],
        "competing_rules": competing(record, observed, ours),
        "trunks": {i: trunks_view(site, record.instance(i), (nethvoice or {}).get(i)) for i, site in ok_sites.items()},
        "nat": {i: nat_view(site, record.instance(i)) for i, site in ok_sites.items()},
        "domain_aliases": {i: aliases_view(parts["routes"], m) for i, m in record.instances.items() if m.aliases},
        "repairs": [c.to_json() for c in repairs],
        "releases": [c.to_json() for c in releases],
        "conflicts": [c.to_json() for c in conflicts],
        "cluster_network": cluster.cluster_network if cluster else None,
        "strict_forward_ports": str(parts["props"].get("StrictForwardPorts", "no")).lower() in ("yes", "true"),
        "conntrack_available": parts["conntrack_available"],
        "outages": parts["outages"],
        "record_damage": loaded.damage,
        "proxy_live": parts.get("proxy_live"),
        "siptrace_marker": parts.get("siptrace_marker"),
        "pending": record.pending.to_json() if record.pending else None,
        "instance_pending": {i: {"pending": m.pending.to_json() if m.pending else None,
                                 "reload_pending": m.reload_pending} for i, m in record.instances.items()},
    }


def bypass_status(snapshot, findings, audit):
    """get-status's `bypass` part."""
    return {
        "zone": snapshot["zone"],
        "instances": instances_view(snapshot["instances"]),
        **{k: snapshot[k] for k in ("proxy", "forwards", "orphaned_rules", "trunks", "nat", "domain_aliases",
                                    "conflicts")},
        "firewalld": {"strict_forward_ports": snapshot["strict_forward_ports"],
                      "conntrack_available": snapshot["conntrack_available"]},
        "checks": findings,
        "audit": [{"time": r.get("time", ""), "task": r.get("task", ""), "user": r.get("user", ""),
                   "action": r.get("action", ""), "changes": len(r.get("changes") or [])} for r in audit],
    }
