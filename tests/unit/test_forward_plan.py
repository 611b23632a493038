"""The pure planning core of port forwards."""

import pytest
from nethvoice_bypass import forward_plan as forwards
from nethvoice_bypass.cluster import ClusterView, image_name
from nethvoice_bypass.forward_requests import check_forward_request, forward_requests, select_instance
from nethvoice_bypass.model import ForwardRule, Refused
from nethvoice_bypass.step import validation_error

pytestmark = pytest.mark.unit


def agent_format(problems):
    """The core's problems as the step layer reports them."""
    return [validation_error(p["field"], p["reason"], p["value"]) for p in problems]

NV = {"IMAGE_URL": "ghcr.io/nethesis/nethvoice:1.8.0", "ASTERISK_SIP_PORT": "20024",
      "ASTERISK_SIP_UDP_PORT": "20040"}
PROXY = {"IMAGE_URL": "ghcr.io/nethesis/nethvoice-proxy:1.7.1", "LOCALNETWORKS": "192.0.2.0/24"}


def cluster(**modules):
    return ClusterView("1", modules, "nethvoice-proxy1", {})


def entry(**kw):
    base = {"id": "udp-ipv4-5060-192.0.2.10", "instance": "nethvoice1", "family": "ipv4", "protocol": "udp",
            "port": 5060, "source": "192.0.2.10", "zone": "public", "applied": True,
            "rule": ForwardRule("ipv4", "udp", 5060, 20040, "192.0.2.10").to_rich_rule()}
    return {**base, **kw}


def test_image_name_and_instances():
    assert image_name("ghcr.io/nethesis/nethvoice:1.8.0") == "nethvoice"
    assert image_name("ghcr.io/nethesis/nethvoice-proxy@sha256:abc") == "nethvoice-proxy"
    view = cluster(nethvoice1=NV, **{"nethvoice-proxy1": PROXY})
    assert list(view.nethvoice) == ["nethvoice1"]
    assert view.proxy is PROXY


@pytest.mark.parametrize("env, protocol, expected", [
    (NV, "udp", 20040),
    (NV, "tcp", 20024),
    ({"ASTERISK_SIP_PORT": "20024"}, "udp", 20024),
    ({}, "udp", None),
    ({"ASTERISK_SIP_PORT": "junk"}, "tcp", None),
])
def test_target_port_follows_nethvoice_layout(env, protocol, expected):
    assert forwards.target_port(env, protocol) == expected


def test_select_instance():
    assert select_instance({"nethvoice1": NV}, None) == "nethvoice1"
    for instances, requested, error in [
        ({}, None, "instance_no_nethvoice"),
        ({"nethvoice1": NV, "nethvoice2": NV}, None, "instance_required"),
        ({"nethvoice1": NV}, "nethvoice9", "instance_not_found"),
    ]:
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


def test_request_canonical_values_and_family_from_source():
    _, wanted = check_forward_request({"source": "2001:DB8::10/128"}, "")
    assert wanted == {"instance": None, "protocol": "udp", "family": "ipv6", "port": 5060,
                      "source": "2001:db8::10", "description": ""}


def test_batch_requests_carry_item_paths_and_instance():
    requests = forward_requests({"instance": "nethvoice1", "forwards": [{"source": "x"}, {"source": "y"}]})
    assert [p for _, p in requests] == ["forwards.0.", "forwards.1."]
    assert requests[1][0]["instance"] == "nethvoice1"
    found, _ = check_forward_request({"source": "192.0.2.1/24"}, "forwards.1.")
    assert found[0]["field"] == "forwards.1.source" and agent_format(found)[0]["error"] == "forwards_host_bits_set"
    with pytest.raises(Refused):
        forward_requests({"source": "192.0.2.10", "forwards": [{}]})


def test_plan_new_forward_adds_both_configs_then_flushes():
    e = entry(applied=False)
    desired = forwards.desired_rule(e, cluster(nethvoice1=NV))
    changes = forwards.plan_forward(e, desired, {"public": {"runtime": set(), "permanent": set()}})
    assert [(c["op"], c.get("config")) for c in changes] == [
        ("add_rule", "runtime"), ("add_rule", "permanent"), ("flush_conntrack", None)]
    assert changes[0]["rule"] == ('rule priority="-10" family="ipv4" source address="192.0.2.10" '
                                  'forward-port port="5060" protocol="udp" to-port="20040"')


