"""The pure planning core of port forwards: which rule stands for a forward, and plans
that change only rules the module owns."""

import pytest
from builders import NV, OLD_RULE, RULE, agent_format, entry, observed, ops
from nethvoice_bypass import forward_plan as forwards
from nethvoice_bypass.cluster import ClusterView, image_name
from nethvoice_bypass.errors import Refused
from nethvoice_bypass.forward_requests import (
    check_forward_request,
    checked_requests,
    forward_requests,
    new_entries,
    select_instance,
)
from nethvoice_bypass.model import ForwardRule
from nethvoice_bypass.record import Presence, Record

pytestmark = pytest.mark.unit

NETHVOICE = {"nethvoice1": NV}
FOREIGN_PORT = ForwardRule("ipv4", "udp", 5060, 20999, "192.0.2.10").to_rich_rule()


def test_image_name_and_instances():
    assert image_name("ghcr.io/nethesis/nethvoice:1.8.0") == "nethvoice"
    assert image_name("ghcr.io/nethesis/nethvoice-proxy@sha256:abc") == "nethvoice-proxy"
    view = ClusterView("1", {"nethvoice1": NV, "nethvoice-proxy1": {"IMAGE_URL": "x/nethvoice-proxy:1"}},
                       "nethvoice-proxy1", {})
    assert list(view.nethvoice) == ["nethvoice1"]


@pytest.mark.parametrize("env, protocol, expected", [
    (NV, "udp", 20040), (NV, "tcp", 20024), ({"ASTERISK_SIP_PORT": "20024"}, "udp", 20024), ({}, "udp", None),
    ({"ASTERISK_SIP_PORT": "junk"}, "tcp", None),
])
def test_target_port_follows_nethvoice_layout(env, protocol, expected):
    assert forwards.target_port(env, protocol) == expected


def test_select_instance():
    assert select_instance(NETHVOICE, None) == "nethvoice1"
    for instances, requested, error in [({}, None, "instance_no_nethvoice"),
                                        ({"nethvoice1": NV, "nethvoice2": NV}, None, "instance_required"),
                                        (NETHVOICE, "nethvoice9", "instance_not_found")]:
        with pytest.raises(Refused) as err:
            select_instance(instances, requested)
        assert agent_format(err.value.problems)[0]["error"] == error


@pytest.mark.parametrize("request_, errors", [
    ({"source": "192.0.2.10"}, []),
    ({"source": "2001:DB8::10"}, []),
    ({}, ["source_required"]),
    ({"allow_any_source": True}, []),
    ({"source": "192.0.2.10", "allow_any_source": True}, ["allow_any_source_conflicts_with_source"]),
    ({"source": "192.0.2.10", "port": 5061}, ["port_sips_not_supported"]),
    ({"source": "192.0.2.10", "port": 6060}, ["port_reserved_by_proxy"]),
    ({"source": "192.0.2.10/24"}, ["source_host_bits_set"]),
    ({"source": "192.0.2.10", "family": "ipv6"}, ["source_wrong_family"]),
    ({"source": "mediant.example.org"}, ["source_format"]),
])
def test_request_checks(request_, errors):
    found, _ = check_forward_request(request_, "")
    assert [e["error"] for e in agent_format(found)] == errors


def test_batch_requests_carry_item_paths_and_instance():
    requests = forward_requests({"instance": "nethvoice1", "forwards": [{"source": "x"}, {"source": "y"}]})
    assert [p for _, p in requests] == ["forwards.0.", "forwards.1."]
    assert requests[1][0]["instance"] == "nethvoice1"
    with pytest.raises(Refused):
        forward_requests({"source": "192.0.2.10", "forwards": [{}]})


# --- which rule stands for a forward --------------------------------------------------

