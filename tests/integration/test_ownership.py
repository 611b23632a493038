"""Safe on a live PBX, on the sandbox's real firewalld, MariaDB (FreePBX's tables) and
proxy: the module changes only what it made, gives back exactly what was there, and
reports a conflict instead of overwriting an admin's own edit; the unattended
self-check repairs only what the platform is known to undo."""

import json

import pytest
from nethvoice_bypass.store import Store
from nodetools import firewall_state, rich_rules
from ns8dev.procs import wait_for

pytestmark = pytest.mark.integration

PROXY_VALUE = "sip:10.5.4.1:5060;lr"
SBC = "sip:198.51.100.7:5060;lr"
ADMIN_PROXY = "sip:192.0.2.99:5060;lr"


def outbound_proxy(sandbox, trunk_id):
    rows = sandbox.sql(f"SELECT data FROM pjsip WHERE id='{trunk_id}' AND keyword='outbound_proxy'")
    return rows[0][0] if rows else None


def set_proxy(sandbox, trunk_id, value):
    if value is None:
        sandbox.sql(f"DELETE FROM pjsip WHERE id='{trunk_id}' AND keyword='outbound_proxy'")
    else:
        sandbox.sql(f"REPLACE INTO pjsip (id, keyword, data, flags) VALUES ('{trunk_id}', 'outbound_proxy', "
                    f"'{value}', 0)")


def kvstore(sandbox, key):
    rows = sandbox.sql(f"SELECT val FROM kvstore_Sipsettings WHERE `key`='{key}' AND id='noid'")
    return rows[0][0] if rows else None


def site_state(sandbox):
    return {"pjsip": sandbox.sql("SELECT id, keyword, data FROM pjsip ORDER BY id, keyword"),
            "trunks": sandbox.sql("SELECT trunkid, name FROM trunks ORDER BY trunkid"),
            "kvstore": sandbox.sql("SELECT `key`, val, type FROM kvstore_Sipsettings ORDER BY `key`")}


@pytest.fixture
def clean_site(actions, sandbox):
    """Starts and ends with the seeded FreePBX data and nothing owned by the module."""
    before = site_state(sandbox)
    yield before
    actions.run("configure-bypass", {"trunks": [], "nat": None, "domain_aliases": []})
    status = actions.run("get-status")["bypass"]
    assert status["conflicts"] == []


def routes(cluster_api):
    out = cluster_api.run_task("module/nethvoice-proxy1", "list-routes", {}, token=cluster_api.login())
    assert out["exit_code"] == 0, out["error"]
    return {r["domain"]: [a["uri"] for a in r["address"]] for r in out["output"]}


def proxy_task(cluster_api, action, data):
    out = cluster_api.run_task("module/nethvoice-proxy1", action, data, token=cluster_api.login())
    assert out["exit_code"] == 0, out["error"]


def api_answers(cluster_api):
    try:
        return cluster_api.call("POST", "/api/login", {})[0] > 0
    except OSError:
        return False


def conflicts(actions):
    return {c["key"]: c for c in actions.run("get-status")["bypass"]["conflicts"]}


def check_ids(actions):
    return {c["id"] for c in actions.run("get-status")["bypass"]["checks"]}


def self_check(actions, repair=True):
    return actions.run("self-check", {"repair": repair})


# --- trunks ------------------------------------------------------------------------------

def test_a_reused_trunk_id_is_left_alone_by_the_timer_and_reconcile(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"trunks": ["Mediant-SBC", "Custom-Voip"]})
    # trunk 3 deleted in NethVoice; the next trunk created gets the first free id: 3
    sandbox.sql("UPDATE trunks SET name='New-Provider', channelid='New-Provider' WHERE trunkid=3")
    set_proxy(sandbox, 3, PROXY_VALUE)
    try:
        assert "trunk_released" in check_ids(actions)
        repaired = self_check(actions)["repaired"]  # what the timer runs: it forgets trunk 3, changes nothing
        assert not [c for c in repaired if c.get("trunk") == "3"]
        assert outbound_proxy(sandbox, 3) == PROXY_VALUE
        record = json.loads((sandbox.state_dir / "bypass.json").read_text())
        assert list(record["bypass"]["nethvoice1"]["trunks"]) == ["2"]
        trail = Store(str(sandbox.state_dir)).audit_tail(5)  # readers skip lines that do not parse
        assert ("release_trunk", "3") in [(c["op"], c.get("trunk")) for c in trail[-1]["changes"]]
        out = actions.run("reconcile-bypass")
        assert "3" not in [c.get("trunk") for c in out["plan"]] and outbound_proxy(sandbox, 3) == PROXY_VALUE
    finally:
        sandbox.sql("UPDATE trunks SET name='Mediant-SBC', channelid='Mediant-SBC' WHERE trunkid=3")


