"""Port forwards on the sandbox node's real firewalld, with real SIP traffic."""

import json

import pytest
from nodetools import firewall_state, probe_from_remote, rich_rules

pytestmark = pytest.mark.integration

PROXY = "NethServer 8 nethvoice-proxy1"
ASTERISK = "Asterisk PBX"


def our_rule(protocol, family, source, to_port):
    src = f' source address="{source}"' if source else ""
    return (f'rule priority="-10" family="{family}"{src} forward-port port="5060" '
            f'protocol="{protocol}" to-port="{to_port}"')


@pytest.mark.parametrize("protocol, family, source", [
    ("udp", "ipv4", "192.0.2.10"),
    ("tcp", "ipv4", "192.0.2.10"),
    ("udp", "ipv6", "2001:db8::10"),
    ("tcp", "ipv6", "2001:db8::/64"),
    ("udp", "ipv4", None),
    ("tcp", "ipv6", None),
])
def test_add_list_remove(actions, sandbox, clean_forwards, protocol, family, source):
    to_port = sandbox.ports["asterisk_sip_udp" if protocol == "udp" else "asterisk_sip_tcp"]
    request = {"protocol": protocol, "family": family}
    request.update({"source": source} if source else {"allow_any_source": True})
    out = actions.run("add-port-forward", request)
    rule = our_rule(protocol, family, source, to_port)
    assert out["forward"]["rule"] == rule
    assert out["forward"]["target_port"] == to_port
    assert out["forward"]["state"] == "in_sync"
    assert out["changed"] and not out["dry_run"]
    assert rule in rich_rules(sandbox) and rule in rich_rules(sandbox, permanent=True)
    if source is None:
        assert "captures_every_source" in [w["id"] for w in out["warnings"]]
    listed = actions.run("list-port-forwards")
    assert [(f["id"], f["state"]) for f in listed["forwards"]] == [(out["forward"]["id"], "in_sync")]
    removed = actions.run("remove-port-forward", {"id": out["forward"]["id"]})
    assert removed["removed"] == [out["forward"]["id"]]
    assert firewall_state(sandbox) == clean_forwards
    assert actions.run("list-port-forwards")["forwards"] == []


def test_dry_run_plans_and_changes_nothing(actions, sandbox, clean_forwards):
    before = actions.state_files()
    out = actions.run("add-port-forward", {"source": "192.0.2.10", "dry_run": True})
    assert out["dry_run"] and out["changed"]
    assert [(c["op"], c.get("config")) for c in out["plan"]] == [
        ("add_rule", "runtime"), ("add_rule", "permanent"), ("flush_conntrack", None)]
    assert out["forward"]["state"] == "planned"
    assert firewall_state(sandbox) == clean_forwards
    assert actions.state_files() == before


def test_repeated_add_is_one_rule_and_one_audit_record(actions, sandbox, clean_forwards):
    first = actions.run("add-port-forward", {"source": "192.0.2.10", "description": "Mediant"})
    audit = actions.state_files()["audit.jsonl"]
    again = actions.run("add-port-forward", {"source": "192.0.2.10", "description": "Mediant"})
    assert again["plan"] == [] and not again["changed"]
    assert again["forward"]["id"] == first["forward"]["id"]
    assert actions.state_files()["audit.jsonl"] == audit
    ours = [r for r in rich_rules(sandbox) if 'priority="-10"' in r]
    assert ours == [first["forward"]["rule"]]
    record = json.loads(audit.decode().splitlines()[-1])
    assert record["action"] == "add-port-forward" and record["user"] == "test"
    path = "forwards/" + first["forward"]["id"]
    assert list(record["after"]) == [path] and record["before"] == {path: None}  # only what changed


def test_batch_in_one_task(actions, sandbox, clean_forwards):
    out = actions.run("add-port-forward", {"forwards": [
        {"source": f"198.51.100.{i}", "protocol": proto} for i in range(1, 6) for proto in ("udp", "tcp")]})
    assert len(out["forwards"]) == 10 and "forward" not in out
    assert sum('priority="-10"' in r for r in rich_rules(sandbox, permanent=True)) == 10


@pytest.mark.parametrize("data, error", [
    ({"source": "192.0.2.10/24"}, "source_host_bits_set"),
    ({"source": "192.0.2.10", "family": "ipv6"}, "source_wrong_family"),
    ({"source": "mediant.example.org"}, "source_format"),
    ({}, "source_required"),
    ({"source": "192.0.2.10", "port": 5061}, "port_sips_not_supported"),
    ({"source": "192.0.2.10", "port": 6060}, "port_reserved_by_proxy"),
    ({"source": "192.0.2.10", "port": 6061}, "port_reserved_by_proxy"),
    ({"source": "192.0.2.10", "protocol": "sctp"}, "protocol_enum"),
    ({"source": "192.0.2.10", "port": 70000}, "port_number_lte"),
    ({"source": "192.0.2.10", "bogus": 1}, "(root)_additional_property_not_allowed"),
    ({"source": "192.0.2.10", "instance": "nethvoice9"}, "instance_not_found"),
    ({"forwards": [{"source": "192.0.2.10"}, {"source": "192.0.2.0/16"}]}, "forwards_host_bits_set"),
])
def test_refused_input_changes_nothing(actions, sandbox, clean_forwards, data, error):
    before = actions.state_files()
    errors = actions.run("add-port-forward", data, expect=10)
    assert error in [e["error"] for e in errors]
    assert all(set(e) == {"field", "parameter", "value", "error"} for e in errors)
    assert firewall_state(sandbox) == clean_forwards
    assert actions.state_files() == before


