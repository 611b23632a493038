"""diagnose-sip on the sandbox's real Kamailio, with real SIP (SIPp) from the remote
namespace: each cause is named, and its fix, applied through its action, makes the same
call work on a second diagnosis. The proxy's trace switch is given back as it was."""

import signal
import socket
from pathlib import Path

import pytest
from nethvoice_bypass import kamailio
from ns8dev.procs import wait_for

pytestmark = pytest.mark.integration

SIPP = Path(__file__).resolve().parents[2] / "dev/sipp"
MEDIANT, OTHER, NODE = "192.0.2.10", "192.0.2.11", "192.0.2.1"
UNKNOWN = "pbx.unknown.example"


def sipp(sandbox, tmp_path, scenario, ruri, source=MEDIANT):
    return sandbox.remote("sipp", "-sf", SIPP / scenario, "-key", "ruri", ruri, "-m", "1", "-i", source,
                          "-nostdin", "-timeout", "20s", "-timeout_error", f"{NODE}:5060", check=False,
                          cwd=tmp_path, timeout=40).returncode


def trace(sandbox, action="check"):
    return sandbox.in_netns("node", kamailio.siptrace, 5060, action)


def diagnose(actions, sandbox, send, duration=7, **data):
    """A diagnosis whose window sees what send() sends: its output."""
    running = actions.start("diagnose-sip", {"duration": duration, **data})
    wait_for(lambda: trace(sandbox), 20, "the diagnosis to listen")
    send()
    result = running.result(timeout=duration + 60)
    assert result.exit_code == 0, result.error
    return result.decoded_output


def problem(out, cause, source=MEDIANT):
    found = [p for p in out["problems"] if p["cause"] == cause and p["source"] == source]
    assert found, out["problems"]
    return found[0]


def apply(actions, fix):
    preview = actions.run(fix["action"], dict(fix["data"], dry_run=True))
    assert preview["plan"]
    return actions.run(fix["action"], fix["data"])


@pytest.fixture
def no_aliases(actions):
    yield
    actions.run("configure-bypass", {"domain_aliases": []})


def test_an_unknown_domain_is_named_and_its_alias_makes_the_call_work(actions, sandbox, tmp_path, no_aliases):
    ruri = f"sip:0510000099@{UNKNOWN}"
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "invite-silence.xml", ruri))
    assert out["mirror"]["state"] == "ours" and not trace(sandbox)  # switched off again
    found = problem(out, "unknown_domain")
    assert found["example"]["outcome"] == "dropped" and found["example"]["user"] == "05****99"
    assert "0510000099" not in str(out)  # only derived fields, the user part masked
    fix = found["fixes"][0]
    assert fix["action"] == "configure-bypass" and UNKNOWN in fix["data"]["domain_aliases"]
    apply(actions, fix)
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "invite.xml", ruri))
    assert [(e["outcome"], e["code"]) for e in out["exchanges"] if e["method"] == "INVITE"] == [
        ("relayed_answered", 200)]
    assert not [p for p in out["problems"] if p["source"] == MEDIANT]


def test_a_device_the_proxy_cannot_serve_gets_a_forward(actions, sandbox, tmp_path, clean_forwards):
    ruri = f"sip:0666@{NODE}"
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "rejected-404.xml", ruri))
    found = problem(out, "no_route")
    assert [f["action"] for f in found["fixes"]] == ["add-port-forward"]
    apply(actions, found["fixes"][0])
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "invite.xml", ruri))
    [seen] = [s for s in out["sources"] if s["source"] == MEDIANT]
    assert seen["forwarded"] > 0 and not [e for e in out["exchanges"] if e["source"].startswith(MEDIANT)]


def test_a_provider_that_moved_gets_its_forward_moved(actions, sandbox, tmp_path, clean_forwards):
    old = actions.run("add-port-forward", {"source": OTHER, "description": "provider"})["forward"]["id"]
    ruri = f"sip:0666@{NODE}"
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "rejected-404.xml", ruri))
    found = problem(out, "provider_moved")
    assert [(f["action"], f["data"].get("source") or f["data"].get("id")) for f in found["fixes"]] == [
        ("add-port-forward", MEDIANT), ("remove-port-forward", old)]
    for fix in found["fixes"]:
        apply(actions, fix)
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "invite.xml", ruri))
    assert [s["forwarded"] > 0 for s in out["sources"] if s["source"] == MEDIANT] == [True]


