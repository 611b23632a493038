"""The pure core of configure-bypass: trunks, FreePBX NAT settings, domain aliases.

Input parts that are absent stay as they are; a part that is present is the whole
desired state of that part (an empty trunk list un-bypasses every trunk this module
bypassed; `"nat": null` gives FreePBX back the NAT settings it had before).
"""

import ipaddress
import re

from .model import Refused, problem

# Changes made in FreePBX's database (one transaction, then `fwconsole reload`).
DB_OPS = {"bypass_trunk", "restore_trunk", "set_externip", "set_localnets"}

# Addresses that can never be what providers see: RFC 1918, CGNAT, loopback, link-local,
# unspecified. (ipaddress's is_global also refuses documentation ranges, which tests use.)
NOT_EXTERNAL = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "0.0.0.0/8")]
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def proxy_outbound_value(nethvoice_env):
    """What NethVoice writes in a trunk's outbound_proxy (trunks.php, migration.php)."""
    return f"sip:{nethvoice_env.get('PROXY_IP', '')}:{nethvoice_env.get('PROXY_PORT', '5060')};lr"


def route_uri(proxy_env, nethvoice_env):
    """The proxy route target NethVoice itself uses: Asterisk over the cluster VPN."""
    return f"sip:{(proxy_env or {}).get('SERVICE_IP', '')}:{nethvoice_env.get('ASTERISK_SIP_PORT', '')}"


def resolve_trunks(requested, trunks, other_instances):
    """Trunk ids for requested ids or names. other_instances: {instance: [trunk names]}."""
    by_id = {str(t["id"]): t for t in trunks}
    by_name = {str(t["name"]).lower(): t for t in trunks}
    ids, errors = [], []
    for i, wanted in enumerate(requested):
        trunk = by_id.get(str(wanted)) if isinstance(wanted, int) else \
            by_name.get(str(wanted).lower()) or by_id.get(str(wanted))
        if trunk is None:
            elsewhere = [inst for inst, names in other_instances.items()
                         if str(wanted).lower() in (n.lower() for n in names)]
            errors.append(problem(f"trunks.{i}", "other_instance" if elsewhere else "not_found", wanted))
        elif str(trunk["id"]) in ids:
            errors.append(problem(f"trunks.{i}", "duplicate", wanted))
        else:
            ids.append(str(trunk["id"]))
    return ids, errors


def plan_trunks(desired_ids, trunks, managed, proxy_value):
    """managed: {trunk id: {...}} that this module bypassed earlier."""
    by_id = {str(t["id"]): t for t in trunks}
    changes = []
    for tid in desired_ids:
        trunk = by_id[tid]
        if trunk.get("outbound_proxy"):
            changes.append({"op": "bypass_trunk", "trunk": tid, "name": trunk["name"],
                            "before": trunk["outbound_proxy"], "after": "",
                            "why": "calls of this trunk go to the provider directly, not through the proxy"})
        elif tid not in managed:  # bypassed by hand: only the record changes
            changes.append({"op": "manage_trunk", "trunk": tid, "name": trunk["name"],
                            "why": "already without the proxy: the module keeps it so, bypassing it again if "
                                   "NethVoice puts the proxy back"})
    for tid in sorted(set(managed) - set(desired_ids)):
        trunk = by_id.get(tid)
        if trunk is None:
            continue
        if trunk.get("outbound_proxy") != proxy_value:
            changes.append({"op": "restore_trunk", "trunk": tid, "name": trunk["name"],
                            "before": trunk.get("outbound_proxy") or "", "after": proxy_value,
                            "why": "no longer bypassed: back through the proxy"})
        else:  # NethVoice put the proxy back already: only the record changes
            changes.append({"op": "release_trunk", "trunk": tid, "name": trunk["name"],
                            "why": "already through the proxy: the module no longer bypasses it again"})
    return changes


