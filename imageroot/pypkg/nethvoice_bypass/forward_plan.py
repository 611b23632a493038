"""The pure core for port forwards: desired rules, states, plans, views and warnings.

Nothing here does I/O. Inputs are the intent entries, the cluster view and the rich
rules read from firewalld; outputs are plain dicts ready for JSON.
"""

from .model import PROXY_LAN_PORTS, ForwardRule, parse_rich_rule

RUNTIME, PERMANENT = "runtime", "permanent"
CONFIGS = (RUNTIME, PERMANENT)


def target_port(nethvoice_env, protocol):
    """Asterisk's SIP port for a protocol: NethVoice with a separate UDP port
    (ASTERISK_SIP_UDP_PORT) uses it for UDP; ASTERISK_SIP_PORT otherwise and for TCP."""
    names = ["ASTERISK_SIP_UDP_PORT", "ASTERISK_SIP_PORT"] if protocol == "udp" else ["ASTERISK_SIP_PORT"]
    for name in names:
        value = (nethvoice_env or {}).get(name, "")
        if value.isdigit() and 0 < int(value) < 65536:
            return int(value)
    return None


def plan_additions(entries, intent, cluster, zone, observed, trunks_via_proxy):
    """Changes and warnings for new entries; each entry's rule becomes its desired one.
    trunks_via_proxy: {(instance, protocol): trunks still using the proxy}, read for
    the forwards without a source."""
    changes, warnings, index = [], [], rule_index(observed)
    lan_rules = proxy_rules(observed[zone][RUNTIME] | observed[zone][PERMANENT])
    ours = [r for r in (desired_rule(e, cluster) for e in intent["forwards"].values()) if r]
    for entry in entries:
        desired = desired_rule(entry, cluster)
        entry["rule"] = entry["rule"] or desired.to_rich_rule()
        changes += plan_forward(entry, desired, observed, index=index)
        warnings += forward_warnings(desired, lan_rules, cluster.proxy,
                                     trunks_via_proxy.get((entry["instance"], entry["protocol"]), []), ours)
        entry["rule"] = desired.to_rich_rule()
    return changes, warnings


def plan_reconcile(intent, cluster, observed):
    """Changes that bring every forward back to its desired rule, and the recorded
    rules to update: {id: rule} (also when someone else moved the rule already)."""
    changes, updates, index = [], {}, rule_index(observed)
    for entry in intent["forwards"].values():
        desired = desired_rule(entry, cluster)
        changes += plan_forward(entry, desired, observed, index=index)
        if desired is not None and desired.to_rich_rule() != entry["rule"]:
            updates[entry["id"]] = desired.to_rich_rule()
    return changes, updates


def plan_removals(entries, observed):
    index = rule_index(observed)
    return [c for e in entries for c in plan_forward(e, None, observed, removing=True, index=index)]


def rule_changes(changes):
    return [c for c in changes if c["op"] != "flush_conntrack"]


def observed_after(observed, changes):
    """firewalld's rules once applied changes are made: what reading them again gives."""
    after = {zone: {config: set(rules) for config, rules in configs.items()} for zone, configs in observed.items()}
    for change in rule_changes(changes):
        rules = after.setdefault(change["zone"], {c: set() for c in CONFIGS})[change["config"]]
        (rules.add if change["op"] == "add_rule" else rules.discard)(change["rule"])
    return after


def desired_rule(entry, cluster):
    """The rule this forward should have now, or None when its instance is gone."""
    port = target_port(cluster.nethvoice.get(entry["instance"]), entry["protocol"])
    if port is None:
        return None
    return ForwardRule(entry["family"], entry["protocol"], entry["port"], port, entry.get("source"))


def presence(rule_text, zone, observed):
    """observed: {zone: {config: set(rules)}} -> {config: bool}."""
    return {config: rule_text in observed.get(zone, {}).get(config, set()) for config in CONFIGS}


def current_rule(entry, desired, observed):
    """The rule that stands for this forward in firewalld: the recorded one, or the
    desired one when something else moved the recorded rule there (NethVoice 1.8's
    update repoints UDP forwards from ASTERISK_SIP_PORT to ASTERISK_SIP_UDP_PORT):
    the recorded rule in neither configuration, the desired one in both."""
    if desired is not None:
        text = desired.to_rich_rule()
        if (text != entry["rule"] and not any(presence(entry["rule"], entry["zone"], observed).values())
                and all(presence(text, entry["zone"], observed).values())):
            return text
    return entry["rule"]