@pytest.mark.parametrize("recorded, world, standing, state", [
    (RULE, observed(RULE), RULE, "in_sync"),
    (RULE, observed(permanent=[RULE]), RULE, "missing_runtime"),
    (RULE, observed(runtime=[RULE]), RULE, "missing_permanent"),
    (RULE, observed(), RULE, "missing"),
    # NethVoice 1.8's update moved our rule from ASTERISK_SIP_PORT to the UDP port: it stands for it
    (OLD_RULE, observed(RULE), RULE, "in_sync"),
    # our old rule still there: stale; the new one beside it does not stand for it
    (OLD_RULE, observed(OLD_RULE, RULE), OLD_RULE, "stale_target"),
    # a rule at another port than Asterisk's current one never stands for ours
    (OLD_RULE, observed(FOREIGN_PORT), OLD_RULE, "missing"),
    (RULE, observed(FOREIGN_PORT), RULE, "missing"),
    # the moved rule must be in both configurations (NethVoice writes permanent, then reloads)
    (OLD_RULE, observed(runtime=[RULE]), OLD_RULE, "missing"),
])
def test_standing_rule_and_state(recorded, world, standing, state):
    e = entry(rule=recorded)
    desired = forwards.desired_rule(e, NETHVOICE)
    assert forwards.standing_rule(e, desired, world) == standing
    assert forwards.forward_state(e, desired, world) == state


# --- a new forward: created, or adopted as it is --------------------------------------

@pytest.mark.parametrize("world, before, expected", [
    (observed(), (False, False), [("add_rule", "runtime"), ("add_rule", "permanent"), ("flush_conntrack", None)]),
    (observed(RULE), (True, True), [("adopt_forward", None)]),
    (observed(runtime=[RULE]), (True, False), [("add_rule", "permanent")]),
    (observed(permanent=[RULE]), (False, True), [("add_rule", "runtime"), ("flush_conntrack", None)]),
    # a rule of someone else's for the same source and port is never touched
    (observed(FOREIGN_PORT), (False, False), [("add_rule", "runtime"), ("add_rule", "permanent"),
                                              ("flush_conntrack", None)]),
])
def test_plan_new_adopts_what_is_there(world, before, expected):
    new = entry(rule="")
    outcome = forwards.plan_new(new, forwards.desired_rule(new, NETHVOICE), world)
    assert ops(outcome.changes) == expected
    assert outcome.entry.rule == RULE and outcome.entry.before == Presence(*before)
    assert all(c.rule == RULE for c in outcome.changes if hasattr(c, "config"))


# --- repairs and conflicts ---------------------------------------------------------------

@pytest.mark.parametrize("world, expected, conflict", [
    (observed(RULE), [], None),
    # a firewalld reload or restart: repaired
    (observed(permanent=[RULE]), [("add_rule", "runtime"), ("flush_conntrack", None)], None),
    # removed by someone: a conflict, nothing changed
    (observed(), [], "forward_removed"),
    (observed(runtime=[RULE]), [], "forward_removed_permanent"),
])
def test_unattended_reconcile_repairs_only_the_platform(world, expected, conflict):
    outcome = forwards.plan_reconcile(entry(), forwards.desired_rule(entry(), NETHVOICE), world)
    assert ops(outcome.changes) == expected
    assert (outcome.conflict.kind if outcome.conflict else None) == conflict
    assert outcome.entry == entry()


def test_conflict_ways_out():
    desired = forwards.desired_rule(entry(), NETHVOICE)
    back = forwards.plan_reconcile(entry(), desired, observed(), choice="put_ours_back")
    assert ops(back.changes) == [("add_rule", "runtime"), ("add_rule", "permanent"), ("flush_conntrack", None)]
    assert back.conflict is None and back.entry == entry()
    theirs = forwards.plan_reconcile(entry(), desired, observed(runtime=[RULE]), choice="keep_theirs")
    assert ops(theirs.changes) == [("release_forward", None)] and theirs.entry is None
    # an explicit add-port-forward for the same forward re-makes a missing rule
    explicit = forwards.plan_reconcile(entry(), desired, observed(), explicit=True)
    assert ops(explicit.changes)[:2] == [("add_rule", "runtime"), ("add_rule", "permanent")]