def check_nat(nat, cluster_network):
    """Canonical NAT request or errors. Returns (desired {externip, localnets}, errors)."""
    errors = []
    address = str(nat.get("external_address", "")).strip()
    try:
        ip = ipaddress.ip_address(address)
        if ip.version != 4:
            errors.append(problem("nat.external_address", "external_address_not_ipv4", address))
        elif any(ip in net for net in NOT_EXTERNAL) or ip.is_multicast:
            errors.append(problem("nat.external_address", "external_address_private", address))
    except ValueError:
        errors.append(problem("nat.external_address", "external_address_format", address))
    networks = []
    for i, text in enumerate(nat.get("local_networks", [])):
        try:
            net = ipaddress.ip_network(str(text).strip())
            if net.version != 4:
                raise ValueError
        except ValueError:
            errors.append(problem(f"nat.local_networks.{i}", "local_networks_format", text))
            continue
        if str(net) not in networks:
            networks.append(str(net))
    if nat.get("include_cluster_network", True) and cluster_network:
        net = str(ipaddress.ip_network(cluster_network, strict=False))
        if net not in networks:
            networks.append(net)
    return {"externip": address, "localnets": networks}, errors


def plan_nat(desired, site):
    changes = []
    if desired["externip"] != site["externip"]:
        changes.append({"op": "set_externip", "before": site["externip"], "after": desired["externip"],
                        "why": "Asterisk advertises this address to providers reached directly"})
    if desired["localnets"] != site["localnets"]:
        changes.append({"op": "set_localnets", "before": site["localnets"], "after": desired["localnets"],
                        "why": "addresses Asterisk must not rewrite with the external address"})
    return changes


def check_domains(requested, nethvoice_hosts, routes, managed):
    """Canonical domain list or errors. routes: {domain: route} from the proxy."""
    domains, errors = [], []
    for i, text in enumerate(requested):
        value = str(text).strip().lower().rstrip(".")
        field = f"domain_aliases.{i}"
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError:
            if not HOSTNAME.match(value):
                errors.append(problem(field, "format", text))
                continue
        if value in domains:
            errors.append(problem(field, "duplicate", text))
        elif value in nethvoice_hosts:
            errors.append(problem(field, "owned_by_nethvoice", text))
        elif value in routes and value not in managed:
            errors.append(problem(field, "route_exists", text))
        else:
            domains.append(value)
    return domains, errors


def plan_domains(desired, routes, managed, uri, description):
    changes = []
    for domain in desired:
        current = [a.get("uri") for a in routes.get(domain, {}).get("address", [])]
        if current != [uri]:
            changes.append({"op": "add_route", "domain": domain, "uri": uri, "description": description,
                            "before": current, "why": "the proxy routes this Request-URI domain to the instance"})
    for domain in sorted(set(managed) - set(desired)):
        if domain in routes:
            changes.append({"op": "remove_route", "domain": domain, "before": routes[domain],
                            "why": "alias no longer wanted"})
    return changes


def warnings_for(trunks_by_id, bypassed_ids, nat_changes):
    warnings = []
    for tid in bypassed_ids:
        trunk = trunks_by_id[tid]
        name = str(trunk["name"])
        if "custom" not in name.lower():
            warnings.append({"id": "trunk_name_without_custom", "trunk": tid,
                             "message": f"trunk '{name}' does not contain 'custom' in its name: NethVoice puts "
                                        "its outbound proxy back when the freepbx container restarts (update, "
                                        "reboot); rename it (e.g. 'Custom-" + name + "') to keep the bypass"})
        if trunk.get("registration") == "send":
            warnings.append({"id": "provider_must_reach_asterisk", "trunk": tid,
                             "message": f"trunk '{name}' registers directly now: its provider must reach "
                                        "Asterisk directly (a port forward for its address, or a public port)"})
        else:
            warnings.append({"id": "trunk_without_registration", "trunk": tid,
                             "message": f"trunk '{name}' does not register: only outbound calls change; inbound "
                                        "calls need a port forward or a domain alias"})
    if nat_changes:
        warnings.append({"id": "nat_affects_proxied_calls",
                         "message": "FreePBX's NAT settings are global: they also change calls that still go "
                                    "through the proxy (hold and transfer problems are known, NethServer/dev#7013); "
                                    "PJSIP transports pick them up when Asterisk restarts, which drops active calls"})
    return warnings


