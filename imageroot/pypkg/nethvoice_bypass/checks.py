# SPDX-License-Identifier: GPL-3.0-or-later
"""Findings about a bypass snapshot: pure functions, stable ids (the UI translates
them as `checks.<id>`), each with a message naming the cause and a remedy."""

import ipaddress
import json

from .model import parse_rich_rule, transport_protocol

ERROR, WARNING, INFO = "error", "warning", "info"


def finding(id_, severity, message, remedy, subject=""):
    return {"id": id_, "severity": severity, "message": message, "remedy": remedy, "subject": subject}


def _networks(texts):
    nets = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            continue
    return nets


def forward_checks(snapshot):
    out = []
    proxy = snapshot.get("proxy") or {}
    lan_rules = (parse_rich_rule(text) for text in proxy.get("rules", []))
    lan = _networks(proxy.get("local_networks", [])) + _networks(r.source for r in lan_rules if r and r.source)
    for fwd in snapshot["forwards"]:
        subject = fwd["id"]
        state = fwd["state"]
        if state == "stale_target":
            out.append(finding("forward_stale_target", ERROR,
                               f"forward {fwd['id']} points at port {parse_rich_rule(fwd['rule']).to_port}"
                               f" but {fwd['instance']} now uses {fwd['target_port']}",
                               "run reconcile-bypass (it also runs on NethVoice and proxy events)", subject))
        elif state == "instance_missing":
            out.append(finding("forward_instance_missing", ERROR,
                               f"forward {fwd['id']} targets {fwd['instance']}, which is not on this node",
                               "remove the forward, or restore the instance and run reconcile-bypass", subject))
        elif state == "missing_runtime":  # missing ones are conflicts; unknown: an outage says why
            out.append(finding("forward_not_applied", ERROR,
                               f"forward {fwd['id']} is missing from firewalld's runtime configuration (a reload "
                               "or restart took it)", "run reconcile-bypass (the self-check timer repairs it)",
                               subject))
        source = ipaddress.ip_network(fwd["source"]) if fwd.get("source") else None
        overlapping = [str(n) for n in lan if n.version == (6 if fwd["family"] == "ipv6" else 4)
                       and (source is None or source.overlaps(n))]
        if overlapping and fwd["port"] == 5060:
            out.append(finding("forward_captures_proxy_lan", WARNING,
                               f"forward {fwd['id']} takes {fwd['source'] or 'every source'} away from the proxy, "
                               f"which treats {', '.join(sorted(set(overlapping)))} as its local network",
                               "limit the forward to the device's own address", subject))
        if source is None:
            trunks = [t["name"] for ts in snapshot["trunks"].values() for t in ts
                      if t.get("outbound_proxy") and transport_protocol(t) == fwd["protocol"]]
            if trunks:
                out.append(finding("forward_without_source", WARNING,
                                   f"forward {fwd['id']} has no source while trunks still use the proxy on "
                                   f"{fwd['protocol'].upper()}: {', '.join(trunks)}",
                                   "give the forward the source address of the device that needs it", subject))
    for fid, rules in sorted((snapshot.get("competing_rules") or {}).items()):
        for rule in rules:
            out.append(finding("forward_competing_rule", WARNING,
                               f"firewalld has '{rule}', which the module did not write, for the same packets as "
                               f"forward {fid} at the same priority: which one wins is undefined",
                               "remove the stale one with firewall-cmd (runtime and --permanent); the module never "
                               "removes a rule it did not write", fid))
    for rule in snapshot.get("orphaned_rules", []):
        out.append(finding("forward_orphaned", WARNING,
                           f"firewalld has a bypass-style forward the module does not manage: {rule}",
                           "adopt it with add-port-forward for the same source and protocol, or remove it "
                           "with firewall-cmd (runtime and --permanent)", rule))
    return out


def nat_checks(snapshot):
    out = []
    proxy = snapshot.get("proxy") or {}
    for instance, nat in snapshot["nat"].items():
        bypassed = [t for t in snapshot["trunks"].get(instance, []) if t.get("managed")]
        if not bypassed and not nat.get("managed"):
            continue
        public = proxy.get("public_ip", "")
        if not nat["externip"]:
            out.append(finding("nat_externip_unset", WARNING,
                               f"{instance} has bypassed trunks but no external address in FreePBX",
                               "set nat.external_address with configure-bypass", instance))
        elif public and nat["externip"] != public and proxy.get("behind_nat"):
            out.append(finding("nat_externip_mismatch", WARNING,
                               f"FreePBX's external address {nat['externip']} differs from the proxy's public "
                               f"address {public}", "check which address providers reach", instance))
        local = _networks(nat["localnets"])
        cluster = snapshot.get("cluster_network")
        if cluster and not any(ipaddress.ip_network(cluster, strict=False).subnet_of(n) for n in local
                               if n.version == 4):
            out.append(finding("nat_localnets_missing_cluster", WARNING,
                               f"FreePBX's local networks of {instance} miss the cluster network {cluster}: "
                               "Asterisk would rewrite addresses of calls coming through the proxy",
                               "keep include_cluster_network true in configure-bypass", instance))
        missing_lan = [str(n) for n in _networks(proxy.get("local_networks", []))
                       if not any(n.version == m.version and n.subnet_of(m) for m in local)]
        if missing_lan:
            out.append(finding("nat_localnets_missing_lan", WARNING,
                               f"FreePBX's local networks of {instance} miss the LAN {', '.join(missing_lan)}",
                               "add the LAN to nat.local_networks", instance))
    return out


