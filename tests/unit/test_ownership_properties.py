"""The ownership invariants, as properties: random sequences of module actions, admin
edits, NethVoice's own changes and firewalld reloads, over the pure planning core and a
small model of the world (firewalld's rules, FreePBX's trunks and NAT settings, the
proxy's routes). After every module action nothing the module does not own has changed,
and an admin's value is overwritten only when the user chose to put the module's back;
a full undo gives every owned field back its recorded "before"."""

import os
from dataclasses import dataclass, field, replace

import pytest
from builders import NV, PROXY_ENV, PROXY_VALUE
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from nethvoice_bypass import bypass_plan, changes
from nethvoice_bypass import forward_plan as forwards
from nethvoice_bypass.bypass_plan import GIVE_BACK, Desired, InstanceWorld
from nethvoice_bypass.conflicts import NONE, Resolutions
from nethvoice_bypass.forward_requests import checked_requests, new_entries
from nethvoice_bypass.model import ForwardRule
from nethvoice_bypass.record import InstanceRecord, Record
from nethvoice_bypass.sipsettings import meaning

pytestmark = pytest.mark.unit

SOURCES = ["192.0.2.10", "192.0.2.11", "198.51.100.0/28"]
DOMAINS = ["a.example", "b.example"]
ADMIN_PROXIES = ["sip:198.51.100.7:5060;lr", "sip:192.0.2.99;lr", ""]
ADMIN_URIS = [("sip:10.5.4.9:5060",), ("sip:10.5.4.1:30000",)]
EXTERNIPS = ["203.0.113.5", "198.51.100.77"]
LOCALNETS = [("192.0.2.0/24", "10.5.4.0/24"), ("10.5.4.0/24",)]


def foreign_rule(source, to_port, priority=-10):
    return ForwardRule("ipv4", "udp", 5060, to_port, source, priority).to_rich_rule()


@dataclass
class World:
    nethvoice: dict = field(default_factory=lambda: dict(NV))
    rules: dict = field(default_factory=lambda: {"runtime": set(), "permanent": set()})
    trunks: dict = field(default_factory=dict)   # id -> {id, name, tech, outbound_proxy}
    nat: dict = field(default_factory=lambda: {"externip": "", "localnets": None})
    routes: dict = field(default_factory=dict)   # domain -> uris

    def copy(self):
        return World(dict(self.nethvoice), {c: set(r) for c, r in self.rules.items()},
                     {k: dict(v) for k, v in self.trunks.items()}, dict(self.nat), dict(self.routes))

    def observed(self):
        return {"public": {c: set(r) for c, r in self.rules.items()}}

    def instance(self):
        return InstanceWorld("nethvoice1", self.nethvoice, PROXY_ENV, "10.5.4.0/24",
                             frozenset({"voice.example.org"}), tuple(self.trunks.values()), dict(self.nat),
                             dict(self.routes))

    def apply(self, plan):
        for c in plan:
            if isinstance(c, changes.RuleChange):
                (self.rules[c.config].add if c.op == changes.ADD_RULE else self.rules[c.config].discard)(c.rule)
            elif isinstance(c, changes.TrunkChange) and c.op in changes.DB_OPS:
                self.trunks[c.trunk]["outbound_proxy"] = c.after
            elif isinstance(c, changes.NatChange) and c.op in changes.DB_OPS:
                self.nat[c.setting] = c.stored
            elif isinstance(c, changes.RouteChange) and c.op == changes.ADD_ROUTE:
                self.routes[c.domain] = tuple(c.after)
            elif isinstance(c, changes.RouteChange) and c.op == changes.REMOVE_ROUTE:
                self.routes.pop(c.domain, None)


def initial_trunks():
    return {"1": {"id": "1", "name": "Telco-Main", "tech": "pjsip", "outbound_proxy": PROXY_VALUE},
            "2": {"id": "2", "name": "Custom-Voip", "tech": "pjsip", "outbound_proxy": "sip:198.51.100.7:5060;lr"},
            "3": {"id": "3", "name": "Mediant-SBC", "tech": "pjsip", "outbound_proxy": ""},
            "4": {"id": "4", "name": "No-Row", "tech": "pjsip", "outbound_proxy": None}}


