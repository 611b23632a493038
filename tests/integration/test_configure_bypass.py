"""configure-bypass on the sandbox's real MariaDB (FreePBX tables) and proxy stand-in."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROXY_VALUE = "sip:10.5.4.1:5060;lr"


def outbound_proxy(sandbox, trunk_id):
    rows = sandbox.sql(f"SELECT data FROM pjsip WHERE id='{trunk_id}' AND keyword='outbound_proxy'")
    return rows[0][0] if rows and rows[0] else ""


def site_state(sandbox):
    """Everything configure-bypass may touch in FreePBX, for before/after comparisons."""
    return {
        "pjsip": sandbox.sql("SELECT id, keyword, data FROM pjsip ORDER BY id, keyword"),
        "trunks": sandbox.sql("SELECT trunkid, name FROM trunks ORDER BY trunkid"),
        "kvstore": sandbox.sql("SELECT `key`, val, type, id FROM kvstore_Sipsettings ORDER BY `key`"),
        "sip": sandbox.sql("SELECT id, keyword, data FROM sip ORDER BY id, keyword"),
    }


def reloads(sandbox):
    log = Path(sandbox.nethvoice["fwconsole_log"])
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def clean_site(actions, sandbox):
    """Each test starts from the seeded FreePBX data and ends there, through the
    module's own undo (an empty trunk list, nat null, no aliases)."""
    before = site_state(sandbox)
    yield before
    actions.run("configure-bypass", {"trunks": [], "nat": None, "domain_aliases": []})
    assert site_state(sandbox) == before


def test_bypass_and_unbypass_a_registered_trunk(actions, sandbox, clean_site):
    count = len(reloads(sandbox))
    out = actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
    assert [(c["op"], c["trunk"], c["before"], c["after"]) for c in out["plan"]] == [
        ("bypass_trunk", "2", PROXY_VALUE, "")]
    assert out["reloaded"] and len(reloads(sandbox)) == count + 1 and reloads(sandbox)[-1].endswith(" reload")
    assert outbound_proxy(sandbox, 2) == "" and outbound_proxy(sandbox, 1) == PROXY_VALUE
    assert "provider_must_reach_asterisk" in [w["id"] for w in out["warnings"]]
    # a physical extension keeps its proxy
    assert sandbox.sql("SELECT data FROM sip WHERE id='201' AND keyword='outbound_proxy'") == [[PROXY_VALUE]]
    back = actions.run("configure-bypass", {"trunks": []})
    assert [(c["op"], c["after"]) for c in back["plan"]] == [("restore_trunk", PROXY_VALUE)]
    assert outbound_proxy(sandbox, 2) == PROXY_VALUE


def test_nat_written_in_freepbx_format_and_read_back(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"nat": {"external_address": "203.0.113.5",
                                             "local_networks": ["192.0.2.0/24"]}})
    rows = dict((k, (v, t)) for k, v, t, _ in sandbox.sql(
        "SELECT `key`, val, IFNULL(type, 'NULL'), id FROM kvstore_Sipsettings WHERE `key` IN ('externip','localnets')"))
    assert rows["externip"] == ("203.0.113.5", "NULL")
    assert json.loads(rows["localnets"][0]) == [{"net": "192.0.2.0", "mask": "24"}, {"net": "10.5.4.0", "mask": "24"}]
    assert rows["localnets"][1] == "json-arr"
    nat = actions.run("get-status")["bypass"]["nat"]["nethvoice1"]
    assert nat == {"externip": "203.0.113.5", "localnets": ["192.0.2.0/24", "10.5.4.0/24"], "managed": True,
                   "owned": ["externip", "localnets"]}