def trunk_checks(snapshot):
    out = []
    for trunks in snapshot["trunks"].values():
        for trunk in trunks:
            if not trunk.get("managed"):
                continue
            name = trunk["name"]
            if trunk.get("drift"):
                out.append(finding("trunk_proxy_returned", ERROR,
                                   f"bypassed trunk '{name}' has NethVoice's outbound proxy again "
                                   f"({trunk['outbound_proxy']}): NethVoice restored it",
                                   "run reconcile-bypass (the self-check timer repairs it), and rename the trunk "
                                   "to contain 'custom'", name))
            if "custom" not in str(name).lower():
                out.append(finding("trunk_name_without_custom", WARNING,
                                   f"bypassed trunk '{name}' will get its outbound proxy back when NethVoice's "
                                   "freepbx container restarts", "rename it to contain 'custom'", name))
            if transport_protocol(trunk) == "tls":
                out.append(finding("trunk_tls_5061", INFO,
                                   f"bypassed trunk '{name}' uses TLS: 5061 stays with the proxy and cannot be "
                                   "forwarded", "use UDP or TCP for a bypassed trunk", name))
    return out


def platform_checks(snapshot):
    out = []
    if snapshot.get("strict_forward_ports"):
        out.append(finding("strict_forward_ports", INFO,
                           "firewalld's StrictForwardPorts is on: only firewalld's own forward ports are "
                           "accepted (ours are), DNAT made by containers is rejected",
                           "nothing to do for the bypass; check container port mappings", "firewalld"))
    if snapshot["forwards"] and not snapshot.get("conntrack_available"):
        out.append(finding("conntrack_missing", WARNING,
                           "the conntrack tool is missing: live flows keep their old path after a change",
                           "install the conntrack package on the node", "conntrack"))
    proxy = snapshot.get("proxy") or {}
    ports = {p for p in (proxy.get("sip_ports") or {}).values() if p}
    if ports and ports != {5060}:
        out.append(finding("proxy_port_not_5060", INFO,
                           f"the proxy listens on SIP port {', '.join(map(str, sorted(ports)))}, not 5060: "
                           "devices that need 5060 may reach Asterisk without the proxy in the way",
                           "check whether a forward is still needed", proxy.get("id", "")))
    if snapshot["forwards"]:
        out.append(finding("sips_5061_with_proxy", INFO,
                           "port 5061 (TLS) is never forwarded: phones and trunks using TLS keep going "
                           "through the proxy", "nothing to do unless a device needs TLS without the proxy",
                           "5061"))
    return out


def ownership_checks(snapshot):
    """Repairs a reconcile would make for the proxy routes, conflicts with both ways out,
    things the module owned that are gone or replaced."""
    out = []
    for change in snapshot.get("repairs") or []:
        if change["op"] == "add_route":
            out.append(finding("domain_alias_stale", ERROR,
                               f"domain alias {change['domain']} points at {', '.join(change['before'] or [])}, "
                               f"not at Asterisk's current port ({', '.join(change['after'])})",
                               "run reconcile-bypass (the self-check timer repairs it)", change["domain"]))
    for conflict in snapshot.get("conflicts") or []:
        ways = conflict["ways_out"]
        out.append(dict(finding(CONFLICT_IDS[conflict["kind"]], WARNING, conflict["message"],
                                f"keep theirs: reconcile-bypass {json.dumps(ways['keep_theirs']['data'])}; or put "
                                f"ours back: reconcile-bypass {json.dumps(ways['put_ours_back']['data'])}",
                                conflict["key"]), conflict=conflict))
    for change in snapshot.get("releases") or []:
        if change["op"] == "release_trunk":
            out.append(finding("trunk_released", WARNING, f"{change['why']}; the module forgets it at the next "
                               "reconcile and never changes it",
                               "if it is the same trunk renamed, hand it to the module again (Trunks page, or "
                               "configure-bypass trunks)", change["name"]))
    return out


CONFLICT_IDS = {"forward_removed": "conflict_forward_removed",
                "forward_removed_permanent": "conflict_forward_removed_permanent",
                "trunk_proxy_changed": "conflict_trunk_proxy_changed", "nat_changed": "conflict_nat_changed",
                "route_changed": "conflict_route_changed", "route_removed": "conflict_route_removed"}


