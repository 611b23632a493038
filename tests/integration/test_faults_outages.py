"""Outages of what the module reads and writes: get-status degrades (exit 0, every part
it could read, an error finding naming what is down), changes fail with one line and
change nothing, and destroy-module refuses rather than lose what it must undo."""

import json

import pytest
from nodetools import firewall_state

pytestmark = pytest.mark.integration

MEDIANT = "192.0.2.10"


def findings(status, severity="error"):
    return {c["id"]: c for c in status["bypass"]["checks"] if c["severity"] == severity}


@pytest.fixture
def a_forward(actions, clean_forwards):
    return actions.run("add-port-forward", {"source": MEDIANT})["forward"]


@pytest.fixture
def firewalld_stopped(sandbox):
    sandbox.firewalld.stop_daemon()
    yield
    sandbox.firewalld.start_daemon()


def test_status_with_firewalld_stopped_shows_the_rest(actions, sandbox, a_forward, firewalld_stopped):
    status = actions.run("get-status")
    down = findings(status)["firewalld_unreachable"]
    assert "firewalld is not running" in down["message"] and "systemctl start firewalld" in down["remedy"]
    forward = status["bypass"]["forwards"][0]
    assert (forward["id"], forward["state"], forward["present"]) == (
        a_forward["id"], "unknown", {"runtime": None, "permanent": None})
    assert forward["target_port"] == a_forward["target_port"]  # the cluster was read
    assert [i["id"] for i in status["bypass"]["instances"]] == ["nethvoice1"]
    assert status["bypass"]["trunks"]["nethvoice1"] and status["bypass"]["nat"]["nethvoice1"]
    assert "forward_not_applied" not in findings(status)


def test_status_with_the_bus_unreachable(actions, sandbox, a_forward, monkeypatch):
    monkeypatch.setitem(actions.agent.env, "DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    status = actions.run("get-status")
    assert "cannot reach firewalld on the system D-Bus" in findings(status)["firewalld_unreachable"]["message"]
    assert status["bypass"]["forwards"][0]["state"] == "unknown"


def test_destroy_refuses_while_firewalld_is_down_and_keeps_the_record(actions, sandbox, a_forward):
    before = actions.state_files()
    sandbox.firewalld.stop_daemon()
    try:
        result = actions.agent.run("destroy-module", {"module_id": "nethvoice-bypass1", "preserve_data": False})
        assert result.exit_code == 1
        last = result.error.strip().splitlines()[-1]
        assert "the module stays installed" in last and "firewalld is not running" in last
        assert "remove-module --force nethvoice-bypass1" in last
        assert actions.state_files() == before
    finally:
        sandbox.firewalld.start_daemon()
    # the rule is still there and still ours: the next removal withdraws it
    assert a_forward["rule"] in firewall_state(sandbox)["permanent"]
    assert actions.run("list-port-forwards")["forwards"][0]["state"] == "in_sync"


def test_status_and_changes_with_redis_stopped(actions, sandbox, a_forward):
    with sandbox.stopped("redis-replica"):
        status = actions.run("get-status")
        assert "cannot read the cluster Redis" in findings(status)["redis_unreachable"]["message"]
        forward = status["bypass"]["forwards"][0]
        assert (forward["state"], forward["present"]) == ("unknown", {"runtime": True, "permanent": True})
        assert status["bypass"]["instances"] == [] and status["bypass"]["proxy"] is None
        before, rules = actions.state_files(), firewall_state(sandbox)
        result = actions.agent.run("add-port-forward", {"source": "192.0.2.11"})
        assert result.exit_code == 1
        assert result.error.strip().splitlines()[-1].startswith("<3>cannot read the cluster Redis")
        assert actions.state_files() == before and firewall_state(sandbox) == rules


def test_status_with_a_nethvoice_database_that_hangs(actions, sandbox, a_forward):
    with sandbox.frozen("mariadb"):
        status = actions.run("get-status")
    down = findings(status)["freepbx_unreachable"]
    assert down["subject"] == "nethvoice1" and "did not answer within 5 s" in down["message"]
    assert status["bypass"]["forwards"][0]["state"] == "in_sync"
    assert "nethvoice1" not in status["bypass"]["trunks"]


def test_status_reads_a_torn_and_a_garbage_audit_line(actions, sandbox, a_forward):
    audit = sandbox.state_dir / "audit.jsonl"
    with open(audit, "a") as f:
        f.write("garbage that is not JSON\n" + json.dumps({"action": "remove-port-forward", "time": "x"})[:30])
    records = actions.run("get-status")["bypass"]["audit"]
    assert records[-1]["action"] == "add-port-forward"
    actions.run("remove-port-forward", {"id": a_forward["id"]})
    assert [r["action"] for r in actions.run("get-status")["bypass"]["audit"][-2:]] == [
        "add-port-forward", "remove-port-forward"]


def test_input_is_refused_for_what_it_is_before_anything_is_read(actions, sandbox, monkeypatch):
    """A malformed domain alias is the answer even while Redis and the cluster API are down."""
    monkeypatch.setitem(actions.agent.env, "NETHVOICE_BYPASS_API_ENDPOINT", "http://127.0.0.1:9")
    with sandbox.stopped("redis-replica"):
        refused = actions.run("configure-bypass", {"domain_aliases": ["not a domain!", "pbx.example.org",
                                                                      "PBX.example.org"]}, expect=10)
        assert [(e["field"], e["error"]) for e in refused] == [
            ("domain_aliases.0", "domain_aliases_invalid_character"), ("domain_aliases.2", "domain_aliases_duplicate")]
        refused = actions.run("add-port-forward", {"source": "192.0.2.10/24"}, expect=10)
        assert [e["error"] for e in refused] == ["source_host_bits_set"]