def test_remove_unknown_id_is_a_validation_error(actions, clean_forwards):
    errors = actions.run("remove-port-forward", {"id": "udp-ipv4-5060-192.0.2.99"}, expect=10)
    assert errors == [{"field": "id", "parameter": "id", "value": "udp-ipv4-5060-192.0.2.99",
                       "error": "id_not_found"}]


def test_rules_survive_reload_and_restart(actions, sandbox, clean_forwards):
    rule = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["rule"]
    sandbox.firewalld.firewall_cmd("--reload")
    assert rule in rich_rules(sandbox)
    sandbox.firewalld.stop_daemon()
    sandbox.firewalld.start_daemon()
    assert rule in rich_rules(sandbox)
    assert actions.run("list-port-forwards")["forwards"][0]["state"] == "in_sync"


def test_packet_path_switches_to_asterisk_and_back(actions, sandbox, clean_forwards):
    node = sandbox.addresses["node"]["ipv4"]
    before = probe_from_remote(sandbox, node, source_ip="192.0.2.10")
    # the Mediant is inside the proxy's LAN rule (priority 0, to 6060): the proxy answers
    assert before["outcome"] == "reply" and before["server"] == PROXY
    fid = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["id"]
    assert probe_from_remote(sandbox, node, source_ip="192.0.2.10")["server"] == ASTERISK
    # another device on the same LAN still reaches the proxy
    assert probe_from_remote(sandbox, node, source_ip="192.0.2.11")["server"] == PROXY
    actions.run("remove-port-forward", {"id": fid})
    assert probe_from_remote(sandbox, node, source_ip="192.0.2.10")["server"] == PROXY


@pytest.mark.parametrize("protocol, family", [("tcp", "ipv4"), ("udp", "ipv6")])
def test_packet_path_tcp_and_ipv6(actions, sandbox, clean_forwards, protocol, family):
    node, mediant = sandbox.addresses["node"][family], sandbox.addresses["mediant"][family]
    actions.run("add-port-forward", {"source": mediant, "protocol": protocol})
    answer = probe_from_remote(sandbox, node, protocol=protocol, source_ip=mediant)
    assert answer["outcome"] == "reply" and answer["server"] == ASTERISK


def test_a_flow_with_a_fixed_source_port_switches_both_ways(actions, sandbox, clean_forwards):
    """A Mediant always sends from 5060: its conntrack entry would pin the old path."""
    node = sandbox.addresses["node"]["ipv4"]

    def probe():
        return probe_from_remote(sandbox, node, source_ip="192.0.2.10", source_port=5060)["server"]

    assert probe() == PROXY
    out = actions.run("add-port-forward", {"source": "192.0.2.10"})
    assert out["conntrack"][0]["status"] == "flushed" and out["conntrack"][0]["deleted"] >= 1
    assert probe() == ASTERISK
    removed = actions.run("remove-port-forward", {"id": out["forward"]["id"]})
    assert removed["conntrack"][0]["deleted"] >= 1
    assert probe() == PROXY


def test_warns_about_the_proxy_lan_rule_it_overrides(actions, clean_forwards):
    out = actions.run("add-port-forward", {"source": "192.0.2.10"})
    warning = [w for w in out["warnings"] if w["id"] == "overlaps_proxy_lan_rule"]
    assert warning and "192.0.2.0/24" in warning[0]["message"]
    outside = actions.run("add-port-forward", {"source": "198.51.100.7"})
    assert outside["warnings"] == []


def test_any_source_warning_names_trunks_through_the_proxy(actions, clean_forwards):
    out = actions.run("add-port-forward", {"allow_any_source": True})
    message = [w for w in out["warnings"] if w["id"] == "captures_every_source"][0]["message"]
    assert "Telco-Main" in message and "192.0.2.0/24" in message


def test_firewalld_stopped_is_a_clear_error_and_nothing_recorded(actions, sandbox, clean_forwards):
    before = actions.state_files()
    sandbox.firewalld.stop_daemon()
    try:
        result = actions.agent.run("add-port-forward", {"source": "192.0.2.10"})
    finally:
        sandbox.firewalld.start_daemon()
    assert result.exit_code == 1
    assert "firewalld is not running" in result.error and "Traceback" not in result.error
    assert actions.state_files() == before
    assert firewall_state(sandbox) == clean_forwards
