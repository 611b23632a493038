# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure core of a configure-bypass request: what is asked, checked (first alone,
then against what was read), and the warnings that go with the plan."""

import ipaddress

from . import changes as ops
from .bypass_plan import GIVE_BACK, Desired
from .errors import InvalidValue, Refused, problem
from .guards import check_domain, check_external_address, check_local_network


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


def check_nat(nat, cluster_network):
    """Canonical NAT request or errors: ({"externip", "localnets"}, errors)."""
    errors = []
    address = nat.get("external_address", "")
    try:
        address = check_external_address(address)
    except InvalidValue as err:
        errors.append(problem("nat.external_address", err.reason, address, str(err)))
    networks = []
    for i, text in enumerate(nat.get("local_networks", [])):
        try:
            net = check_local_network(text)
        except InvalidValue as err:
            errors.append(problem(f"nat.local_networks.{i}", err.reason, text, str(err)))
            continue
        if net not in networks:
            networks.append(net)
    if nat.get("include_cluster_network", True) and cluster_network:
        net = str(ipaddress.ip_network(cluster_network, strict=False))
        if net not in networks:
            networks.append(net)
    return {"externip": address, "localnets": tuple(networks)}, errors


def check_domains(requested, nethvoice_hosts, routes, owned):
    """Canonical domain list or errors: each alias as the proxy will take it (lower-case
    punycode), never NethVoice's own host nor a route the module does not own."""
    domains, errors = [], []
    for i, text in enumerate(requested):
        field = f"domain_aliases.{i}"
        try:
            value = check_domain(text)
        except InvalidValue as err:
            errors.append(problem(field, err.reason, text, str(err)))
            continue
        if value in domains:
            errors.append(problem(field, "duplicate", text))
        elif value in nethvoice_hosts:
            errors.append(problem(field, "owned_by_nethvoice", text))
        elif value in routes and value not in owned:
            errors.append(problem(field, "route_exists", text))
        else:
            domains.append(value)
    return domains, errors


def request_problems(data):
    """What is wrong with the input that needs nothing read: the NAT values, the domain
    names, the same trunk or domain asked twice. desired() finds these too."""
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


def desired(data, world, mine):
    """What the request asks of the instance (bypass_plan.Desired), or Refused with
    every problem the request and the world show."""
    problems, trunks, nat, aliases = [], None, None, None
    if "trunks" in data:
        trunks, found = resolve_trunks(data["trunks"], world.trunks, world.other_trunks)
        problems += found
    if data.get("nat") is not None:
        nat, found = check_nat(data["nat"], world.cluster_network)
        problems += found
    elif "nat" in data:
        nat = GIVE_BACK
    if "domain_aliases" in data:
        aliases, found = check_domains(data["domain_aliases"], world.nethvoice_hosts, world.routes or {},
                                       mine.aliases)
        problems += found
    if problems:
        raise Refused(problems)
    return Desired(None if trunks is None else tuple(trunks), nat, None if aliases is None else tuple(aliases))


def warnings_for(trunks_by_id, bypassed_ids, changes):
    warnings = []
    for tid in bypassed_ids:
        trunk = trunks_by_id.get(tid)
        if trunk is None:
            continue
        name = str(trunk["name"])
        if "custom" not in name.lower():
            warnings.append({"id": "trunk_name_without_custom", "trunk": tid,
                             "message": f"trunk '{name}' does not contain 'custom' in its name: NethVoice puts "
                                        "its outbound proxy back when the freepbx container restarts (update, "
                                        "reboot); the module bypasses it again, but rename it (e.g. 'Custom-"
                                        + name + "') to keep it bypassed in between"})
        if trunk.get("registration") == "send":
            warnings.append({"id": "provider_must_reach_asterisk", "trunk": tid,
                             "message": f"trunk '{name}' registers directly now: its provider must reach "
                                        "Asterisk directly (a port forward for its address, or a public port)"})
        else:
            warnings.append({"id": "trunk_without_registration", "trunk": tid,
                             "message": f"trunk '{name}' does not register: only outbound calls change; inbound "
                                        "calls need a port forward or a domain alias"})
    if any(c.op in (ops.SET_EXTERNIP, ops.SET_LOCALNETS) for c in changes):
        warnings.append({"id": "nat_affects_proxied_calls",
                         "message": "FreePBX's NAT settings are global: they also change calls that still go "
                                    "through the proxy (hold and transfer problems are known, NethServer/dev#7013); "
                                    "PJSIP transports pick them up when Asterisk restarts, which drops active calls"})
    return warnings