def test_an_admins_outbound_proxy_is_a_conflict_with_both_ways_out(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
    set_proxy(sandbox, 2, ADMIN_PROXY)
    self_check(actions)  # the timer: never overwrites it
    assert outbound_proxy(sandbox, 2) == ADMIN_PROXY
    found = conflicts(actions)["trunk:nethvoice1:2"]
    assert (found["kind"], found["ours"], found["theirs"]) == ("trunk_proxy_changed", "", ADMIN_PROXY)
    assert "conflict_trunk_proxy_changed" in check_ids(actions)
    # an explicit configure-bypass for the same trunk does not overwrite it either
    again = actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
    assert again["plan"] == [] and [c["key"] for c in again["conflicts"]] == ["trunk:nethvoice1:2"]
    preview = actions.run("reconcile-bypass", dict(found["ways_out"]["put_ours_back"]["data"], dry_run=True))
    assert [(c["op"], c["trunk"], c["after"]) for c in preview["plan"]] == [("bypass_trunk", "2", "")]
    assert outbound_proxy(sandbox, 2) == ADMIN_PROXY
    actions.run("reconcile-bypass", found["ways_out"]["put_ours_back"]["data"])
    assert outbound_proxy(sandbox, 2) == "" and conflicts(actions) == {}
    set_proxy(sandbox, 2, ADMIN_PROXY)
    actions.run("reconcile-bypass", {"keep_theirs": ["trunk:nethvoice1:2"]})
    assert outbound_proxy(sandbox, 2) == ADMIN_PROXY and conflicts(actions) == {}
    assert not [t for t in actions.run("get-status")["bypass"]["trunks"]["nethvoice1"] if t["managed"]]
    set_proxy(sandbox, 2, PROXY_VALUE)


def test_nethvoice_putting_its_proxy_back_is_repaired_by_the_timer_not_by_check_now(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
    set_proxy(sandbox, 2, PROXY_VALUE)  # migration.php on a container restart
    assert self_check(actions, repair=False)["repaired"] == []
    assert outbound_proxy(sandbox, 2) == PROXY_VALUE
    assert [c["op"] for c in self_check(actions)["repaired"]] == ["bypass_trunk"]
    assert outbound_proxy(sandbox, 2) == ""


@pytest.mark.parametrize("before", [SBC, None, ""], ids=["provider-sbc", "no-row", "proxy-less"])
def test_unbypass_and_destroy_give_back_the_exact_before(actions, sandbox, clean_site, reinstalled, before):
    set_proxy(sandbox, 2, before)
    try:
        seeded = site_state(sandbox)
        actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
        assert outbound_proxy(sandbox, 2) == ("" if before is not None else None)
        actions.run("configure-bypass", {"trunks": []})
        assert site_state(sandbox) == seeded
        actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
        actions.run("destroy-module")
        assert site_state(sandbox) == seeded
    finally:
        set_proxy(sandbox, 2, PROXY_VALUE)


# --- NAT -----------------------------------------------------------------------------------

def test_nat_before_is_given_back_as_stored_and_an_admin_edit_is_kept(actions, sandbox, clean_site):
    dotted = '[{"net":"192.168.1.0","mask":"255.255.255.0"}]'  # as an older FreePBX stored it
    sandbox.sql("INSERT INTO kvstore_Sipsettings (`key`, val, type, id) VALUES "
                f"('localnets', '{dotted}', 'json-arr', 'noid')")
    try:
        actions.run("configure-bypass", {"nat": {"external_address": "203.0.113.5"}})
        assert kvstore(sandbox, "localnets") != dotted
        actions.run("configure-bypass", {"nat": None})
        assert kvstore(sandbox, "localnets") == dotted and kvstore(sandbox, "externip") == ""
        actions.run("configure-bypass", {"nat": {"external_address": "203.0.113.5"}})
        sandbox.sql("UPDATE kvstore_Sipsettings SET val='198.51.100.77' WHERE `key`='externip'")  # new public IP
        self_check(actions)
        assert kvstore(sandbox, "externip") == "198.51.100.77"
        assert "nat:nethvoice1:externip" in conflicts(actions)
        out = actions.run("configure-bypass", {"nat": None})
        assert [c["op"] for c in out["plan"]] == ["release_nat", "set_localnets"]
        assert kvstore(sandbox, "externip") == "198.51.100.77" and kvstore(sandbox, "localnets") == dotted
    finally:
        sandbox.sql("DELETE FROM kvstore_Sipsettings WHERE `key`='localnets'")
        sandbox.sql("UPDATE kvstore_Sipsettings SET val='' WHERE `key`='externip'")


# --- routes ---------------------------------------------------------------------------------

def test_a_repointed_route_is_a_conflict_and_survives_removal(actions, sandbox, cluster_api, clean_site):
    actions.run("configure-bypass", {"domain_aliases": ["pbx.customer.example"]})
    elsewhere = [{"uri": "sip:10.5.4.9:5060", "description": "another pbx"}]
    proxy_task(cluster_api, "add-route", {"domain": "pbx.customer.example", "address": elsewhere})
    self_check(actions)
    assert routes(cluster_api)["pbx.customer.example"] == ["sip:10.5.4.9:5060"]
    assert conflicts(actions)["alias:nethvoice1:pbx.customer.example"]["kind"] == "route_changed"
    out = actions.run("configure-bypass", {"domain_aliases": []})
    assert [c["op"] for c in out["plan"]] == ["release_route"]
    assert routes(cluster_api)["pbx.customer.example"] == ["sip:10.5.4.9:5060"]
    proxy_task(cluster_api, "remove-route", {"domain": "pbx.customer.example"})


def test_routes_of_a_removed_instance_are_withdrawn(actions, sandbox, cluster_api, clean_site, nethvoice_env):
    actions.run("configure-bypass", {"domain_aliases": ["pbx.customer.example", "other.customer.example"]})
    elsewhere = [{"uri": "sip:10.5.4.9:5060", "description": "another pbx"}]
    proxy_task(cluster_api, "add-route", {"domain": "other.customer.example", "address": elsewhere})
    nethvoice_env.hdel("cluster/module_node", "nethvoice1")  # remove-module nethvoice1
    nethvoice_env.delete("module/nethvoice1/environment")
    try:
        out = actions.run("reconcile-bypass")
        assert sorted((c["op"], c["domain"]) for c in out["plan"]) == [
            ("release_route", "other.customer.example"), ("remove_route", "pbx.customer.example")]
        assert "pbx.customer.example" not in routes(cluster_api)
        assert routes(cluster_api)["other.customer.example"] == ["sip:10.5.4.9:5060"]
    finally:
        proxy_task(cluster_api, "remove-route", {"domain": "other.customer.example"})


# --- firewalld ---------------------------------------------------------------------------------

MEDIANT = "192.0.2.10"


def hand_rule(to_port, source=MEDIANT):
    return (f'rule priority="-10" family="ipv4" source address="{source}" forward-port port="5060" '
            f'protocol="udp" to-port="{to_port}"')


def add_by_hand(sandbox, rule):
    for config in ([], ["--permanent"]):
        sandbox.firewalld.firewall_cmd(*config, f"--add-rich-rule={rule}")


def remove_by_hand(sandbox, rule):
    for config in ([], ["--permanent"]):
        sandbox.firewalld.firewall_cmd(*config, f"--remove-rich-rule={rule}")


def test_a_foreign_rule_for_the_same_source_survives_add_and_remove(actions, sandbox, clean_forwards):
    foreign = hand_rule(20999)
    add_by_hand(sandbox, foreign)
    try:
        out = actions.run("add-port-forward", {"source": MEDIANT})
        assert "competing_rule" in [w["id"] for w in out["warnings"]]
        assert "forward_competing_rule" in check_ids(actions)
        actions.run("remove-port-forward", {"id": out["forward"]["id"]})
        assert foreign in rich_rules(sandbox) and foreign in rich_rules(sandbox, permanent=True)
    finally:
        remove_by_hand(sandbox, foreign)


def test_an_identical_hand_made_rule_is_adopted_and_stays(actions, sandbox, clean_forwards, reinstalled):
    mine = hand_rule(20040)
    add_by_hand(sandbox, mine)
    try:
        out = actions.run("add-port-forward", {"source": MEDIANT})
        assert [c["op"] for c in out["plan"]] == ["adopt_forward"] and out["forward"]["origin"] == "adopted"
        removed = actions.run("remove-port-forward", {"id": out["forward"]["id"]})
        assert [c["op"] for c in removed["plan"]] == ["release_forward"]
        assert mine in rich_rules(sandbox) and mine in rich_rules(sandbox, permanent=True)
        actions.run("add-port-forward", {"source": MEDIANT})
        actions.run("destroy-module")
        assert mine in rich_rules(sandbox) and mine in rich_rules(sandbox, permanent=True)
    finally:
        remove_by_hand(sandbox, mine)


def test_a_rule_removed_by_the_admin_is_a_conflict_not_re_added_by_the_timer(actions, sandbox, clean_forwards):
    out = actions.run("add-port-forward", {"source": MEDIANT})
    remove_by_hand(sandbox, out["forward"]["rule"])
    self_check(actions)
    assert out["forward"]["rule"] not in rich_rules(sandbox, permanent=True)
    key = f"forward:{out['forward']['id']}"
    assert conflicts(actions)[key]["kind"] == "forward_removed"
    actions.run("reconcile-bypass", {"put_ours_back": [key]})
    assert out["forward"]["rule"] in rich_rules(sandbox, permanent=True) and conflicts(actions) == {}


@pytest.mark.parametrize("request_, error", [
    ({"port": 443, "protocol": "tcp", "allow_any_source": True}, "port_in_use"),
    ({"port": 22, "protocol": "tcp", "source": MEDIANT}, "port_in_use"),
    ({"port": 9311, "protocol": "tcp", "source": MEDIANT}, "port_in_use"),
    ({"port": 55820, "protocol": "udp", "source": MEDIANT}, "port_in_use"),
    ({"port": 20001, "protocol": "tcp", "source": MEDIANT}, "port_in_use"),  # NethVoice's APACHE_PORT
    ({"source": "0.0.0.0/0"}, "source_all_addresses"),
    ({"source": "127.0.0.1"}, "source_loopback"),
    ({"source": "224.0.0.1"}, "source_multicast"),
    ({"source": "::ffff:192.0.2.10"}, "source_ipv4_mapped"),
    ({"forwards": [{"source": MEDIANT}, {"source": "192.0.2.10/32"}]}, "forwards_duplicate"),
])
def test_refused_ports_and_sources_change_nothing(actions, sandbox, clean_forwards, request_, error):
    files = actions.state_files()
    errors = actions.run("add-port-forward", request_, expect=10)
    assert error in [e["error"] for e in errors]
    assert firewall_state(sandbox) == clean_forwards and actions.state_files() == files


# --- the record --------------------------------------------------------------------------------

def test_a_damaged_record_is_named_then_rebuilt_from_the_trail(actions, sandbox, clean_forwards):
    out = actions.run("add-port-forward", {"source": MEDIANT})
    record = sandbox.state_dir / "bypass.json"
    good = json.loads(record.read_text())
    record.write_text('{"version": 2, "forwards": {"x": 1}}')  # a hand edit gone wrong
    status = actions.run("get-status")["bypass"]
    assert "record_damaged" in {c["id"] for c in status["checks"]}
    assert [f["id"] for f in status["forwards"]] == [out["forward"]["id"]]  # rebuilt for the view
    actions.run("add-port-forward", {"source": "192.0.2.11"})
    aside = [p.name for p in sandbox.state_dir.glob("bypass.json.damaged-*")]
    assert len(aside) == 1 and "record_rebuilt" in check_ids(actions)
    rebuilt = json.loads(record.read_text())
    assert rebuilt["forwards"][out["forward"]["id"]] == good["forwards"][out["forward"]["id"]]
    (sandbox.state_dir / aside[0]).unlink()


def test_a_record_that_cannot_be_rebuilt_refuses_changes_in_one_line(actions, sandbox, clean_forwards):
    record, trail = sandbox.state_dir / "bypass.json", sandbox.state_dir / "audit.jsonl"
    saved = {p: p.read_bytes() for p in (record, trail, sandbox.state_dir / "audit.1.jsonl") if p.exists()}
    record.write_text("{not json")
    for p in saved:
        if p != record:
            p.unlink()
    try:
        assert "record_damaged" in check_ids(actions)
        result = actions.agent.run("add-port-forward", {"source": MEDIANT})
        assert result.exit_code == 1 and "Traceback" not in result.error
        [line] = [ln for ln in result.error.splitlines() if ln.startswith("<3>")]
        assert "restore bypass.json from a backup" in line
        assert firewall_state(sandbox) == clean_forwards and record.read_text() == "{not json"
    finally:
        for p, data in saved.items():
            p.write_bytes(data)


def test_destroy_needs_the_cluster_api_only_for_routes(actions, sandbox, cluster_api, clean_site, reinstalled):
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"], "nat": {"external_address": "203.0.113.5"}})
    with sandbox.stopped("api-server"):
        out = actions.run("destroy-module")
    wait_for(lambda: api_answers(cluster_api), 15, "the api-server to be back")
    assert out["restored"] == ["nethvoice1"] and site_state(sandbox) == clean_site
