# SPDX-License-Identifier: GPL-3.0-or-later
"""Every wait on another program is bounded: a hung conntrack, nft, D-Bus helper or
core get-status step costs its timeout and becomes a one-line failure (or a "failed"
result), never a hung action. The hung programs are stand-ins put first on PATH (or
named by the platform Python override): real processes that never answer."""

import os
import threading
import time

import pytest
from nethvoice_bypass import conntrack, corestatus, firewalld, nft
from nethvoice_bypass.errors import Failure

pytestmark = pytest.mark.unit

TIMEOUT = 0.5   # the timeout the tests give the adapters
MARGIN = 1.5    # on top, as an upper bound only: the test fails past it instead of hanging
SPEC = {"protocol": "udp", "port": 5060, "family": "ipv4", "source": "192.0.2.10"}
LISTING = ("udp      17 29 src=192.0.2.10 dst=192.0.2.1 sport=5060 dport=5060 src=192.0.2.1 "
           "dst=192.0.2.10 sport=20040 dport=5060 mark=0 use=1")


def within(seconds, fn, *args):
    """fn(*args), which must return (or raise) within seconds: (value, exception)."""
    done = {}

    def run():
        try:
            done["value"] = fn(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            done["error"] = err
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {seconds} s"
    return done.get("value"), done.get("error")


def tool(tmp_path, name, script):
    """A program `name` first on PATH; its calls are logged in tmp_path/calls, its PIDs in tmp_path/pids."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/calls\necho $$ >> {tmp_path}/pids\n{script}\n")
    path.chmod(0o755)
    return path


def calls(tmp_path):
    return (tmp_path / "calls").read_text().splitlines()


def running(pid):
    """Alive and not a zombie (an orphan's is reaped by init a moment after its death)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def assert_gone(tmp_path):
    """The hung programs were ended, not left behind."""
    for pid in (tmp_path / "pids").read_text().split():
        assert not running(pid), f"pid {pid} is still running"


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(conntrack, "TIMEOUT", TIMEOUT)
    monkeypatch.setattr(nft, "TIMEOUT", TIMEOUT)
    return tmp_path


# -- conntrack ------------------------------------------------------------------------------


def test_a_hung_conntrack_listing_fails_the_flush_once(on_path):
    tool(on_path, "conntrack", "exec sleep 30")
    specs = [SPEC, dict(SPEC, protocol="tcp"), dict(SPEC, family="ipv6", source="2001:db8::10")]
    results, error = within(TIMEOUT + MARGIN, conntrack.flush_many, specs)
    assert error is None
    assert [r["status"] for r in results] == ["failed"] * 3
    assert results[0]["message"] == (f"conntrack -L did not answer within {TIMEOUT:g} s: existing flows keep "
                                     "their old path until they expire")
    assert len(calls(on_path)) == 1  # the tool hung: nothing more was asked of it
    assert_gone(on_path)


def test_a_hung_conntrack_delete_is_a_failed_result(on_path):
    tool(on_path, "conntrack", f'case "$1" in -L) echo "{LISTING}";; -D) exec sleep 30;; esac')
    results, error = within(TIMEOUT + MARGIN, conntrack.flush_many, [SPEC, dict(SPEC, source="192.0.2.0/24")])
    assert error is None
    assert [r["status"] for r in results] == ["failed", "failed"]
    assert "conntrack -D did not answer within" in results[0]["message"]
    assert [c.split()[0] for c in calls(on_path)] == ["-L", "-D"]
    result, error = within(TIMEOUT + MARGIN, conntrack.flush, "udp", 5060, "ipv4", "192.0.2.10")
    assert error is None and result["status"] == "failed"
    assert_gone(on_path)


# -- nft -----------------------------------------------------------------------------------


def test_a_hung_nft_is_a_one_line_failure(on_path):
    tool(on_path, "nft", "exec sleep 30")
    _, error = within(TIMEOUT + MARGIN, nft.redirects, "public")
    assert isinstance(error, Failure) and str(error) == f"nft did not list firewalld's rules within {TIMEOUT:g} s"
    assert_gone(on_path)


def test_an_nft_that_answers_garbage_is_a_one_line_failure(on_path):
    tool(on_path, "nft", "echo 'table inet firewalld {'")
    _, error = within(TIMEOUT + MARGIN, nft.redirects, "public")
    assert isinstance(error, Failure) and "is not JSON" in str(error)


# -- the D-Bus helper (EL9) ---------------------------------------------------------------


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """The helper path of firewalld.py (as on EL9), its Python named by the test."""
    monkeypatch.setattr(firewalld.fwbus, "dbus", None)
    monkeypatch.setattr(firewalld, "HELPER_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(firewalld, "HELPER_TIMEOUT_PER_RULE", 0)
    firewalld._backend.cache_clear()

    def use(script):
        monkeypatch.setenv(firewalld.PLATFORM_PYTHON_ENV, str(tool(tmp_path, "python3", script)))
    yield use
    firewalld._backend.cache_clear()


def test_a_helper_that_never_starts_is_killed(helper, tmp_path):
    helper("exec sleep 30")
    _, error = within(TIMEOUT + MARGIN, firewalld.Firewalld)
    assert isinstance(error, Failure) and str(error) == f"firewalld did not answer within {TIMEOUT:g} s"
    assert_gone(tmp_path)


def test_a_helper_that_hangs_on_a_call_is_killed_and_not_asked_again(helper, tmp_path):
    helper("echo '{\"ready\": true}'\nexec sleep 30")
    fw, error = within(TIMEOUT + MARGIN, firewalld.Firewalld)
    assert error is None
    _, error = within(TIMEOUT + MARGIN, fw.default_zone)
    assert isinstance(error, Failure) and str(error) == f"firewalld did not answer within {TIMEOUT:g} s"
    assert_gone(tmp_path)
    started = time.monotonic()
    _, error = within(TIMEOUT + MARGIN, fw.rich_rules, "public", "runtime")
    assert str(error) == f"firewalld did not answer within {TIMEOUT:g} s" and time.monotonic() - started < TIMEOUT


def test_a_helper_that_stops_reading_does_not_block_the_write(helper, tmp_path):
    helper("echo '{\"ready\": true}'\nexec sleep 30")  # never reads its stdin: the pipe fills up
    fw, _ = within(TIMEOUT + MARGIN, firewalld.Firewalld)
    rules = [f'rule family="ipv4" source address="10.{i // 250}.{i % 250}.1" accept' for i in range(3000)]
    _, error = within(TIMEOUT + MARGIN, fw.change_permanent_rules, "public", rules, [])
    assert isinstance(error, Failure) and "did not answer within" in str(error)
    assert_gone(tmp_path)


def test_a_helper_that_answers_ends_when_closed(helper, tmp_path):
    helper("echo '{\"ready\": true}'\nread line\necho '{\"result\": \"public\"}'\nexec sleep 30")
    fw, _ = within(TIMEOUT + MARGIN, firewalld.Firewalld)
    assert within(TIMEOUT + MARGIN, fw.default_zone) == ("public", None)
    _, error = within(TIMEOUT + MARGIN, fw.backend.close)  # it ignores its closed stdin: killed
    assert error is None
    assert_gone(tmp_path)


# -- the core's get-status step ----------------------------------------------------------


def test_a_hung_core_status_step_and_its_children_are_ended(tmp_path, monkeypatch):
    step = tmp_path / "get-status" / "20read"
    step.parent.mkdir()
    # like the core's step: it runs other programs, which inherit its stdout
    step.write_text(f"#!/bin/sh\necho $$ >> {tmp_path}/pids\nsleep 30 &\necho $! >> {tmp_path}/pids\nwait\n")
    step.chmod(0o755)
    monkeypatch.setenv("AGENT_BASEACTIONS_DIR", str(tmp_path))
    monkeypatch.setattr(corestatus, "CORE_TIMEOUT", TIMEOUT)
    proc = corestatus.start()
    status, error = within(TIMEOUT + MARGIN, corestatus.finish, proc)
    assert error is None and status["services"] == []  # the fallback
    assert_gone(tmp_path)