def test_asterisk_refusing_a_relayed_call_names_the_trunk_fix(actions, sandbox, tmp_path, no_aliases):
    actions.run("configure-bypass", {"domain_aliases": ["pbx.customer.example"]})
    ruri = "sip:0599000403@pbx.customer.example"
    out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "rejected-403.xml", ruri))
    found = problem(out, "asterisk_rejected")
    assert found["example"]["instance"] == "nethvoice1" and "403" in found["message"]
    assert "X-Forwarded-For" in found["fixes"][0]["why"]


def test_an_instance_that_does_not_answer_is_named(actions, sandbox, tmp_path, no_aliases):
    actions.run("configure-bypass", {"domain_aliases": ["pbx.customer.example"]})
    with sandbox.stopped("sip-asterisk"):
        out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "rejected-408.xml",
                                                      "sip:0510000001@pbx.customer.example"), duration=12)
    assert problem(out, "instance_down")["example"]["instance"] == "nethvoice1"


# --- the proxy's trace switch ----------------------------------------------------------------

def test_a_trace_already_on_is_only_listened_to_and_left_on(actions, sandbox, tmp_path):
    trace(sandbox, "on")
    try:
        out = diagnose(actions, sandbox, lambda: sipp(sandbox, tmp_path, "invite-silence.xml",
                                                      f"sip:1@{UNKNOWN}"), duration=5)
        assert out["mirror"]["state"] == "shared" and trace(sandbox)
    finally:
        trace(sandbox, "off")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "cancel"])
def test_a_trace_switched_on_is_off_again_after_a_kill_or_a_cancel(actions, sandbox, sig):
    running = actions.start("diagnose-sip", {"duration": 60})
    wait_for(lambda: trace(sandbox), 20, "the diagnosis to switch the trace on")
    running.signal(sig)
    running.result(timeout=30)
    wait_for(lambda: not trace(sandbox), 15, "the trace to be switched off again")
    assert not (sandbox.state_dir / "siptrace.json").exists()


def test_a_busy_mirror_port_switches_nothing(actions, sandbox):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 5065))  # a support session's sngrep
    try:
        running = actions.start("diagnose-sip", {"duration": 3})
        result = running.result(timeout=40)
        assert result.exit_code == 0, result.error
        out = result.decoded_output
        assert out["mirror"]["state"] == "busy" and "capture busy" in out["mirror"]["message"]
        assert not trace(sandbox)
    finally:
        holder.close()


@pytest.mark.parametrize("data, error", [
    ({"duration": 0}, "duration_number_gte"), ({"duration": 301}, "duration_number_lte"),
    ({"sources": ["not-an-address"]}, "sources_format"), ({"sources": ["127.0.0.1"]}, "sources_loopback"),
])
def test_bad_input_is_refused_with_the_agents_error_list(actions, data, error):
    errors = actions.run("diagnose-sip", data, expect=10)
    assert error in [e["error"] for e in errors]


def test_without_the_proxys_rpc_the_capture_still_answers(actions, sandbox, tmp_path):
    with sandbox.stopped("kamailio"):
        running = actions.start("diagnose-sip", {"duration": 4})
        result = running.result(timeout=40)
    assert result.exit_code == 0 and "Traceback" not in result.error
    out = result.decoded_output
    assert out["mirror"]["state"] == "unavailable" and out["capture"]["state"] == "ok"
    assert "mirror_unavailable" in [n["id"] for n in out["notes"]]


def test_the_self_check_switches_off_a_trace_a_dead_diagnosis_left_on(actions, sandbox):
    import json
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    marker = sandbox.state_dir / "siptrace.json"
    marker.write_text(json.dumps({"task": "gone", "pid": dead.pid, "port": 5060, "until": 0}))
    trace(sandbox, "on")
    try:
        assert "siptrace_left_on" in {c["id"] for c in actions.run("get-status")["bypass"]["checks"]}
        assert actions.run("self-check", {"repair": False}) and trace(sandbox)  # Check now: looks only
        repaired = actions.run("self-check", {"repair": True})["repaired"]
        assert "siptrace_off" in [c["op"] for c in repaired] and not trace(sandbox) and not marker.exists()
    finally:
        trace(sandbox, "off")
        marker.unlink(missing_ok=True)