def test_in_sync_forward_plans_nothing():
    e = entry()
    observed = {"public": {"runtime": {e["rule"]}, "permanent": {e["rule"]}}}
    desired = forwards.desired_rule(e, cluster(nethvoice1=NV))
    assert forwards.plan_forward(e, desired, observed) == []
    assert forwards.forward_state(e, desired, observed) == "in_sync"


def test_missing_runtime_is_re_added_without_touching_permanent():
    e = entry()
    observed = {"public": {"runtime": set(), "permanent": {e["rule"]}}}
    desired = forwards.desired_rule(e, cluster(nethvoice1=NV))
    assert forwards.forward_state(e, desired, observed) == "missing_runtime"
    changes = forwards.plan_forward(e, desired, observed)
    assert [(c["op"], c.get("config")) for c in changes] == [("add_rule", "runtime"), ("flush_conntrack", None)]


def test_port_change_moves_the_rule():
    e = entry()
    observed = {"public": {"runtime": {e["rule"]}, "permanent": {e["rule"]}}}
    moved = dict(NV, ASTERISK_SIP_UDP_PORT="20140")
    desired = forwards.desired_rule(e, cluster(nethvoice1=moved))
    assert forwards.forward_state(e, desired, observed) == "stale_target"
    changes = forwards.plan_forward(e, desired, observed)
    assert [(c["op"], c.get("config")) for c in changes][:4] == [
        ("remove_rule", "runtime"), ("remove_rule", "permanent"), ("add_rule", "runtime"), ("add_rule", "permanent")]
    assert 'to-port="20140"' in changes[2]["rule"] and "20140" in changes[0]["why"]


def test_gone_instance_withdraws_rules():
    e = entry()
    observed = {"public": {"runtime": {e["rule"]}, "permanent": set()}}
    assert forwards.desired_rule(e, cluster()) is None
    assert forwards.forward_state(e, None, observed) == "instance_missing"
    changes = forwards.plan_forward(e, None, observed)
    assert [(c["op"], c.get("config")) for c in changes] == [("remove_rule", "runtime"), ("flush_conntrack", None)]


def test_warnings_name_what_is_taken_from_the_proxy():
    lan = forwards.proxy_rules({
        'rule family="ipv4" source address="192.0.2.0/24" forward-port port="5060" protocol="udp" to-port="6060"',
        'rule family="ipv4" source address="192.0.2.0/24" forward-port port="5061" protocol="tcp" to-port="6061"',
        'rule family="ipv4" source address="192.0.2.50" forward-port port="5060" protocol="udp" to-port="7000"',
    })
    assert len(lan) == 2
    mediant = ForwardRule("ipv4", "udp", 5060, 20040, "192.0.2.10")
    ids = [w["id"] for w in forwards.forward_warnings(mediant, lan, PROXY, [])]
    assert ids == ["overlaps_proxy_lan_rule"]
    outside = ForwardRule("ipv4", "udp", 5060, 20040, "198.51.100.7")
    assert forwards.forward_warnings(outside, lan, PROXY, []) == []
    anything = ForwardRule("ipv4", "udp", 5060, 20040)
    found = forwards.forward_warnings(anything, lan, PROXY, [{"name": "Telco-A"}])
    assert [w["id"] for w in found] == ["overlaps_proxy_lan_rule", "captures_every_source"]
    assert "192.0.2.0/24" in found[1]["message"] and "Telco-A" in found[1]["message"]
    other = ForwardRule("ipv4", "udp", 5060, 20999, "192.0.2.0/24")
    assert [w["id"] for w in forwards.forward_warnings(mediant, [], PROXY, [], [other])] == ["overlaps_other_forward"]


# NethVoice 1.8's update repoints our UDP forward from ASTERISK_SIP_PORT to the new UDP port
OLD_RULE = ForwardRule("ipv4", "udp", 5060, 20024, "192.0.2.10").to_rich_rule()
NEW_RULE = ForwardRule("ipv4", "udp", 5060, 20040, "192.0.2.10").to_rich_rule()


def observed_with(*rules, runtime_only=()):
    return {"public": {"runtime": {*rules, *runtime_only}, "permanent": set(rules)}}


def test_a_forward_moved_by_someone_else_is_in_sync_with_its_current_rule():
    moved = entry(rule=OLD_RULE)
    desired = forwards.desired_rule(moved, cluster(nethvoice1=NV))
    observed = observed_with(NEW_RULE)
    assert forwards.current_rule(moved, desired, observed) == NEW_RULE
    assert forwards.forward_state(moved, desired, observed) == "in_sync"
    assert forwards.plan_forward(moved, desired, observed) == []