def test_dry_run_and_repeated_apply_change_nothing(actions, sandbox, clean_site):
    request = {"trunks": ["Telco-Main"], "nat": {"external_address": "203.0.113.5"}}
    count = len(reloads(sandbox))
    planned = actions.run("configure-bypass", dict(request, dry_run=True))
    assert planned["changed"] and not planned["reloaded"]
    assert site_state(sandbox) == clean_site and len(reloads(sandbox)) == count
    actions.run("configure-bypass", request)
    after_first = site_state(sandbox)
    assert len(reloads(sandbox)) == count + 1
    again = actions.run("configure-bypass", request)
    assert again["plan"] == [] and not again["reloaded"]
    assert site_state(sandbox) == after_first and len(reloads(sandbox)) == count + 1
    assert "trunk_name_without_custom" in [w["id"] for w in again["warnings"]]


@pytest.mark.parametrize("data, error", [
    ({"trunks": ["No-Such-Trunk"]}, "trunks_not_found"),
    ({"trunks": [99]}, "trunks_not_found"),
    ({"nat": {"external_address": "192.168.1.10"}}, "nat_external_address_private"),
    ({"nat": {"external_address": "not-an-ip"}}, "nat_external_address_format"),
    ({"nat": {"external_address": "203.0.113.5", "local_networks": ["192.0.2.1/24"]}},
     "nat_local_networks_host_bits_set"),
    ({"nat": {}}, "nat_required"),
    ({"instance": "nethvoice7"}, "instance_not_found"),
    ({"trunks": "Telco-Main"}, "trunks_invalid_type"),
])
def test_refused_input_changes_nothing(actions, sandbox, clean_site, data, error):
    files = actions.state_files()
    count = len(reloads(sandbox))
    errors = actions.run("configure-bypass", data, expect=10)
    assert error in [e["error"] for e in errors]
    assert site_state(sandbox) == clean_site
    assert actions.state_files() == files and len(reloads(sandbox)) == count


