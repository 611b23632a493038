"""configure-bypass under faults of NethVoice's side: a FreePBX database that fails in
the middle of a change or does not answer, a reload that fails after the commit, and
trunks that are already without the proxy when they are handed to the module."""

import subprocess
import time
from pathlib import Path

import pytest
from ns8dev import cluster
from test_configure_bypass import PROXY_VALUE, outbound_proxy, reloads, site_state

pytestmark = pytest.mark.integration

ALIAS = "faults.example.net"


@pytest.fixture
def clean_site(actions, sandbox):
    before = site_state(sandbox)
    routes = proxy_routes(actions, sandbox)
    yield before
    actions.run("configure-bypass", {"trunks": [], "nat": None, "domain_aliases": []})
    assert site_state(sandbox) == before and proxy_routes(actions, sandbox) == routes


def proxy_routes(actions, sandbox):
    """The domains the proxy stand-in routes."""
    return sorted(route["domain"] for route in sandbox.proxy_routes())


def managed(actions, trunk_name):
    trunks = actions.run("get-status")["bypass"]["trunks"]["nethvoice1"]
    return next(t for t in trunks if t["name"] == trunk_name)


def last_error(result):
    lines = result.error.strip().splitlines()
    assert "Traceback" not in result.error and "TimeoutExpired" not in result.error
    return lines[-1]


def test_a_trunk_already_without_the_proxy_becomes_managed(actions, sandbox, clean_site):
    sandbox.sql("UPDATE pjsip SET data='' WHERE id='1' AND keyword='outbound_proxy'")
    try:
        out = actions.run("configure-bypass", {"trunks": ["Telco-Main"]})
        assert [c["op"] for c in out["plan"]] == ["manage_trunk"] and out["changed"] is True
        assert out["needs_reload"] is False and out["reloaded"] is False
        assert managed(actions, "Telco-Main")["managed"] is True
        # NethVoice puts the proxy back (a freepbx restart): the module bypasses it again
        sandbox.sql(f"UPDATE pjsip SET data='{PROXY_VALUE}' WHERE id='1' AND keyword='outbound_proxy'")
        assert [c["op"] for c in actions.run("reconcile-bypass")["plan"]] == ["bypass_trunk"]
        assert outbound_proxy(sandbox, 1) == ""
        # un-bypassed, it gets back what it had when the module took it: no proxy
        actions.run("configure-bypass", {"trunks": []})
        assert outbound_proxy(sandbox, 1) == ""
    finally:
        sandbox.sql(f"UPDATE pjsip SET data='{PROXY_VALUE}' WHERE id='1' AND keyword='outbound_proxy'")



def test_a_managed_trunk_already_back_on_the_proxy_is_released_in_the_plan(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"trunks": ["Telco-Main"]})
    sandbox.sql(f"UPDATE pjsip SET data='{PROXY_VALUE}' WHERE id='1' AND keyword='outbound_proxy'")  # drift
    out = actions.run("configure-bypass", {"trunks": []})
    assert [c["op"] for c in out["plan"]] == ["release_trunk"] and out["needs_reload"] is False
    assert managed(actions, "Telco-Main")["managed"] is False
    assert outbound_proxy(sandbox, 1) == PROXY_VALUE
    assert actions.run("reconcile-bypass")["plan"] == []  # no longer bypassed again


def test_a_failed_reload_is_recorded_and_the_next_run_reloads(actions, sandbox, clean_site):
    fail = Path(sandbox.nethvoice["state_dir"]) / "fwconsole.fail"
    fail.write_text("Unable to connect to Asterisk. Is Asterisk running?\n")
    try:
        result = actions.agent.run("configure-bypass", {"trunks": ["Custom-Voip"]})
        assert result.exit_code == 1
        assert last_error(result) == (
            "<3>the changes were applied and recorded, but fwconsole reload of nethvoice1 failed: Unable to "
            "connect to Asterisk. Is Asterisk running?: the next configure-bypass or reconcile-bypass reloads")
        assert outbound_proxy(sandbox, 2) == ""
        assert managed(actions, "Custom-Voip")["managed"] is True
        status = actions.run("get-status")["bypass"]["checks"]
        assert "freepbx_reload_pending" in [c["id"] for c in status]
    finally:
        fail.unlink()
    count = len(reloads(sandbox))
    assert actions.run("reconcile-bypass")["reloaded"] == ["nethvoice1"]
    assert len(reloads(sandbox)) == count + 1
    assert "freepbx_reload_pending" not in [c["id"] for c in actions.run("get-status")["bypass"]["checks"]]


