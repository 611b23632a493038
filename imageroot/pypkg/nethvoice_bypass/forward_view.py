# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure views of port forwards: one forward as the actions and the page show it,
and the warnings that name what a new forward takes away from the proxy."""

from .forward_plan import desired_rule, forward_state, presence, standing_rule


def describe(entry, nethvoice, observed):
    """One forward's view; its state is "unknown" while the cluster or firewalld cannot
    be read (nethvoice or observed None)."""
    desired = desired_rule(entry, nethvoice) if nethvoice is not None else None
    rule = standing_rule(entry, desired, observed) if observed is not None else entry.rule
    known = nethvoice is not None and observed is not None
    return {
        "id": entry.id,
        "instance": entry.instance,
        "family": entry.family,
        "protocol": entry.protocol,
        "port": entry.port,
        "source": entry.source,
        "description": entry.description,
        "zone": entry.zone,
        "rule": rule,
        "origin": entry.origin,
        "target_port": desired.to_port if desired else None,
        "state": forward_state(entry, desired, observed) if known else "unknown",
        "present": presence(rule, entry.zone, observed).to_json() if observed is not None
        else {"runtime": None, "permanent": None},
    }


def describe_all(forwards, nethvoice, observed):
    return [describe(e, nethvoice, observed) for e in sorted(forwards.values(), key=lambda e: e.id)]


def forward_warnings(rule, proxy_lan_rules, proxy_env, trunks_via_proxy, other_forwards=(), competing=()):
    """What this forward takes away from the proxy or shares with other rules, named."""
    warnings = []
    for lan in proxy_lan_rules:
        if rule.overlaps(lan):
            warnings.append({
                "id": "overlaps_proxy_lan_rule",
                "message": f"{rule.source or 'every source'} is inside the proxy's local network "
                           f"{lan.source or 'any'} (its rule '{lan.to_rich_rule()}'); this forward takes "
                           f"precedence (priority {rule.priority}) for {rule.protocol.upper()} {rule.port}",
            })
    if rule.source is None:
        networks = [n for n in (proxy_env or {}).get("LOCALNETWORKS", "").split(",") if n]
        names = ", ".join(t["name"] for t in trunks_via_proxy) or "none found"
        warnings.append({
            "id": "captures_every_source",
            "message": f"without a source this forward captures every {rule.family} {rule.protocol.upper()} "
                       f"packet to port {rule.port}: devices in the proxy's local networks "
                       f"({', '.join(networks) or 'none configured'}) and trunks that still use the "
                       f"proxy ({names}) stop reaching the proxy on {rule.protocol.upper()}",
        })
    for other in other_forwards:
        if other.key != rule.key and other.to_port != rule.to_port and rule.overlaps(other):
            warnings.append({
                "id": "overlaps_other_forward",
                "message": f"overlaps the forward '{other.to_rich_rule()}' with another target at the "
                           "same priority: firewalld's order between them is undefined",
            })
    for text in competing:
        warnings.append({
            "id": "competing_rule",
            "message": f"firewalld also has '{text}', which the module did not write, for the same packets at "
                       "the same priority: firewalld's order between them is undefined; the module leaves it "
                       "alone (remove it with firewall-cmd if it is stale)",
        })
    return warnings
