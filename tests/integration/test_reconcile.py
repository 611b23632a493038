"""Drift, NethVoice port changes, instance removal and module removal."""

import pytest
from nodetools import firewall_state, publish_event, rich_rules

pytestmark = pytest.mark.integration


def test_reconcile_re_adds_a_rule_removed_from_runtime(actions, sandbox, clean_forwards):
    rule = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["rule"]
    sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={rule}")
    assert actions.run("list-port-forwards")["forwards"][0]["state"] == "missing_runtime"
    planned = actions.run("reconcile-bypass", {"dry_run": True})
    assert [(c["op"], c.get("config")) for c in planned["plan"]] == [("add_rule", "runtime"),
                                                                      ("flush_conntrack", None)]
    assert rule not in rich_rules(sandbox)
    actions.run("reconcile-bypass")
    assert rule in rich_rules(sandbox) and rule in rich_rules(sandbox, permanent=True)
    assert actions.run("reconcile-bypass")["plan"] == []


def test_port_change_moves_the_forward_on_proxy_event(actions, sandbox, clean_forwards, nethvoice_env):
    old = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["rule"]
    nethvoice_env.hset("module/nethvoice1/environment", "ASTERISK_SIP_UDP_PORT", "20140")
    listed = actions.run("list-port-forwards")["forwards"][0]
    assert (listed["state"], listed["target_port"]) == ("stale_target", 20140)
    assert publish_event(sandbox, "module/nethvoice-proxy1", "nethvoice-proxy-settings-changed",
                         {"reason": "configure-module"}) == 0
    new = old.replace('to-port="20040"', 'to-port="20140"')
    for config in (rich_rules(sandbox), rich_rules(sandbox, permanent=True)):
        assert new in config and old not in config
    listed = actions.run("list-port-forwards")["forwards"][0]
    assert (listed["state"], listed["rule"]) == ("in_sync", new)
    audit = actions.state_files()["audit.jsonl"].decode().splitlines()[-1]
    assert "event/nethvoice-proxy-settings-changed" in audit


def test_removed_instance_withdraws_rules_and_its_return_restores_them(actions, sandbox, clean_forwards,
                                                                        nethvoice_env):
    rule = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["rule"]
    nethvoice_env.hdel("cluster/module_node", "nethvoice1")
    assert publish_event(sandbox, "cluster", "module-removed", {"module": "nethvoice1", "node": 1}) == 0
    assert firewall_state(sandbox) == clean_forwards
    assert actions.run("list-port-forwards")["forwards"][0]["state"] == "instance_missing"
    nethvoice_env.hset("cluster/module_node", "nethvoice1", "1")
    assert publish_event(sandbox, "cluster", "module-added", {"module": "nethvoice1", "node": 1}) == 0
    assert rule in rich_rules(sandbox) and rule in rich_rules(sandbox, permanent=True)


def test_destroy_module_removes_our_rules_and_nothing_else(actions, sandbox, clean_forwards, reinstalled):
    foreign = 'rule family="ipv4" source address="198.51.100.9" forward-port port="5060" protocol="udp" to-port="7000"'
    sandbox.firewalld.firewall_cmd(f"--add-rich-rule={foreign}")
    sandbox.firewalld.firewall_cmd("--permanent", f"--add-rich-rule={foreign}")
    try:
        actions.run("add-port-forward", {"forwards": [{"source": "192.0.2.10"}, {"source": "2001:db8::10"},
                                                      {"source": "192.0.2.10", "protocol": "tcp"}]})
        out = actions.run("destroy-module")
        assert len(out["removed"]) == 3
        after = firewall_state(sandbox)
        assert after["runtime"] == clean_forwards["runtime"] | {foreign}
        assert after["permanent"] == clean_forwards["permanent"] | {foreign}
        assert actions.run("list-port-forwards")["forwards"] == []
        assert foreign in actions.run("list-port-forwards")["other_rules"]
    finally:
        sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={foreign}")
        sandbox.firewalld.firewall_cmd("--permanent", f"--remove-rich-rule={foreign}")