def test_a_forward_whose_old_rule_is_still_there_is_stale():
    stale = entry(rule=OLD_RULE)
    desired = forwards.desired_rule(stale, cluster(nethvoice1=NV))
    for observed in (observed_with(OLD_RULE), observed_with(OLD_RULE, NEW_RULE), observed_with()):
        assert forwards.forward_state(stale, desired, observed) == "stale_target"
    plan = forwards.plan_forward(stale, desired, observed_with(OLD_RULE, NEW_RULE))
    assert [(c["op"], c["config"], c["rule"]) for c in plan if c["op"] != "flush_conntrack"] == [
        ("remove_rule", "runtime", OLD_RULE), ("remove_rule", "permanent", OLD_RULE)]


def test_removal_withdraws_every_rule_that_stands_for_the_forward():
    other_source = ForwardRule("ipv4", "udp", 5060, 20024, "192.0.2.11").to_rich_rule()
    proxy_like = ForwardRule("ipv4", "udp", 5060, 20024, "192.0.2.10", priority=0).to_rich_rule()
    observed = observed_with(NEW_RULE, other_source, proxy_like, runtime_only=[OLD_RULE])
    moved = entry(rule=OLD_RULE)
    assert forwards.related_rules(moved, observed) == {OLD_RULE, NEW_RULE}
    plan = forwards.plan_forward(moved, None, observed, removing=True)
    assert [(c["config"], c["rule"]) for c in plan if c["op"] == "remove_rule"] == [
        ("runtime", OLD_RULE), ("runtime", NEW_RULE), ("permanent", NEW_RULE)]


def test_observed_after_is_what_reading_again_gives():
    observed = observed_with(OLD_RULE)
    changes = forwards.plan_forward(entry(rule=OLD_RULE), forwards.desired_rule(entry(), cluster(nethvoice1=NV)),
                                    observed)
    after = forwards.observed_after(observed, changes)
    assert after == observed_with(NEW_RULE) and observed == observed_with(OLD_RULE)


def test_requests_become_entries_on_the_cluster_read():
    from nethvoice_bypass.forward_requests import checked_requests, new_entries

    checked = checked_requests({"forwards": [{"source": "192.0.2.10"}, {"allow_any_source": True,
                                                                        "protocol": "tcp"}]})
    intent = {"forwards": {}}
    entries = new_entries(checked, intent, {"nethvoice1": NV}, "public", "T")
    assert [(e["id"], e["instance"], e["created"]) for e in entries] == [
        ("udp-ipv4-5060-192.0.2.10", "nethvoice1", "T"), ("tcp-ipv4-5060-any", "nethvoice1", "T")]
    with pytest.raises(Refused) as err:
        new_entries(checked, intent, {"nethvoice1": {"ASTERISK_SIP_PORT": "x"}}, "public", "T")
    assert [e["error"] for e in agent_format(err.value.problems)] == ["forwards_no_sip_port"] * 2


def test_plan_additions_warns_with_the_trunks_read_for_sourceless_forwards():
    view = cluster(nethvoice1=NV, **{"nethvoice-proxy1": PROXY})
    sourceless = entry(id="udp-ipv4-5060-any", source=None, applied=False, rule="")
    changes, warnings = forwards.plan_additions([sourceless], {"forwards": {}}, view, "public",
                                                {"public": {"runtime": set(), "permanent": set()}},
                                                {("nethvoice1", "udp"): [{"name": "Telco-Main"}]})
    assert [c["op"] for c in changes] == ["add_rule", "add_rule", "flush_conntrack"]
    assert sourceless["rule"] == ForwardRule("ipv4", "udp", 5060, 20040, None).to_rich_rule()
    assert any(w["id"] == "captures_every_source" and "Telco-Main" in w["message"] for w in warnings)


def test_plan_reconcile_follows_the_port_and_records_a_rule_moved_by_someone_else():
    moved, stale = entry(rule=OLD_RULE), entry(id="tcp-ipv4-5060-192.0.2.10", protocol="tcp",
                                               rule=ForwardRule("ipv4", "tcp", 5060, 20099, "192.0.2.10").to_rich_rule())
    intent = {"forwards": {moved["id"]: moved, stale["id"]: stale}}
    changes, updates = forwards.plan_reconcile(intent, cluster(nethvoice1=NV), observed_with(NEW_RULE, stale["rule"]))
    assert {c["forward"] for c in forwards.rule_changes(changes)} == {stale["id"]}
    assert updates == {moved["id"]: NEW_RULE,
                       stale["id"]: ForwardRule("ipv4", "tcp", 5060, 20024, "192.0.2.10").to_rich_rule()}
