# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure core of configure-bypass: trunks, FreePBX NAT settings, domain aliases,
planned on what the module owns (the instance's record), what is asked, and the world.

Parts of a request that are absent stay as they are; a part that is present is the
whole desired state of that part (an empty trunk list un-bypasses every trunk the
module bypassed; `"nat": null` gives FreePBX back the NAT settings it had). A run
without a request (reconcile, the self-check) repairs only what the platform is known
to undo: NethVoice putting its proxy back on a trunk, NethVoice's SIP port changing.
Anything else that differs from the record is a conflict: reported, never overwritten,
resolved only by the user's choice (keep theirs, or put ours back).
"""

from dataclasses import dataclass, field, replace

from . import changes as ops
from .changes import NatChange, RouteChange, TrunkChange
from .conflicts import NONE, Conflict, alias_key, nat_key, trunk_key
from .forward_plan import target_port
from .record import AliasEntry, NatField, TrunkEntry
from .sipsettings import TYPES, meaning, stored_form

GIVE_BACK = "give back"  # a request's "nat": null


def proxy_outbound_value(nethvoice_env):
    """What NethVoice writes in a trunk's outbound_proxy (trunks.php, migration.php)."""
    return f"sip:{nethvoice_env.get('PROXY_IP', '')}:{nethvoice_env.get('PROXY_PORT', '5060')};lr"


def route_uri(proxy_env, nethvoice_env):
    """The proxy route target NethVoice itself uses: Asterisk's UDP SIP listener over the
    cluster VPN (ASTERISK_SIP_UDP_PORT since NethVoice 1.8, update-module.d/90repoint_sip_proxy)."""
    return f"sip:{(proxy_env or {}).get('SERVICE_IP', '')}:{target_port(nethvoice_env, 'udp') or ''}"


@dataclass(frozen=True)
class InstanceWorld:
    """What a plan reads about one instance. trunks: as freepbx.read_trunks gives them
    (outbound_proxy None when the row is absent); nat: {setting: stored text or None};
    routes: {domain: (uris)} of the proxy, None when not read."""

    instance: str
    nethvoice: dict
    proxy: dict | None = None
    cluster_network: str | None = None
    nethvoice_hosts: frozenset = frozenset()
    trunks: tuple = ()
    nat: dict = field(default_factory=dict)
    routes: dict | None = None
    other_trunks: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InstancePlan:
    changes: tuple
    mine: object          # the instance's record afterwards
    conflicts: tuple = ()


def _same_trunk(entry, trunk):
    return trunk is not None and trunk["name"] == entry.name and trunk.get("tech", "pjsip") == entry.tech


def plan_owned_trunk(entry, trunk, keep, proxy_value, choice=None, instance=""):
    """(changes, entry or None, conflict) for a trunk the module owns. keep: it stays bypassed."""
    def change(op, after, why):
        return TrunkChange(op, entry.id, entry.name, trunk["outbound_proxy"] if trunk else None, after, why,
                           instance)
    if not _same_trunk(entry, trunk):
        why = (f"trunk {entry.name} (id {entry.id}) is gone" if trunk is None else
               f"id {entry.id} now names {trunk['name']} ({trunk.get('tech', 'pjsip')}), not {entry.name}: "
               "not the trunk the module took, so it is left alone")
        return [TrunkChange(ops.RELEASE_TRUNK, entry.id, entry.name, None, None, why, instance)], None, None
    value = trunk["outbound_proxy"]
    ours_or_platform = value in ("", None) or value == proxy_value
    if not keep:
        if not ours_or_platform:
            return [change(ops.RELEASE_TRUNK, value, f"left as someone set it ({value})")], None, None
        if value == entry.before:
            return [change(ops.RELEASE_TRUNK, value, "already as it was before the module")], None, None
        return [change(ops.RESTORE_TRUNK, entry.before, "no longer bypassed: its outbound proxy as it was "
                       "before the module")], None, None
    if value in ("", None):
        return [], entry, None
    if value == proxy_value or choice == "put_ours_back":
        why = "NethVoice put its proxy back" if value == proxy_value else "put back as the module set it"
        return [change(ops.BYPASS_TRUNK, "", why)], entry, None
    if choice == "keep_theirs":
        return [change(ops.RELEASE_TRUNK, value, "kept as someone set it: the module no longer manages it")], \
            None, None
    conflict = Conflict(trunk_key(instance, entry.id), "trunk_proxy_changed", entry.name, "", value, instance)
    return [], entry, conflict


def _gather(outcomes):
    """[(key, (changes, owned entry or None, conflict or None))] -> (changes, {key: entry}, conflicts)."""
    changes, owned, conflicts = [], {}, []
    for key, (found, after, conflict) in outcomes:
        changes += found
        if after is not None:
            owned[key] = after
        if conflict:
            conflicts.append(conflict)
    return changes, owned, conflicts


def plan_trunks(desired_ids, world, mine, since, resolutions=NONE):
    """(changes, {id: TrunkEntry}, conflicts). desired_ids None: keep what is owned."""
    by_id = {str(t["id"]): t for t in world.trunks}
    proxy_value = proxy_outbound_value(world.nethvoice)
    changes, owned, conflicts = _gather(
        (tid, plan_owned_trunk(entry, by_id.get(tid), desired_ids is None or tid in desired_ids, proxy_value,
                               resolutions.choice(trunk_key(world.instance, tid)), world.instance))
        for tid, entry in sorted(mine.trunks.items()))
    for tid in desired_ids or ():
        if tid in owned or (tid in mine.trunks and _same_trunk(mine.trunks[tid], by_id.get(tid))):
            continue
        trunk = by_id[tid]
        value = trunk["outbound_proxy"]
        owned[tid] = TrunkEntry(tid, trunk["name"], trunk.get("tech") or "pjsip", value, since)
        if value in ("", None):
            changes.append(TrunkChange(ops.MANAGE_TRUNK, tid, trunk["name"], value, value,
                                       "already without the proxy: the module keeps it so, bypassing it again "
                                       "if NethVoice puts the proxy back", world.instance))
        else:
            changes.append(TrunkChange(ops.BYPASS_TRUNK, tid, trunk["name"], value, "",
                                       "calls of this trunk go to the provider directly, not through the proxy",
                                       world.instance))
    return changes, owned, conflicts


def plan_nat_setting(name, desired, world, owned, since, choice=None):
    """(changes, NatField or None, conflict) for one NAT setting. desired: the value
    asked for, GIVE_BACK, or None (keep what is owned)."""
    stored = world.nat.get(name)
    theirs = meaning(name, stored)

    def set_to(value, text, why):
        return NatChange(ops.NAT_SET_OPS[name], name, theirs, value, text, why, world.instance)
    if owned is None:
        if desired is None or desired == GIVE_BACK:
            return [], None, None
        field_ = NatField(name, desired, stored, since)
        if theirs == desired:
            return [NatChange(ops.TAKE_NAT, name, theirs, theirs, stored, "already so: the module keeps it",
                              world.instance)], field_, None
        return [set_to(desired, stored_form(name, desired), _NAT_WHY[name])], field_, None
    if theirs != owned.ours:
        if desired == GIVE_BACK or choice == "keep_theirs":
            return [NatChange(ops.RELEASE_NAT, name, theirs, theirs, stored, "left as someone set it",
                              world.instance)], None, None
        if choice == "put_ours_back":
            return [set_to(owned.ours, stored_form(name, owned.ours), "put back as the module set it")], owned, None
        if desired is not None and desired == theirs:
            return [NatChange(ops.TAKE_NAT, name, theirs, theirs, stored, "already so: the module keeps it",
                              world.instance)], replace(owned, ours=desired), None
        return [], owned, Conflict(nat_key(world.instance, name), "nat_changed", name, owned.ours, theirs,
                                   world.instance)
    if desired == GIVE_BACK:
        if stored == owned.before:
            return [NatChange(ops.RELEASE_NAT, name, theirs, theirs, stored, "already as it was before the module",
                              world.instance)], None, None
        return [set_to(meaning(name, owned.before), owned.before, "as it was before the module")], None, None
    if desired is not None and desired != owned.ours:
        return [set_to(desired, stored_form(name, desired), _NAT_WHY[name])], replace(owned, ours=desired), None
    return [], owned, None


_NAT_WHY = {"externip": "Asterisk advertises this address to providers reached directly",
            "localnets": "addresses Asterisk must not rewrite with the external address"}


def plan_nat(desired, world, mine, since, resolutions=NONE):
    """desired: {"externip", "localnets"}, GIVE_BACK, or None. -> (changes, {setting: NatField}, conflicts)"""
    return _gather((name, plan_nat_setting(name, desired[name] if isinstance(desired, dict) else desired, world,
                                           mine.nat.get(name), since,
                                           resolutions.choice(nat_key(world.instance, name))))
                   for name in TYPES)


def plan_alias(entry, current, keep, uri, explicit, choice=None, instance=""):
    """(changes, AliasEntry or None, conflict) for a domain alias the module owns.
    current: the route's URIs in the proxy now (None: no route)."""
    def route(op, after, why):
        return RouteChange(op, entry.domain, current, after, entry.description, why, instance)
    if current is not None and current not in (entry.uris, (uri,)):
        if not keep or choice == "keep_theirs":
            return [route(ops.RELEASE_ROUTE, current, "pointed elsewhere by someone: left as it is")], None, None
        if choice == "put_ours_back":
            return [route(ops.ADD_ROUTE, (uri,), "put back as the module set it")], replace(entry, uris=(uri,)), None
        return [], entry, Conflict(alias_key(instance, entry.domain), "route_changed", entry.domain, entry.uris,
                                   current, instance)
    if current is None:
        if not keep or choice == "keep_theirs":
            return [route(ops.RELEASE_ROUTE, None, "no longer in the proxy: nothing to remove")], None, None
        if explicit or choice == "put_ours_back":
            return [route(ops.ADD_ROUTE, (uri,), "put back: it had been removed")], replace(entry, uris=(uri,)), None
        return [], entry, Conflict(alias_key(instance, entry.domain), "route_removed", entry.domain, entry.uris,
                                   None, instance)
    if not keep:
        return [route(ops.REMOVE_ROUTE, None, "alias no longer wanted")], None, None
    if current == (uri,):
        if entry.uris == (uri,):
            return [], entry, None
        return [route(ops.TAKE_ROUTE, current, "already points at Asterisk's current port")], \
            replace(entry, uris=current), None
    return [route(ops.ADD_ROUTE, (uri,), "Asterisk's SIP port changed")], replace(entry, uris=(uri,)), None


def plan_aliases(desired, world, mine, since, explicit, resolutions=NONE):
    """desired: [domains] or None (keep what is owned). -> (changes, {domain: AliasEntry}, conflicts)"""
    uri = route_uri(world.proxy, world.nethvoice)
    description = f"{world.instance} via nethvoice-bypass"
    routes = world.routes or {}
    keep = {domain: desired is None or domain in desired for domain in mine.aliases}
    changes, owned, conflicts = _gather(
        (domain, plan_alias(entry, routes.get(domain), keep[domain], uri, explicit and keep[domain],
                            resolutions.choice(alias_key(world.instance, domain)), world.instance))
        for domain, entry in sorted(mine.aliases.items()))
    for domain in desired or ():
        if domain not in mine.aliases:
            owned[domain] = AliasEntry(domain, (uri,), description, since)
            changes.append(RouteChange(ops.ADD_ROUTE, domain, None, (uri,), description,
                                       "the proxy routes this Request-URI domain to the instance", world.instance))
    return changes, owned, conflicts


@dataclass(frozen=True)
class Desired:
    """What a request asks of one instance, each part None when not asked (kept)."""

    trunks: tuple | None = None      # trunk ids
    nat: object = None               # {"externip", "localnets"}, GIVE_BACK or None
    aliases: tuple | None = None     # domains


def plan_instance(desired, world, mine, since, explicit=True, resolutions=NONE):
    """Everything one instance's bypass needs: InstancePlan(changes, mine afterwards, conflicts)."""
    trunk_changes, trunks, c1 = plan_trunks(desired.trunks, world, mine, since, resolutions)
    nat_changes, nat, c2 = plan_nat(desired.nat, world, mine, since, resolutions)
    alias_changes, aliases, c3 = plan_aliases(desired.aliases, world, mine, since, explicit, resolutions)
    after = replace(mine, trunks=trunks, nat=nat, aliases=aliases)
    return InstancePlan(tuple(trunk_changes + nat_changes + alias_changes), after, tuple(c1 + c2 + c3))


def needs_reload(changes):
    return any(c.op in ops.DB_OPS for c in changes)


def needs_routes(desired, mine):
    """Whether the plan needs the proxy's routes: only when an alias is asked or owned."""
    return bool(desired.aliases) or bool(mine.aliases)