def outage_checks(snapshot):
    """What could not be read, and how to bring it back."""
    outages = snapshot.get("outages") or {}
    out = []
    if "firewalld" in outages:
        out.append(finding("firewalld_unreachable", ERROR, outages["firewalld"],
                           "start firewalld (systemctl start firewalld), then run reconcile-bypass", "firewalld"))
    if "redis" in outages:
        out.append(finding("redis_unreachable", ERROR, outages["redis"],
                           "check the node's Redis (systemctl status redis) and, on a worker node, its link "
                           "to the leader", "redis"))
    for instance, message in sorted((outages.get("freepbx") or {}).items()):
        out.append(finding("freepbx_unreachable", ERROR, message,
                           f"check the instance's database (runagent -m {instance} systemctl --user status "
                           "mariadb)", instance))
    if "proxy_routes" in outages:
        out.append(finding("proxy_routes_unreadable", WARNING,
                           f"the proxy's routes could not be read: {outages['proxy_routes']}",
                           "check the proxy module and the cluster API, then run get-status again", "proxy"))
    damage = snapshot.get("record_damage")
    if damage and damage["error"] == "set aside":
        out.append(finding("record_rebuilt", WARNING,
                           f"the record was damaged and set aside as {damage['file']}; the module rebuilt it from "
                           "its audit trail (audit.jsonl: the 'rebuild' record says what it rebuilt)",
                           f"compare {damage['file']} with bypass.json in the module's state dir, then delete it",
                           damage["file"]))
    elif damage:
        rebuilt = "rebuilt from the audit trail for this view" if damage.get("rebuilt") else \
            f"the audit trail cannot rebuild it ({damage.get('rebuild_error')})"
        out.append(finding("record_damaged", ERROR, f"the record bypass.json is damaged ({damage['error']}): "
                           f"{rebuilt}", "the next change sets it aside and rebuilds it; if it cannot be rebuilt, "
                           "restore bypass.json from a backup", damage["file"]))
    pending = snapshot.get("pending")
    if pending:
        out.append(finding("change_interrupted", WARNING,
                           f"a change of {pending['action']} (task {pending['task'] or '-'}, {pending['since']}) "
                           "was interrupted before it was recorded",
                           "run reconcile-bypass: it undoes that change first", pending["task"]))
    for instance, marks in sorted((snapshot.get("instance_pending") or {}).items()):
        if marks.get("pending"):
            task = marks["pending"]
            out.append(finding("change_interrupted", WARNING,
                               f"a change of {task['action']} to {instance} (task {task['task'] or '-'}, "
                               f"{task['since']}) was interrupted: it is recorded, maybe not applied",
                               "run reconcile-bypass: it applies what is recorded", instance))
        elif marks.get("reload_pending"):
            out.append(finding("freepbx_reload_pending", WARNING,
                               f"the bypass changes of {instance} are in its database, but the FreePBX reload "
                               "that brings them to Asterisk failed", "run reconcile-bypass: it reloads", instance))
    return out


def proxy_live_checks(snapshot):
    """The proxy's own state: its trace left on, destinations it marks inactive."""
    live, out = snapshot.get("proxy_live"), []
    if not live:
        return out
    if live.get("error"):
        out.append(finding("proxy_rpc_unreachable", WARNING, f"the proxy's RPC does not answer: {live['error']}",
                           "check the proxy module (runagent -m <proxy> systemctl --user status kamailio)", "proxy"))
    marker = snapshot.get("siptrace_marker")
    if live.get("siptrace") and marker:
        out.append(finding("siptrace_left_on", WARNING,
                           "the proxy's trace is still on, switched on by diagnose-sip (task "
                           f"{marker.get('task') or '-'}), which ended without switching it off",
                           "the self-check switches it off (Check and repair)", "siptrace"))
    elif live.get("siptrace"):
        out.append(finding("siptrace_on", INFO, "the proxy's trace (HEP mirror to 127.0.0.1:5065) is on, not by this "
                           "module: a support session, or someone's sngrep", "switch it off when they are done "
                           "(support-session-stopped does)", "siptrace"))
    for dest in live.get("destinations") or []:
        if not dest.get("active"):
            out.append(finding("proxy_destination_inactive", ERROR,
                               f"the proxy marks {dest['uri']} inactive ({dest.get('flags', '')}): the instance does "
                               "not answer its OPTIONS pings, so calls for it fail", "check that the NethVoice "
                               "instance runs (its freepbx service)", dest["uri"]))
    return out


def run_checks(snapshot):
    return (outage_checks(snapshot) + ownership_checks(snapshot) + forward_checks(snapshot) + nat_checks(snapshot)
            + trunk_checks(snapshot) + platform_checks(snapshot) + proxy_live_checks(snapshot))
