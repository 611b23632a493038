"""get-status and verify-bypass on the sandbox node."""

import pytest
from nodetools import probe_from_remote

pytestmark = pytest.mark.integration


def check_ids(status):
    return {c["id"] for c in status["bypass"]["checks"]}


def test_get_status_keeps_the_core_fields(actions, clean_forwards):
    status = actions.run("get-status")
    for key in ("instance", "ui_name", "node", "node_ui_name", "services", "images", "volumes"):
        assert key in status
    assert status["instance"] == "nethvoice-bypass1" and status["node"] == "1"
    bypass = status["bypass"]
    assert bypass["instances"] == [{"id": "nethvoice1", "host": "voice.example.org",
                                    "sip_ports": {"udp": 20040, "tcp": 20024, "tls": 20025}}]
    assert bypass["proxy"]["behind_nat"] and bypass["proxy"]["local_networks"] == ["192.0.2.0/24"]
    assert len(bypass["proxy"]["rules"]) == 3
    assert [t["name"] for t in bypass["trunks"]["nethvoice1"]] == ["Telco-Main", "Custom-Voip", "Mediant-SBC"]
    assert bypass["checks"] == []  # nothing configured, nothing to report


def test_get_status_refuses_input_like_the_core(actions):
    errors = actions.run("get-status", {}, expect=10)
    assert errors[0]["error"] == "(root)_invalid_type"


def test_forward_checks_both_ways(actions, sandbox, clean_forwards, nethvoice_env):
    actions.run("add-port-forward", {"source": "198.51.100.7"})
    assert not check_ids(actions.run("get-status")) & {"forward_captures_proxy_lan", "forward_stale_target",
                                                         "forward_without_source", "forward_not_applied"}
    actions.run("add-port-forward", {"source": "192.0.2.10", "protocol": "tcp"})
    assert "forward_captures_proxy_lan" in check_ids(actions.run("get-status"))
    actions.run("add-port-forward", {"allow_any_source": True})
    assert "forward_without_source" in check_ids(actions.run("get-status"))
    nethvoice_env.hset("module/nethvoice1/environment", "ASTERISK_SIP_UDP_PORT", "20140")
    assert "forward_stale_target" in check_ids(actions.run("get-status"))
    rule = [f for f in actions.run("list-port-forwards")["forwards"] if f["protocol"] == "tcp"][0]["rule"]
    sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={rule}")
    assert "forward_not_applied" in check_ids(actions.run("get-status"))


def test_verify_bypass_names_who_answers(actions, clean_forwards):
    actions.run("add-port-forward", {"source": "192.0.2.10"})
    out = actions.run("verify-bypass", {})
    by_expect = {(p["protocol"], p["expect"]): p for p in out["probes"] if p["family"] == "ipv4"}
    assert by_expect[("udp", "asterisk")]["answered_by"] == "asterisk" and by_expect[("udp", "asterisk")]["ok"]
    assert by_expect[("udp", "asterisk")]["port"] == 20040
    assert by_expect[("tcp", "asterisk")]["port"] == 20024 and by_expect[("tcp", "asterisk")]["ok"]
    assert by_expect[("udp", "proxy")]["answered_by"] == "proxy"
    assert by_expect[("udp", "proxy")]["server"] == "NethServer 8 nethvoice-proxy1"
    assert out["nft"] == [{"forward": "udp-ipv4-5060-192.0.2.10", "present": True}]
    assert any("do not cross" in note for note in out["notes"])


def test_verify_bypass_refused_and_timeout(actions, sandbox, clean_forwards):
    out = actions.run("verify-bypass", {"targets": [{"address": "127.0.0.1", "port": 9, "protocol": "udp"},
                                                    {"address": "127.0.0.1", "port": 9, "protocol": "tcp"}]})
    extra = [p for p in out["probes"] if p["expect"] is None]
    assert [(p["protocol"], p["outcome"]) for p in extra] == [("udp", "refused"), ("tcp", "refused")]
    # a firewall that drops: from the remote side, a port dropped by the node's firewalld times out
    answer = probe_from_remote(sandbox, sandbox.addresses["node"]["ipv4"], port=20999, source_ip="192.0.2.11")
    assert answer["outcome"] == "timeout"


def test_verify_bypass_sees_a_missing_nft_rule(actions, sandbox, clean_forwards):
    rule = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["rule"]
    sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={rule}")
    out = actions.run("verify-bypass")
    assert out["nft"] == [{"forward": "udp-ipv4-5060-192.0.2.10", "present": False}]


def test_verify_bypass_refuses_bad_targets(actions):
    errors = actions.run("verify-bypass", {"targets": [{"address": "not-an-ip"}]}, expect=10)
    assert errors == [{"field": "targets.0.address", "parameter": "targets", "value": "not-an-ip",
                       "error": "targets_format"}]


def test_orphaned_rule_is_reported_until_adopted(actions, sandbox, clean_forwards):
    rule = ('rule priority="-10" family="ipv4" source address="198.51.100.9" forward-port port="5060" '
            'protocol="udp" to-port="20040"')
    for args in ((), ("--permanent",)):
        sandbox.firewalld.firewall_cmd(*args, f"--add-rich-rule={rule}")
    status = actions.run("get-status")["bypass"]
    assert status["orphaned_rules"] == [rule] and "forward_orphaned" in check_ids(actions.run("get-status"))
    adopted = actions.run("add-port-forward", {"source": "198.51.100.9"})
    assert [c["op"] for c in adopted["plan"]] == ["adopt_forward"] and adopted["forward"]["state"] == "in_sync"
    assert adopted["forward"]["origin"] == "adopted" and adopted["changed"] is False
    status = actions.run("get-status")["bypass"]
    assert status["orphaned_rules"] == [] and "forward_orphaned" not in check_ids(actions.run("get-status"))
    actions.run("remove-port-forward", {"id": adopted["forward"]["id"]})  # adopted: the rule stays
    for args in ((), ("--permanent",)):
        sandbox.firewalld.firewall_cmd(*args, f"--remove-rich-rule={rule}")