class Ownership(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.world = World(trunks=initial_trunks())
        self.record = Record()

    # -- the module ------------------------------------------------------------------------

    def act(self, fn, resolutions=NONE):
        """Run a module action and check what it changed against what it owned."""
        before_world, before_record = self.world.copy(), self.record
        requested = fn()
        check_only_owned(before_world, self.world, before_record, self.record, resolutions, requested or {})

    @rule(source=st.sampled_from(SOURCES), protocol=st.sampled_from(["udp", "tcp"]))
    def add_forward(self, source, protocol):
        def run():
            checked = checked_requests({"source": source, "protocol": protocol})
            for entry, owned in new_entries(checked, self.record, {"nethvoice1": self.world.nethvoice}, "public",
                                            "T"):
                desired = forwards.desired_rule(entry, {"nethvoice1": self.world.nethvoice})
                outcome = (forwards.plan_reconcile(entry, desired, self.world.observed(), explicit=True) if owned
                           else forwards.plan_new(entry, desired, self.world.observed()))
                self.world.apply(outcome.changes)
                self.record = self.record.with_forwards(update={entry.id: outcome.entry})
            return {"forwards": True}
        self.act(run)

    @precondition(lambda self: self.record.forwards)
    @rule(data=st.data())
    def remove_forward(self, data):
        fid = data.draw(st.sampled_from(sorted(self.record.forwards)))

        def run():
            entry = self.record.forwards[fid]
            self.world.apply(forwards.plan_removal(entry, forwards.desired_rule(
                entry, {"nethvoice1": self.world.nethvoice}), self.world.observed()))
            self.record = self.record.with_forwards(remove=[fid])
        self.act(run)

    @rule(trunks=st.none() | st.sets(st.sampled_from(["1", "2", "3", "4"])),
          nat=st.sampled_from([None, GIVE_BACK, *[{"externip": e, "localnets": n} for e in EXTERNIPS
                                                 for n in LOCALNETS]]),
          aliases=st.none() | st.sets(st.sampled_from(DOMAINS)))
    def configure(self, trunks, nat, aliases):
        mine = self.record.instance("nethvoice1")
        trunks = None if trunks is None else tuple(sorted(t for t in trunks if t in self.world.trunks))
        if aliases is not None:  # a route the module does not own is refused by the request's checks
            aliases = tuple(sorted(d for d in aliases if d not in self.world.routes or d in mine.aliases))

        def run():
            self.plan_instance(Desired(trunks, nat, aliases), explicit=True)
            return {"trunks": set(trunks or ()), "nat": nat is not None and nat != GIVE_BACK,
                    "aliases": set(aliases or ())}
        self.act(run)

    def plan_instance(self, desired, explicit, resolutions=NONE):
        planned = bypass_plan.plan_instance(desired, self.world.instance(), self.record.instance("nethvoice1"),
                                            "T", explicit, resolutions)
        self.world.apply(planned.changes)
        self.record = self.record.with_instance("nethvoice1", planned.mine)
        return planned

    @rule(data=st.data())
    def reconcile(self, data):
        keys = [c.key for c in self.conflicts()]
        chosen = data.draw(st.lists(st.sampled_from(keys), unique=True)) if keys else []
        put = {k for k in chosen if data.draw(st.booleans())}
        resolutions = Resolutions(frozenset(set(chosen) - put), frozenset(put))

        def run():
            for fid, entry in sorted(self.record.forwards.items()):
                outcome = forwards.plan_reconcile(entry, forwards.desired_rule(
                    entry, {"nethvoice1": self.world.nethvoice}), self.world.observed(),
                    resolutions.choice(f"forward:{fid}"))
                self.world.apply(outcome.changes)
                self.record = self.record.with_forwards(update={fid: outcome.entry} if outcome.entry else {},
                                                        remove=[] if outcome.entry else [fid])
            self.plan_instance(Desired(), explicit=False, resolutions=resolutions)
        self.act(run, resolutions)

    def conflicts(self):
        found = [forwards.plan_reconcile(e, forwards.desired_rule(e, {"nethvoice1": self.world.nethvoice}),
                                         self.world.observed()).conflict for e in self.record.forwards.values()]
        found += bypass_plan.plan_instance(Desired(), self.world.instance(), self.record.instance("nethvoice1"),
                                           "T", False).conflicts
        return [c for c in found if c]

    # -- everyone else ---------------------------------------------------------------------

    @rule(source=st.sampled_from(SOURCES), to_port=st.sampled_from([20040, 20999]),
          configs=st.sampled_from([("runtime",), ("permanent",), ("runtime", "permanent")]))
    def admin_adds_a_rule(self, source, to_port, configs):
        for config in configs:
            self.world.rules[config].add(foreign_rule(source, to_port))

    @precondition(lambda self: self.world.rules["runtime"] | self.world.rules["permanent"])
    @rule(data=st.data(), configs=st.sampled_from([("runtime",), ("permanent",), ("runtime", "permanent")]))
    def admin_removes_a_rule(self, data, configs):
        rule_text = data.draw(st.sampled_from(sorted(self.world.rules["runtime"] | self.world.rules["permanent"])))
        for config in configs:
            self.world.rules[config].discard(rule_text)

    @rule(tid=st.sampled_from(["1", "2", "3", "4"]), value=st.sampled_from(ADMIN_PROXIES))
    def admin_sets_a_trunk_proxy(self, tid, value):
        if tid in self.world.trunks:
            self.world.trunks[tid]["outbound_proxy"] = value

    @rule(tid=st.sampled_from(["1", "2", "3", "4"]), name=st.sampled_from(["New-Trunk", "Custom-New"]))
    def admin_deletes_a_trunk_and_nethvoice_reuses_its_id(self, tid, name):
        self.world.trunks[tid] = {"id": tid, "name": name, "tech": "pjsip", "outbound_proxy": PROXY_VALUE}

    @rule(setting=st.sampled_from(["externip", "localnets"]), value=st.sampled_from(["198.51.100.9", None]))
    def admin_changes_nat(self, setting, value):
        self.world.nat[setting] = value if setting == "externip" or value is None else '[{"net":"1.2.3.0",' \
                                                                                       '"mask":"24"}]'

    @rule(domain=st.sampled_from(DOMAINS), uris=st.sampled_from([None, *ADMIN_URIS]))
    def admin_points_a_route(self, domain, uris):
        if uris is None:
            self.world.routes.pop(domain, None)
        else:
            self.world.routes[domain] = uris

    @rule()
    def nethvoice_restarts_freepbx(self):
        """migration.php: every trunk without custom in its name gets the proxy back."""
        for trunk in self.world.trunks.values():
            if "custom" not in trunk["name"].lower():
                trunk["outbound_proxy"] = PROXY_VALUE

    @rule()
    def nethvoice_moves_its_udp_port(self):
        """An update with a new UDP port, and its own rewrite of the forwards (25rewrite_sip_portforward)."""
        old, new = int(self.world.nethvoice["ASTERISK_SIP_UDP_PORT"]), 20140
        if old == new:
            return
        self.world.nethvoice["ASTERISK_SIP_UDP_PORT"] = str(new)
        for text in sorted(self.world.rules["permanent"]):
            if 'protocol="udp"' in text and f'to-port="{old}"' in text:
                self.world.rules["permanent"].discard(text)
                self.world.rules["permanent"].add(text.replace(f'to-port="{old}"', f'to-port="{new}"'))
        self.firewalld_reloads()

    @rule()
    def firewalld_reloads(self):
        self.world.rules["runtime"] = set(self.world.rules["permanent"])

    # -- the undo ----------------------------------------------------------------------------

    @invariant()
    def a_full_undo_gives_back_every_owned_field(self):
        saved_world, saved_record = self.world.copy(), self.record
        owned = self.record
        before_undo = self.world.copy()
        for _fid, entry in sorted(owned.forwards.items()):
            self.world.apply(forwards.plan_removal(entry, forwards.desired_rule(
                entry, {"nethvoice1": self.world.nethvoice}), self.world.observed()))
        self.plan_instance(Desired(trunks=(), nat=GIVE_BACK, aliases=()), explicit=True)
        assert self.record.instance("nethvoice1") == InstanceRecord()
        check_given_back(before_undo, self.world, owned)
        self.world, self.record = saved_world, saved_record


def check_only_owned(before, after, record_before, record_after, resolutions, requested):
    """What a module action changed is the module's, and no admin value was overwritten
    unless the user chose to put the module's back."""
    ours = set()
    for rec in (record_before, record_after):
        for entry in rec.forwards.values():
            ours |= {entry.rule, forwards.standing_rule(entry, forwards.desired_rule(
                entry, {"nethvoice1": before.nethvoice}), before.observed())}
            desired = forwards.desired_rule(entry, {"nethvoice1": after.nethvoice})
            ours |= {desired.to_rich_rule()} if desired else set()
    for config in ("runtime", "permanent"):
        changed = before.rules[config] ^ after.rules[config]
        assert changed <= ours, f"{config}: changed rules the module does not own: {changed - ours}"
    mine_before = record_before.instance("nethvoice1")
    for tid, trunk in after.trunks.items():
        old = before.trunks[tid]["outbound_proxy"]
        if trunk["outbound_proxy"] == old:
            continue
        entry = mine_before.trunks.get(tid)
        if entry is None or entry.name != before.trunks[tid]["name"]:  # not owned: only when asked for by id
            assert tid in requested.get("trunks", ()), f"trunk {tid} changed without being owned or asked"
        else:
            assert old in ("", None, PROXY_VALUE) or resolutions.choice(f"trunk:nethvoice1:{tid}") == \
                "put_ours_back", f"trunk {tid}: the admin's {old!r} was overwritten"
    for setting, stored in after.nat.items():
        if stored == before.nat[setting]:
            continue
        owned = mine_before.nat.get(setting)
        if owned is None:
            assert requested.get("nat"), f"NAT {setting} changed without being owned or asked"
        else:
            assert meaning(setting, before.nat[setting]) == owned.ours or resolutions.choice(
                f"nat:nethvoice1:{setting}") == "put_ours_back", f"NAT {setting}: the admin's value was overwritten"
    for domain in set(before.routes) | set(after.routes):
        old, new = before.routes.get(domain), after.routes.get(domain)
        if old == new:
            continue
        alias = mine_before.aliases.get(domain)
        if alias is None:
            assert domain in requested.get("aliases", ()) and old is None, f"route {domain} is not the module's"
        else:
            ours_now = (bypass_plan.route_uri(PROXY_ENV, after.nethvoice),)
            assert old in (None, alias.uris, ours_now) or resolutions.choice(f"alias:nethvoice1:{domain}") == \
                "put_ours_back", f"route {domain}: the admin's {old} was overwritten"


def check_given_back(before, after, owned):
    """Each owned field that still held the module's value holds its before again; what
    someone else changed is as they left it."""
    mine = owned.instance("nethvoice1")
    for entry in owned.forwards.values():
        for config in ("runtime", "permanent"):
            standing = forwards.standing_rule(entry, forwards.desired_rule(entry, {"nethvoice1": before.nethvoice}),
                                              before.observed())
            if not entry.before[config]:
                assert standing not in after.rules[config], f"{entry.id}: created rule left in {config}"
            elif standing in before.rules[config]:
                assert standing in after.rules[config], f"{entry.id}: adopted rule removed from {config}"
    for tid, entry in mine.trunks.items():
        now, then = after.trunks[tid]["outbound_proxy"], before.trunks[tid]
        if then["name"] != entry.name:
            assert now == then["outbound_proxy"], f"trunk {tid} is another trunk: changed anyway"
        elif then["outbound_proxy"] in ("", None, PROXY_VALUE):
            assert now == entry.before, f"trunk {tid}: {now!r}, before the module {entry.before!r}"
        else:
            assert now == then["outbound_proxy"], f"trunk {tid}: the admin's value was not left alone"
    for setting, nat in mine.nat.items():
        if meaning(setting, before.nat[setting]) == nat.ours:
            assert after.nat[setting] == nat.before, f"NAT {setting} not given back"
        else:
            assert after.nat[setting] == before.nat[setting], f"NAT {setting}: the admin's value changed"
    for domain, alias in mine.aliases.items():
        if before.routes.get(domain) in (alias.uris, (bypass_plan.route_uri(PROXY_ENV, before.nethvoice),)):
            assert domain not in after.routes, f"route {domain} left behind"
        else:
            assert after.routes.get(domain) == before.routes.get(domain), f"route {domain} changed"


Ownership.TestCase.settings = settings(max_examples=int(os.environ.get('OWNERSHIP_EXAMPLES', 150)), stateful_step_count=25, deadline=None)
test_ownership = Ownership.TestCase


def test_the_model_applies_what_the_planner_says():
    """The model itself: a bypassed trunk's change lands where the planner says."""
    world = World(trunks=initial_trunks())
    planned = bypass_plan.plan_instance(Desired(trunks=("2",)), world.instance(), InstanceRecord(), "T")
    world.apply(planned.changes)
    assert world.trunks["2"]["outbound_proxy"] == "" and replace(planned.mine).trunks["2"].before == \
        "sip:198.51.100.7:5060;lr"