def test_mysql_failure_mid_apply_leaves_the_database_unchanged(actions, sandbox, clean_site):
    # the trunk update runs first; the kvstore insert then fails inside the transaction
    sandbox.sql("CREATE TRIGGER refuse_kv BEFORE INSERT ON kvstore_Sipsettings FOR EACH ROW "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'disk full'")
    files = actions.state_files()
    count = len(reloads(sandbox))
    try:
        result = actions.agent.run("configure-bypass", {"trunks": ["Custom-Voip"],
                                                        "nat": {"external_address": "203.0.113.5"}})
    finally:
        sandbox.sql("DROP TRIGGER refuse_kv")
    assert result.exit_code == 1 and "disk full" in result.error and "Traceback" not in result.error
    assert site_state(sandbox) == clean_site
    assert actions.state_files() == files and len(reloads(sandbox)) == count


def test_hostile_trunk_name_cannot_inject_sql(actions, sandbox, clean_site):
    hostile = "Custom'); DROP TABLE trunks; --"
    sandbox.sql("UPDATE trunks SET name='Custom\\'); DROP TABLE trunks; --' WHERE trunkid=2")
    try:
        out = actions.run("configure-bypass", {"trunks": [hostile]})
        assert out["plan"][0]["name"] == hostile
        assert outbound_proxy(sandbox, 2) == ""
        assert len(sandbox.sql("SELECT trunkid FROM trunks")) == 3
        actions.run("configure-bypass", {"trunks": []})
    finally:
        sandbox.sql("UPDATE trunks SET name='Custom-Voip' WHERE trunkid=2")


def test_drift_is_detected_and_reconciled(actions, sandbox, clean_site):
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"]})
    # what NethVoice's migration.php does on a container restart for non-custom names
    sandbox.sql(f"UPDATE pjsip SET data='{PROXY_VALUE}' WHERE id='2' AND keyword='outbound_proxy'")
    status = actions.run("get-status")["bypass"]
    trunk = [t for t in status["trunks"]["nethvoice1"] if t["id"] == "2"][0]
    assert trunk["drift"] and "trunk_proxy_returned" in [c["id"] for c in status["checks"]]
    out = actions.run("reconcile-bypass")
    assert ("bypass_trunk", "2") in [(c["op"], c.get("trunk")) for c in out["plan"]]
    assert outbound_proxy(sandbox, 2) == ""


def proxy_routes(sandbox):
    return {r["domain"]: r for r in sandbox.proxy_routes()}


def test_domain_aliases_added_and_removed_without_touching_nethvoice_route(actions, sandbox, clean_site):
    own = proxy_routes(sandbox)["voice.example.org"]
    out = actions.run("configure-bypass", {"domain_aliases": ["PBX.Customer.example", "198.51.100.20"]})
    assert [(c["op"], c["domain"]) for c in out["plan"]] == [("add_route", "pbx.customer.example"),
                                                             ("add_route", "198.51.100.20")]
    assert not out["reloaded"]  # no FreePBX change, no reload
    routes = proxy_routes(sandbox)
    # Asterisk's UDP listener over the VPN, as NethVoice 1.8 routes its own domain
    assert routes["pbx.customer.example"]["address"][0]["uri"] == "sip:10.5.4.1:20040"
    assert routes["voice.example.org"] == own
    status = actions.run("get-status")["bypass"]["domain_aliases"]["nethvoice1"]
    assert [(a["domain"], a["present"]) for a in status] == [("198.51.100.20", True), ("pbx.customer.example", True)]
    actions.run("configure-bypass", {"domain_aliases": ["198.51.100.20"]})
    assert set(proxy_routes(sandbox)) == {"voice.example.org", "198.51.100.20"}
    actions.run("configure-bypass", {"domain_aliases": []})
    assert proxy_routes(sandbox) == {"voice.example.org": own}


@pytest.mark.parametrize("aliases, error", [
    (["voice.example.org"], "domain_aliases_owned_by_nethvoice"),
    (["a.example", "A.example"], "domain_aliases_duplicate"),
    (["bad domain"], "domain_aliases_invalid_character"),
])
def test_domain_alias_refusals_change_nothing(actions, sandbox, clean_site, aliases, error):
    before = proxy_routes(sandbox)
    errors = actions.run("configure-bypass", {"domain_aliases": aliases}, expect=10)
    assert error in [e["error"] for e in errors]
    assert proxy_routes(sandbox) == before


def test_destroy_module_undoes_trunks_nat_and_aliases(actions, sandbox, clean_site, reinstalled):
    own = proxy_routes(sandbox)
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"], "domain_aliases": ["pbx.customer.example"],
                                     "nat": {"external_address": "203.0.113.5"}})
    assert site_state(sandbox) != clean_site
    out = actions.run("destroy-module")
    assert out["restored"] == ["nethvoice1"] and out["problems"] == []
    assert site_state(sandbox) == clean_site
    assert proxy_routes(sandbox) == own


def check_ids(actions):
    return {c["id"] for c in actions.run("get-status")["bypass"]["checks"]}


def test_nat_and_trunk_checks_both_ways(actions, sandbox, clean_site):
    assert not {i for i in check_ids(actions) if i.startswith(("nat_", "trunk_"))}
    actions.run("configure-bypass", {"trunks": ["Telco-Main"]})
    found = check_ids(actions)
    assert {"nat_externip_unset", "trunk_name_without_custom", "nat_localnets_missing_cluster",
            "nat_localnets_missing_lan"} <= found
    actions.run("configure-bypass", {"trunks": ["Custom-Voip"],
                                     "nat": {"external_address": "198.51.100.1", "local_networks": ["192.0.2.0/24"]}})
    found = check_ids(actions)
    assert "nat_externip_mismatch" in found and "trunk_name_without_custom" not in found
    assert not {"nat_externip_unset", "nat_localnets_missing_cluster", "nat_localnets_missing_lan"} & found
    actions.run("configure-bypass", {"nat": {"external_address": "203.0.113.5", "local_networks": ["192.0.2.0/24"]}})
    assert not {i for i in check_ids(actions) if i.startswith(("nat_", "trunk_"))}
