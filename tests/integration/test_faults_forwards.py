"""Forwards under faults: cancelled (SIGTERM) and killed (SIGKILL) steps at every point
of their run, firewalld reloads between our calls, concurrent tasks. After any of them
one reconcile brings intent, firewalld's runtime and its permanent configuration back
into agreement, and no rule the module wrote is left without a record."""

import json
import signal
import threading
import time

import pytest
from nodetools import firewall_state

pytestmark = pytest.mark.integration

MEDIANT = "192.0.2.10"
# where a step can stop (nethvoice_bypass.forward_changes: commit, apply_changes)
POINTS = ["planned", "pending_saved", "after_permanent", "after_runtime", "before_commit", "committed"]
# a killed step has made its change only once it is recorded; a cancelled one finishes
# its change once every firewalld call is made
KEPT = {signal.SIGKILL: {"committed"}, signal.SIGTERM: {"before_commit", "committed"}}


def ours(rules):
    return {r for r in rules if r.startswith('rule priority="-10" ')}


def assert_consistent(actions, sandbox):
    """Intent, runtime and permanent agree; nothing of ours is unrecorded or pending."""
    intent_file = sandbox.state_dir / "bypass.json"
    assert not intent_file.exists() or json.loads(intent_file.read_text())["pending"] is None
    listed = actions.run("list-port-forwards")["forwards"]
    assert [f["state"] for f in listed] == ["in_sync"] * len(listed)
    state = firewall_state(sandbox)
    assert ours(state["runtime"]) == ours(state["permanent"]) == {f["rule"] for f in listed}
    assert actions.run("get-status")["bypass"]["orphaned_rules"] == []
    return {f["id"] for f in listed}


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_add_is_undone_or_kept_whole(actions, sandbox, clean_forwards, point):
    running = actions.start("add-port-forward", {"source": MEDIANT}, NETHVOICE_BYPASS_STOP_AT=point)
    running.wait_stopped()
    running.signal(signal.SIGKILL)
    assert running.result().exit_code == -1
    actions.run("reconcile-bypass")
    ids = assert_consistent(actions, sandbox)
    assert ids == ({"udp-ipv4-5060-192.0.2.10"} if point in KEPT[signal.SIGKILL] else set())


@pytest.mark.parametrize("point", POINTS)
def test_a_cancelled_add_finishes_or_undoes_its_change(actions, sandbox, clean_forwards, point):
    before = actions.state_files()["bypass.json"]
    running = actions.start("add-port-forward", {"source": MEDIANT}, NETHVOICE_BYPASS_STOP_AT=point)
    running.wait_stopped()
    running.signal(signal.SIGTERM)
    result = running.result()
    if point not in KEPT[signal.SIGTERM]:
        assert (result.exit_code, result.status) == (1, "aborted")
        assert result.error.strip().splitlines()[-1].startswith("<3>cancelled")
        assert "Traceback" not in result.error
        assert actions.state_files()["bypass.json"] == before and firewall_state(sandbox) == clean_forwards
    else:
        assert result.exit_code == 0, result.error
    ids = assert_consistent(actions, sandbox)  # without a reconcile
    assert ids == ({"udp-ipv4-5060-192.0.2.10"} if point in KEPT[signal.SIGTERM] else set())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "cancel"])
@pytest.mark.parametrize("point", POINTS)
def test_an_interrupted_remove_leaves_the_forward_whole_or_gone(actions, sandbox, clean_forwards, point, sig):
    fid = actions.run("add-port-forward", {"forwards": [{"source": MEDIANT}, {"source": MEDIANT, "protocol": "tcp"}]}
                      )["forwards"][0]["id"]
    running = actions.start("remove-port-forward", {"id": fid}, NETHVOICE_BYPASS_STOP_AT=point)
    running.wait_stopped()
    running.signal(sig)
    running.result()
    actions.run("reconcile-bypass")
    ids = assert_consistent(actions, sandbox)
    assert ids == ({"tcp-ipv4-5060-192.0.2.10"} if point in KEPT[sig] else {fid, "tcp-ipv4-5060-192.0.2.10"})


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "cancel"])
def test_interrupted_at_any_time_one_reconcile_brings_agreement(actions, sandbox, clean_forwards, sig):
    sources = [f"192.0.2.{20 + i}" for i in range(4)]
    for delay in (0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45):
        running = actions.start("add-port-forward", {"forwards": [{"source": s} for s in sources]})
        running.step_pid()
        time.sleep(delay)
        running.signal(sig)
        running.result()
        actions.run("reconcile-bypass")
        ids = assert_consistent(actions, sandbox)
        if ids:
            actions.run("remove-port-forward", {"ids": sorted(ids)})


def test_adds_while_firewalld_reloads_in_a_loop(actions, sandbox, clean_forwards):
    stop, reloads = threading.Event(), []

    def reload_loop():
        while not stop.is_set():
            reloads.append(sandbox.firewalld.firewall_cmd("--reload", check=False).returncode)

    loop = threading.Thread(target=reload_loop)
    loop.start()
    try:
        for i in range(8):
            actions.run("add-port-forward", {"source": f"192.0.2.{30 + i}"})
    finally:
        stop.set()
        loop.join()
    assert len(reloads) >= 3 and set(reloads) == {0}
    assert len(assert_consistent(actions, sandbox)) == 8  # no reconcile needed


def test_eight_concurrent_adds(actions, sandbox, clean_forwards):
    runs = [actions.start("add-port-forward", {"source": f"192.0.2.{40 + i}"}) for i in range(8)]
    assert [r.result().exit_code for r in runs] == [0] * 8
    assert len(assert_consistent(actions, sandbox)) == 8
    records = [json.loads(line) for line in (sandbox.state_dir / "audit.jsonl").read_text().splitlines()]
    assert sum(r["action"] == "add-port-forward" for r in records[-8:]) == 8


def test_a_flush_that_crashes_is_a_failed_change_undone(actions, sandbox, clean_forwards):
    """An error in the thread that flushes conntrack (here: a listing it cannot read) is
    a failed change: undone, reported in one line, nothing recorded."""
    wrapper = sandbox.root / "usr/local/bin/conntrack"  # what `conntrack` is on the node's PATH
    saved = wrapper.read_text()
    wrapper.write_text('#!/bin/sh\necho "udp      17 29 src=not-an-address dst=192.0.2.1 sport=5060 dport=5060"\n')
    files = actions.state_files()
    try:
        result = actions.agent.run("add-port-forward", {"source": MEDIANT})
    finally:
        wrapper.write_text(saved)
    assert result.exit_code == 1 and "Traceback" not in result.error
    assert "flushing the live connections failed" in result.error.strip().splitlines()[-1]
    assert firewall_state(sandbox) == clean_forwards and actions.state_files() == files