def rule_index(observed):
    """{(zone, key, priority): rule texts} of every forward rule observed, each parsed
    once: how related_rules finds its rules among hundreds."""
    index = {}
    for zone, configs in observed.items():
        for text in set().union(*configs.values()):
            rule = parse_rich_rule(text)
            if rule:
                index.setdefault((zone, rule.key, rule.priority), set()).add(text)
    return index


def related_rules(entry, observed, index=None):
    """The recorded rule and every rule that differs from it only in its target port
    (same family, protocol, port, source and priority): rules that stand for this
    forward, wherever Asterisk's port was when they were written."""
    recorded = parse_rich_rule(entry["rule"])
    rules = {entry["rule"]}
    if recorded:
        index = rule_index(observed) if index is None else index
        rules |= index.get((entry["zone"], recorded.key, recorded.priority), set())
    return rules


def forward_state(entry, desired, observed):
    if desired is None:
        return "instance_missing"
    rule = current_rule(entry, desired, observed)
    if desired.to_rich_rule() != rule:
        return "stale_target"
    present = presence(rule, entry["zone"], observed)
    if all(present.values()):
        return "in_sync"
    if not any(present.values()):
        return "missing"
    return "missing_runtime" if not present[RUNTIME] else "missing_permanent"


def _rule_change(op, entry, config, rule, why):
    return {"op": op, "forward": entry["id"], "zone": entry["zone"], "config": config, "rule": rule,
            "why": why}


def plan_forward(entry, desired, observed, removing=False, index=None):
    """Changes that bring one forward to `desired` (or remove it), in apply order."""
    changes = []
    wanted = None if removing or desired is None else desired.to_rich_rule()
    stale = related_rules(entry, observed, index) - {wanted}
    why = ("forward removed" if removing else
           f"instance {entry['instance']} is gone" if desired is None else
           f"Asterisk's {entry['protocol'].upper()} SIP port changed to {desired.to_port}")
    for rule in sorted(stale):
        for config, present in presence(rule, entry["zone"], observed).items():
            if present:
                changes.append(_rule_change("remove_rule", entry, config, rule, why))
    if wanted is not None:
        for config, present in presence(wanted, entry["zone"], observed).items():
            if not present:
                why = "new forward" if not entry.get("applied") else f"missing from the {config} configuration"
                changes.append(_rule_change("add_rule", entry, config, wanted, why))
    if any(c["config"] == RUNTIME for c in changes):
        changes.append({"op": "flush_conntrack", "forward": entry["id"], "protocol": entry["protocol"],
                        "port": entry["port"], "family": entry["family"], "source": entry.get("source"),
                        "why": "existing flows keep their old NAT binding until deleted"})
    return changes


def proxy_rules(observed_zone_rules):
    """The proxy's behind-NAT LAN forwards (5060/5061 -> 6060/6061) found in a zone."""
    rules = (parse_rich_rule(text) for text in observed_zone_rules)
    return sorted((r for r in rules if r and r.to_port in PROXY_LAN_PORTS),
                  key=lambda r: r.to_rich_rule())


def forward_warnings(rule, proxy_lan_rules, proxy_env, trunks_via_proxy, other_forwards=()):
    """What this forward takes away from the proxy, named."""
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
    return warnings



# --- views -------------------------------------------------------------------------

def describe(entry, cluster, observed):
    """One forward's view; its state is "unknown" while the cluster or firewalld cannot
    be read (cluster or observed None)."""
    desired = desired_rule(entry, cluster) if cluster else None
    rule = current_rule(entry, desired, observed) if observed else entry["rule"]
    return {
        "id": entry["id"],
        "instance": entry["instance"],
        "family": entry["family"],
        "protocol": entry["protocol"],
        "port": entry["port"],
        "source": entry.get("source"),
        "description": entry.get("description", ""),
        "zone": entry["zone"],
        "rule": rule,
        "target_port": desired.to_port if desired else None,
        "state": forward_state(entry, desired, observed) if cluster and observed else "unknown",
        "present": presence(rule, entry["zone"], observed) if observed else {"runtime": None, "permanent": None},
    }


def describe_all(intent, cluster, observed):
    return [describe(e, cluster, observed) for e in sorted(intent["forwards"].values(), key=lambda e: e["id"])]


def known_rules(intent, observed):
    """Every rule text that stands for a managed forward (related_rules)."""
    index = rule_index(observed)
    return set().union(*(related_rules(e, observed, index) for e in intent["forwards"].values()))