def test_a_database_failing_mid_change_changes_nothing(actions, sandbox, clean_site):
    before, files = site_state(sandbox), actions.state_files()
    sandbox.sql("CREATE TRIGGER fail_nat BEFORE INSERT ON kvstore_Sipsettings FOR EACH ROW "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'")
    try:
        result = actions.agent.run("configure-bypass", {
            "trunks": ["Custom-Voip"], "nat": {"external_address": "203.0.113.5", "local_networks": []},
            "domain_aliases": [ALIAS]})
    finally:
        sandbox.sql("DROP TRIGGER fail_nat")
    assert result.exit_code == 1
    message = last_error(result)
    assert "disk full" in message and "nothing was changed" in message
    assert site_state(sandbox) == before and actions.state_files() == files
    assert ALIAS not in proxy_routes(actions, sandbox)


def test_a_failed_change_points_a_moved_alias_back(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"domain_aliases": [ALIAS]})
    route = next(r for r in sandbox.proxy_routes() if r["domain"] == ALIAS)
    moved = "sip:198.51.100.7:5080"  # the route re-pointed behind the module's back
    sandbox.set_proxy_route(ALIAS, [dict(a, uri=moved) for a in route["address"]])
    sandbox.sql("CREATE TRIGGER fail_nat BEFORE INSERT ON kvstore_Sipsettings FOR EACH ROW "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'")
    try:
        result = actions.agent.run("configure-bypass", {
            "domain_aliases": [ALIAS], "nat": {"external_address": "203.0.113.5", "local_networks": []}})
    finally:
        sandbox.sql("DROP TRIGGER fail_nat")
    assert result.exit_code == 1 and "route changes undone" in last_error(result)
    assert [a["uri"] for r in sandbox.proxy_routes() if r["domain"] == ALIAS for a in r["address"]] == [moved]
    # re-pointed by someone else, the route is theirs: the module's undo leaves it; so does the test's
    actions.run("configure-bypass", {"domain_aliases": []})
    assert [a["uri"] for r in sandbox.proxy_routes() if r["domain"] == ALIAS for a in r["address"]] == [moved]
    cluster.proxy_standin().proxy_routes.remove_route(ALIAS, directory=sandbox.proxy["state_dir"])


def row_is_free(sandbox):
    try:
        sandbox.sql("SELECT id FROM pjsip WHERE id='2' FOR UPDATE NOWAIT")
    except RuntimeError:  # ER_LOCK_WAIT_TIMEOUT: another session holds it
        return False
    return True


def test_a_database_that_does_not_answer_is_a_one_line_failure(actions, sandbox, clean_site, monkeypatch):
    monkeypatch.setitem(actions.agent.env, "NETHVOICE_BYPASS_SQL_TIMEOUT", "2")
    files = actions.state_files()
    m = sandbox.mariadb
    locker = subprocess.Popen(["mysql", "--no-defaults", f"--socket={m['socket']}", "-uroot", f"-p{m['password']}",
                               "asterisk", "-e", "START TRANSACTION; SELECT * FROM pjsip WHERE id='2' FOR UPDATE; "
                               "SELECT SLEEP(30)"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while row_is_free(sandbox):
        assert locker.poll() is None, f"the locking session ended: {locker.stderr.read()}"
        assert time.monotonic() < deadline, "the row lock was not taken"
        time.sleep(0.05)
    try:
        result = actions.agent.run("configure-bypass", {"trunks": ["Custom-Voip"], "domain_aliases": [ALIAS]})
    finally:
        locker.kill()
        locker.wait()
    assert result.exit_code == 1
    assert "the FreePBX database of nethvoice1 did not answer within 2 s" in last_error(result)
    assert "INSERT" not in result.error
    assert outbound_proxy(sandbox, 2) == PROXY_VALUE and actions.state_files() == files
    assert ALIAS not in proxy_routes(actions, sandbox)



def test_reconcile_tries_every_part_and_fails_after(actions, sandbox, clean_site, clean_forwards):
    actions.run("add-port-forward", {"source": "192.0.2.10"})
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
    sandbox.sql(f"UPDATE pjsip SET data='{PROXY_VALUE}' WHERE id='2' AND keyword='outbound_proxy'")  # drifted
    sandbox.firewalld.stop_daemon()
    try:
        result = actions.agent.run("reconcile-bypass", {})
    finally:
        sandbox.firewalld.start_daemon()
    assert result.exit_code == 1
    out = result.decoded_output
    assert [(p["part"], p["instance"]) for p in out["problems"]] == [("forwards", "")]
    assert "firewalld is not running" in out["problems"][0]["message"]
    assert [c["op"] for c in out["plan"]] == ["bypass_trunk"] and outbound_proxy(sandbox, 2) == ""
    assert "reconcile-bypass tried every part; failed: forwards: firewalld is not running" in last_error(result)
