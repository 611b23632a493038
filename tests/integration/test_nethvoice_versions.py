"""NethVoice 1.8 and later on the real firewalld: its firewall protection rules, and its
update from the single-port layout (1.7), which repoints UDP forwards by itself."""

import pytest
from nodetools import firewall_state, probe_from_remote, rich_rules
from ns8dev.sandbox import ASTERISK_SERVER, nethvoice_protection_rules

pytestmark = pytest.mark.integration

MEDIANT = "192.0.2.10"
OLD_PORT, NEW_PORT = 20024, 20040  # ASTERISK_SIP_PORT (1.7: UDP and TCP), ASTERISK_SIP_UDP_PORT (1.8)


@pytest.fixture
def nethvoice_1_7(sandbox, clean_forwards):
    """NethVoice before the update: one SIP port, no protection rules; 1.8 again after."""
    sandbox.set_nethvoice_layout("1.7")
    yield sandbox
    sandbox.set_nethvoice_layout("1.8")


def forward_rules(sandbox, to_port):
    """Our UDP forward for the Mediant to to_port, per configuration."""
    rule = (f'rule priority="-10" family="ipv4" source address="{MEDIANT}" forward-port port="5060" '
            f'protocol="udp" to-port="{to_port}"')
    return {config: rule in rules for config, rules in firewall_state(sandbox).items()}


def assert_in_sync(actions):
    status = actions.run("get-status")["bypass"]
    assert [(f["id"], f["state"]) for f in status["forwards"]] == [
        (f["id"], "in_sync") for f in status["forwards"]]
    assert status["orphaned_rules"] == []
    assert not [c for c in status["checks"] if c["severity"] == "error" or c["id"] == "forward_orphaned"]
    return status


def test_forwards_work_next_to_the_protection_rules(actions, sandbox, clean_forwards):
    protection = set(nethvoice_protection_rules(sandbox.environments["nethvoice1"]))
    assert protection <= rich_rules(sandbox) and protection <= rich_rules(sandbox, permanent=True)
    node = sandbox.addresses["node"]["ipv4"]
    # the protection is real: UDP straight to the TCP-only SIP port is dropped
    assert probe_from_remote(sandbox, node, port=OLD_PORT, source_ip=MEDIANT)["outcome"] == "timeout"
    actions.run("add-port-forward", {"forwards": [{"source": MEDIANT}, {"source": MEDIANT, "protocol": "tcp"}]})
    for protocol in ("udp", "tcp"):
        answer = probe_from_remote(sandbox, node, protocol=protocol, source_ip=MEDIANT)
        assert (answer["outcome"], answer["server"]) == ("reply", ASTERISK_SERVER)
    status = assert_in_sync(actions)
    listed = actions.run("list-port-forwards")
    assert not protection & set(listed["other_rules"]) and not protection & set(status["orphaned_rules"])


def test_the_update_rewrite_leaves_the_forward_in_sync(actions, sandbox, nethvoice_1_7):
    added = actions.run("add-port-forward", {"source": MEDIANT})["forward"]
    assert added["target_port"] == OLD_PORT
    node = sandbox.addresses["node"]["ipv4"]
    assert probe_from_remote(sandbox, node, source_ip=MEDIANT)["server"] == ASTERISK_SERVER
    log = sandbox.update_nethvoice()
    assert f"-> {NEW_PORT}/udp" in log
    assert forward_rules(sandbox, NEW_PORT) == {"runtime": True, "permanent": True}
    assert forward_rules(sandbox, OLD_PORT) == {"runtime": False, "permanent": False}
    status = assert_in_sync(actions)
    assert status["forwards"][0]["rule"].endswith(f'to-port="{NEW_PORT}"')
    before = firewall_state(sandbox)
    reconciled = actions.run("reconcile-bypass")
    # the record follows the rule NethVoice moved; no rule changes
    assert [c["op"] for c in reconciled["plan"]] == ["follow_rule"] and reconciled["changed"] is False
    assert firewall_state(sandbox) == before
    assert actions.run("list-port-forwards")["forwards"][0]["rule"].endswith(f'to-port="{NEW_PORT}"')
    assert probe_from_remote(sandbox, node, source_ip=MEDIANT)["server"] == ASTERISK_SERVER


def test_remove_withdraws_the_rule_the_update_rewrote(actions, sandbox, nethvoice_1_7):
    fid = actions.run("add-port-forward", {"source": MEDIANT})["forward"]["id"]
    sandbox.update_nethvoice()
    removed = actions.run("remove-port-forward", {"id": fid})
    assert {(c["config"], c["rule"].rsplit(" ", 1)[-1]) for c in removed["plan"] if c["op"] == "remove_rule"} == {
        ("runtime", f'to-port="{NEW_PORT}"'), ("permanent", f'to-port="{NEW_PORT}"')}
    assert forward_rules(sandbox, NEW_PORT) == {"runtime": False, "permanent": False}
    assert actions.run("get-status")["bypass"]["orphaned_rules"] == []


def test_reconcile_first_then_the_rewrite_finds_nothing(actions, sandbox, nethvoice_1_7, nethvoice_env):
    actions.run("add-port-forward", {"source": MEDIANT})
    # the new port reached the cluster before any rewrite (e.g. a core without list-rich-rules)
    nethvoice_env.hset("module/nethvoice1/environment", "ASTERISK_SIP_UDP_PORT", str(NEW_PORT))
    moved = actions.run("reconcile-bypass")
    assert [c["op"] for c in moved["plan"]][:4] == ["remove_rule", "remove_rule", "add_rule", "add_rule"]
    assert forward_rules(sandbox, NEW_PORT) == {"runtime": True, "permanent": True}
    log = sandbox.update_nethvoice()
    assert "repointing" not in log
    assert forward_rules(sandbox, NEW_PORT) == {"runtime": True, "permanent": True}
    assert_in_sync(actions)
    assert actions.run("reconcile-bypass")["plan"] == []