# --- a whole configure-bypass ------------------------------------------------------

def empty_instance_intent():
    return {"trunks": {}, "nat": None, "domain_aliases": {}}


def request_problems(data):
    """What is wrong with the input that needs nothing read: the NAT values, the domain
    names, the same trunk or domain asked twice. plan_configuration finds these too."""
    problems = []
    if data.get("nat") is not None:
        problems += check_nat(data["nat"], None)[1]
    if "domain_aliases" in data:
        problems += check_domains(data["domain_aliases"], set(), {}, {})[1]
    seen = set()
    for i, wanted in enumerate(data.get("trunks") or []):
        key = str(wanted).lower()
        if key in seen:
            problems.append(problem(f"trunks.{i}", "duplicate", wanted))
        seen.add(key)
    return problems


def plan_configuration(data, world):
    """Everything configure-bypass would change, on what was read (`world`: instance,
    nethvoice env, proxy env, cluster_network, nethvoice_hosts, site, mine, routes,
    other_trunks), or Refused. Returns (changes, desired trunks, desired NAT, domains)."""
    site, mine, nv = world["site"], world["mine"], world["nethvoice"]
    problems, desired_trunks, nat_desired, domains = [], None, None, None
    if "trunks" in data:
        desired_trunks, found = resolve_trunks(data["trunks"], site["trunks"], world["other_trunks"])
        problems += found
    if data.get("nat") is not None:
        nat_desired, found = check_nat(data["nat"], world["cluster_network"])
        problems += found
    if "domain_aliases" in data:
        domains, found = check_domains(data["domain_aliases"], world["nethvoice_hosts"], world["routes"] or {},
                                       mine["domain_aliases"])
        problems += found
    if problems:
        raise Refused(problems)
    changes = []
    if desired_trunks is not None:
        changes += plan_trunks(desired_trunks, site["trunks"], mine["trunks"], proxy_outbound_value(nv))
    if nat_desired is not None:
        changes += plan_nat(nat_desired, site)
    elif "nat" in data and mine["nat"]:  # null: give FreePBX back what it had before us
        changes += plan_nat(mine["nat"]["previous"], site)
    if domains is not None:
        changes += plan_domains(domains, world["routes"], mine["domain_aliases"], route_uri(world["proxy"], nv),
                                f"{world['instance']} via nethvoice-bypass")
    return changes, desired_trunks, nat_desired, domains


def needs_reload(changes):
    return any(c["op"] in DB_OPS for c in changes)


def settled(mine):
    """An instance's record without the marks of a change in progress."""
    return {**empty_instance_intent(), **{k: v for k, v in mine.items() if k not in ("pending", "reload_pending")}}


def recorded_state(mine, world, data, desired_trunks, nat_desired, domains, since):
    """What the instance's record becomes once the plan is applied. Trunks asked for
    are managed even when they need no change (already without the proxy)."""
    after, site = settled(mine), world["site"]
    trunks_by_id = {str(t["id"]): t for t in site["trunks"]}
    if desired_trunks is not None:
        after["trunks"] = {tid: {"name": trunks_by_id[tid]["name"],
                                 "since": mine["trunks"].get(tid, {}).get("since", since)} for tid in desired_trunks}
    if nat_desired is not None:
        previous = (mine["nat"] or {}).get("previous") or {"externip": site["externip"],
                                                          "localnets": site["localnets"]}
        after["nat"] = {**nat_desired, "previous": previous}
    elif "nat" in data:
        after["nat"] = None
    if domains is not None:
        after["domain_aliases"] = {d: {"uri": route_uri(world["proxy"], world["nethvoice"])} for d in domains}
    return after


def recorded_request(mine):
    """The configure-bypass input that re-applies what was recorded for an instance."""
    data = {"trunks": [int(t) for t in mine["trunks"]]}
    if mine["domain_aliases"]:
        data["domain_aliases"] = list(mine["domain_aliases"])
    if mine["nat"]:
        data["nat"] = {"external_address": mine["nat"]["externip"], "local_networks": mine["nat"]["localnets"],
                       "include_cluster_network": False}
    return data
