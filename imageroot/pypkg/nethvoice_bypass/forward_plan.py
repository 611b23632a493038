# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure core for port forwards: which rule stands for a forward, and the plans that
add, repair and remove them, touching only rules the module owns.

observed: {zone: {config: set(rule texts)}}, as read from firewalld. A rule stands for a
forward when it is the exact text the record holds, or, once that text is gone from both
configurations, the same rule pointing at the instance's current Asterisk port in both
(NethVoice's own update moves our UDP forwards there). Nothing else is ever removed.
"""

from dataclasses import dataclass, replace

from .changes import (
    ADD_RULE,
    ADOPT_FORWARD,
    FOLLOW_RULE,
    RELEASE_FORWARD,
    REMOVE_RULE,
    FlushChange,
    ForwardNote,
    RuleChange,
)
from .conflicts import Conflict, forward_key
from .model import PROXY_LAN_PORTS, ForwardRule, parse_rich_rule
from .record import Presence

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


def desired_rule(entry, nethvoice):
    """The rule this forward should have now, or None when its instance is gone.
    nethvoice: {instance: environment}."""
    port = target_port(nethvoice.get(entry.instance), entry.protocol)
    if port is None:
        return None
    return ForwardRule(entry.family, entry.protocol, entry.port, port, entry.source)


def presence(rule_text, zone, observed):
    """observed: {zone: {config: set(rules)}} -> Presence."""
    rules = observed.get(zone, {})
    return Presence(*(rule_text in rules.get(config, set()) for config in CONFIGS))


def standing_rule(entry, desired, observed):
    """The rule text that stands for this forward in firewalld (see the module docstring)."""
    if desired is not None and desired.to_rich_rule() != entry.rule:
        ours, moved = presence(entry.rule, entry.zone, observed), presence(desired.to_rich_rule(), entry.zone,
                                                                            observed)
        if not (ours.runtime or ours.permanent) and moved.runtime and moved.permanent:
            return desired.to_rich_rule()
    return entry.rule


def forward_state(entry, desired, observed):
    if desired is None:
        return "instance_missing"
    rule = standing_rule(entry, desired, observed)
    present = presence(rule, entry.zone, observed)
    if present.runtime and present.permanent:
        return "in_sync" if rule == desired.to_rich_rule() else "stale_target"
    if not present.runtime and not present.permanent:
        return "missing"
    return "missing_runtime" if present.permanent else "missing_permanent"


def _rules(op, entry, rule, configs, why):
    return [RuleChange(op, entry.id, entry.zone, config, rule, why) for config in configs]


def _with_flush(entry, changes):
    if any(isinstance(c, RuleChange) and c.config == RUNTIME for c in changes):
        changes = [*changes, FlushChange(entry.id, entry.protocol, entry.port, entry.family, entry.source)]
    return changes


@dataclass(frozen=True)
class ForwardOutcome:
    """What a plan does to one forward: changes, the entry afterwards (None: released),
    and a conflict left for the user."""

    changes: tuple
    entry: object
    conflict: Conflict | None = None


def plan_new(entry, desired, observed):
    """A forward the module does not own yet: add its rule where it is missing; where it
    is already there, it is adopted as it is (and stays when the forward is removed)."""
    text = desired.to_rich_rule()
    before = presence(text, entry.zone, observed)
    entry = replace(entry, rule=text, before=before)
    missing = [c for c in CONFIGS if not before[c]]
    if not missing:
        return ForwardOutcome((ForwardNote(ADOPT_FORWARD, entry.id, text, "already in firewalld: the module adopts "
                                           "it as it is, and leaves it there when the forward is removed"),), entry)
    changes = _rules(ADD_RULE, entry, text, missing, "new forward")
    return ForwardOutcome(tuple(_with_flush(entry, changes)), entry)


def plan_reconcile(entry, desired, observed, choice=None, explicit=False):
    """Bring an owned forward back to its desired rule. Repairs only what the platform is
    known to cause (a firewalld reload, NethVoice's ports or instances); a rule removed by
    someone else is a conflict, put back only by choice or an explicit request for it."""
    if desired is None:
        return _suspend(entry, observed)
    wanted = desired.to_rich_rule()
    if entry.suspended:
        missing = [c for c in CONFIGS if not presence(wanted, entry.zone, observed)[c]]
        changes = _rules(ADD_RULE, entry, wanted, missing, f"instance {entry.instance} is back")
        return ForwardOutcome(tuple(_with_flush(entry, changes)), replace(entry, rule=wanted, suspended=False))
    standing = standing_rule(entry, desired, observed)
    present = presence(standing, entry.zone, observed)
    notes, after = [], entry
    if standing != entry.rule:
        notes.append(ForwardNote(FOLLOW_RULE, entry.id, standing, "NethVoice moved the rule to Asterisk's current "
                                                                  "port: the record follows it"))
        after = replace(entry, rule=standing)
    if not present.permanent:
        conflict = Conflict(forward_key(entry.id), "forward_removed" if not present.runtime else
                            "forward_removed_permanent", entry.id, entry.rule, None)
        if choice == "keep_theirs":
            return ForwardOutcome((ForwardNote(RELEASE_FORWARD, entry.id, entry.rule, "kept as the admin left it: "
                                               "the module no longer manages this forward"),), None)
        if choice != "put_ours_back" and not explicit:
            return ForwardOutcome(tuple(notes), after, conflict)
    changes = []
    if standing != wanted:  # Asterisk's port changed: the old rule goes, wherever it still is
        changes += _rules(REMOVE_RULE, entry, standing, [c for c in CONFIGS if present[c]],
                          f"Asterisk's {entry.protocol.upper()} SIP port changed to {desired.to_port}")
        present = Presence()
    for config in CONFIGS:
        if not present[config]:
            changes += _rules(ADD_RULE, entry, wanted, [config], _why_add(config, standing == wanted, present))
    return ForwardOutcome(tuple(notes + _with_flush(entry, changes)), replace(after, rule=wanted))


def _why_add(config, same_port, present):
    if not same_port:
        return "the forward now points at Asterisk's current port"
    if not present.permanent:
        return "put back: it had been removed by someone else"
    return "missing from the runtime configuration (a firewalld reload or restart)"


def _suspend(entry, observed):
    """The instance is gone: withdraw the rules the module made (kept in the record for
    its return)."""
    present = presence(entry.rule, entry.zone, observed)
    configs = [c for c in CONFIGS if present[c] and not entry.before[c]]
    changes = _rules(REMOVE_RULE, entry, entry.rule, configs, f"instance {entry.instance} is gone")
    return ForwardOutcome(tuple(_with_flush(entry, changes)), replace(entry, suspended=True))


def plan_removal(entry, desired, observed):
    """Withdraw a forward: its rule goes from every configuration where the module put
    it; an adopted rule stays as it was before the module; other rules are never touched."""
    standing = standing_rule(entry, desired, observed)
    present = presence(standing, entry.zone, observed)
    configs = [c for c in CONFIGS if present[c] and not entry.before[c]]
    changes = _rules(REMOVE_RULE, entry, standing, configs, "forward removed")
    kept = [c for c in CONFIGS if present[c] and entry.before[c]]
    if kept:
        changes.append(ForwardNote(RELEASE_FORWARD, entry.id, standing, "adopted: left in the "
                                   f"{' and '.join(kept)} configuration as it was before the module"))
    return tuple(_with_flush(entry, changes))


def observed_after(observed, changes):
    """firewalld's rules once applied changes are made: what reading them again gives."""
    after = {zone: {config: set(rules) for config, rules in configs.items()} for zone, configs in observed.items()}
    for change in changes:
        if isinstance(change, RuleChange):
            rules = after.setdefault(change.zone, {c: set() for c in CONFIGS})[change.config]
            if change.op == ADD_RULE:
                rules.add(change.rule)
            else:
                rules.discard(change.rule)
    return after


# --- what else is in firewalld -------------------------------------------------------

def proxy_rules(observed_zone_rules):
    """The proxy's behind-NAT LAN forwards (5060/5061 -> 6060/6061) found in a zone."""
    rules = (parse_rich_rule(text) for text in observed_zone_rules)
    return sorted((r for r in rules if r and r.to_port in PROXY_LAN_PORTS), key=lambda r: r.to_rich_rule())


def known_rules(forwards, nethvoice, observed):
    """Every rule text that stands for a managed forward."""
    return {standing_rule(e, desired_rule(e, nethvoice), observed) for e in forwards.values()}


def rule_index(observed):
    """{(zone, key, priority): {rule texts}} of every forward rule observed, each parsed once."""
    index = {}
    for zone, configs in observed.items():
        for text in set().union(*configs.values()) if configs else ():
            rule = parse_rich_rule(text)
            if rule:
                index.setdefault((zone, rule.key, rule.priority), set()).add(text)
    return index


def competing_rules(entry, observed, ours, index=None):
    """Rules the module does not own that match the same packets as this forward at the
    same priority, where firewalld's order between them is undefined."""
    mine = parse_rich_rule(entry.rule)
    if mine is None:
        return []
    index = rule_index(observed) if index is None else index
    return sorted(index.get((entry.zone, mine.key, mine.priority), set()) - ours)