def test_port_change_moves_our_rule_and_nothing_else():
    moved = {"nethvoice1": dict(NV, ASTERISK_SIP_UDP_PORT="20140")}
    outcome = forwards.plan_reconcile(entry(), forwards.desired_rule(entry(), moved), observed(RULE, FOREIGN_PORT))
    assert [(c.op, c.config, c.rule) for c in outcome.changes if hasattr(c, "config")] == [
        ("remove_rule", "runtime", RULE), ("remove_rule", "permanent", RULE),
        ("add_rule", "runtime", RULE.replace("20040", "20140")),
        ("add_rule", "permanent", RULE.replace("20040", "20140"))]
    assert outcome.entry.rule == RULE.replace("20040", "20140")


def test_a_rule_nethvoice_moved_is_followed_in_the_record_only():
    outcome = forwards.plan_reconcile(entry(rule=OLD_RULE), forwards.desired_rule(entry(), NETHVOICE), observed(RULE))
    assert ops(outcome.changes) == [("follow_rule", None)] and outcome.entry.rule == RULE


def test_gone_instance_withdraws_only_created_rules_and_returns():
    outcome = forwards.plan_reconcile(entry(), None, observed(RULE))
    assert ops(outcome.changes) == [("remove_rule", "runtime"), ("remove_rule", "permanent"), ("flush_conntrack", None)]
    assert outcome.entry.suspended
    adopted = forwards.plan_reconcile(entry(before=(True, True)), None, observed(RULE))
    assert ops(adopted.changes) == [] and adopted.entry.suspended
    back = forwards.plan_reconcile(outcome.entry, forwards.desired_rule(entry(), NETHVOICE), observed())
    assert ops(back.changes)[:2] == [("add_rule", "runtime"), ("add_rule", "permanent")]
    assert back.conflict is None and not back.entry.suspended


# --- removal ------------------------------------------------------------------------------

@pytest.mark.parametrize("e, world, removed, released", [
    (entry(), observed(RULE, FOREIGN_PORT), [("runtime", RULE), ("permanent", RULE)], False),
    (entry(before=(True, True)), observed(RULE), [], True),
    (entry(before=(True, False)), observed(RULE), [("permanent", RULE)], True),
    (entry(rule=OLD_RULE), observed(RULE), [("runtime", RULE), ("permanent", RULE)], False),
    (entry(rule=OLD_RULE), observed(FOREIGN_PORT), [], False),
])
def test_removal_withdraws_only_what_the_module_put(e, world, removed, released):
    changes = forwards.plan_removal(e, forwards.desired_rule(e, NETHVOICE), world)
    assert [(c.config, c.rule) for c in changes if c.op == "remove_rule"] == removed
    assert any(c.op == "release_forward" for c in changes) == released


def test_observed_after_is_what_reading_again_gives():
    world = observed(OLD_RULE)
    moved = {"nethvoice1": NV}
    outcome = forwards.plan_reconcile(entry(rule=OLD_RULE), forwards.desired_rule(entry(), moved), world)
    assert forwards.observed_after(world, outcome.changes) == observed(RULE) and world == observed(OLD_RULE)


def test_competing_rules_are_the_foreign_ones_for_the_same_packets():
    world = observed(RULE, FOREIGN_PORT, ForwardRule("ipv4", "udp", 5060, 20999, "192.0.2.11").to_rich_rule())
    assert forwards.competing_rules(entry(), world, {RULE}) == [FOREIGN_PORT]


def test_requests_become_entries_on_the_cluster_read():
    checked = checked_requests({"forwards": [{"source": "192.0.2.10"}, {"allow_any_source": True,
                                                                        "protocol": "tcp"}]})
    found = new_entries(checked, Record(), NETHVOICE, "public", "T")
    assert [(e.id, e.instance, e.created, owned) for e, owned in found] == [
        ("udp-ipv4-5060-192.0.2.10", "nethvoice1", "T", False), ("tcp-ipv4-5060-any", "nethvoice1", "T", False)]
    owned = new_entries(checked[:1], Record(forwards={entry().id: entry()}), NETHVOICE, "public", "T")
    assert owned == [(entry(), True)]
    with pytest.raises(Refused) as err:
        new_entries(checked, Record(), {"nethvoice1": {"ASTERISK_SIP_PORT": "x"}}, "public", "T")
    assert [e["error"] for e in agent_format(err.value.problems)] == ["forwards_no_sip_port"] * 2
