"""The pure core of configure-bypass."""

import pytest
from nethvoice_bypass import bypass_plan as bypass
from nethvoice_bypass.freepbx import changes_sql, format_localnets, parse_localnets, sql_literal
from nethvoice_bypass.step import validation_error

pytestmark = pytest.mark.unit


def agent_format(problems):
    """The core's problems as the step layer reports them."""
    return [validation_error(p["field"], p["reason"], p["value"]) for p in problems]

PROXY = "sip:10.5.4.1:5060;lr"
TRUNKS = [
    {"id": 1, "name": "Telco-Main", "registration": "send", "outbound_proxy": PROXY},
    {"id": 2, "name": "Custom-Voip", "registration": "send", "outbound_proxy": PROXY},
    {"id": 3, "name": "Mediant-SBC", "registration": "none", "outbound_proxy": ""},
]


def test_resolve_trunks_by_id_or_name():
    assert bypass.resolve_trunks([2, "telco-main"], TRUNKS, {}) == (["2", "1"], [])
    ids, errors = bypass.resolve_trunks(["Nope", "Other-Trunk", 2, "Custom-Voip"], TRUNKS,
                                        {"nethvoice2": ["Other-Trunk"]})
    assert ids == ["2"]
    assert [(e["field"], e["error"]) for e in agent_format(errors)] == [
        ("trunks.0", "trunks_not_found"), ("trunks.1", "trunks_other_instance"), ("trunks.3", "trunks_duplicate")]


def test_plan_trunks_bypasses_and_restores_only_managed_ones():
    changes = bypass.plan_trunks(["2"], TRUNKS, {"3": {}}, PROXY)
    assert [(c["op"], c["trunk"], c["before"], c["after"]) for c in changes] == [
        ("bypass_trunk", "2", PROXY, ""), ("restore_trunk", "3", "", PROXY)]
    # trunk 1 was never managed: an empty list leaves it alone
    assert bypass.plan_trunks([], TRUNKS, {}, PROXY) == []


def test_plan_trunks_takes_over_a_trunk_bypassed_by_hand_once():
    # trunk 3 has no outbound proxy and is not managed: asking for it changes only the record
    changes = bypass.plan_trunks(["3"], TRUNKS, {}, PROXY)
    assert [(c["op"], c["trunk"]) for c in changes] == [("manage_trunk", "3")]
    assert not bypass.needs_reload(changes)
    assert bypass.plan_trunks(["3"], TRUNKS, {"3": {}}, PROXY) == []


def test_plan_trunks_releases_a_managed_trunk_already_back_on_the_proxy():
    changes = bypass.plan_trunks([], TRUNKS, {"1": {}}, PROXY)
    assert [(c["op"], c["trunk"]) for c in changes] == [("release_trunk", "1")]
    assert not bypass.needs_reload(changes)


@pytest.mark.parametrize("nat, error", [
    ({"external_address": "192.168.1.5"}, "nat_external_address_private"),
    ({"external_address": "10.0.0.1"}, "nat_external_address_private"),
    ({"external_address": "pbx.example.org"}, "nat_external_address_format"),
    ({"external_address": "2001:db8::5"}, "nat_external_address_not_ipv4"),
    ({"external_address": "203.0.113.5", "local_networks": ["192.168.1.5/24"]}, "nat_local_networks_format"),
    ({"external_address": "203.0.113.5", "local_networks": ["lan"]}, "nat_local_networks_format"),
])
def test_nat_refusals(nat, error):
    _, errors = bypass.check_nat(nat, "10.5.4.0/24")
    assert [e["error"] for e in agent_format(errors)] == [error]


def test_nat_includes_cluster_network_once():
    desired, errors = bypass.check_nat({"external_address": "203.0.113.5",
                                        "local_networks": ["192.168.1.0/24", "192.168.1.0/24"]}, "10.5.4.0/24")
    assert errors == [] and desired == {"externip": "203.0.113.5", "localnets": ["192.168.1.0/24", "10.5.4.0/24"]}
    desired, _ = bypass.check_nat({"external_address": "203.0.113.5", "include_cluster_network": False}, "10.5.4.0/24")
    assert desired["localnets"] == []
    site = {"externip": "203.0.113.5", "localnets": ["192.168.1.0/24", "10.5.4.0/24"]}
    assert bypass.plan_nat(bypass.check_nat({"external_address": "203.0.113.5", "local_networks": ["192.168.1.0/24"]},
                                            "10.5.4.0/24")[0], site) == []


def test_domains():
    routes = {"voice.example.org": {}, "other.example.org": {}}
    domains, errors = bypass.check_domains(["PBX.customer.example.", "198.51.100.20", "pbx.customer.example",
                                            "voice.example.org", "other.example.org", "bad_domain!"],
                                           {"voice.example.org"}, routes, {})
    assert domains == ["pbx.customer.example", "198.51.100.20"]
    assert [e["error"] for e in agent_format(errors)] == ["domain_aliases_duplicate", "domain_aliases_owned_by_nethvoice",
                                            "domain_aliases_route_exists", "domain_aliases_format"]
    uri = "sip:10.5.4.1:20024"
    routes = {"old.example": {"domain": "old.example", "address": [{"uri": uri}]}}
    changes = bypass.plan_domains(["new.example"], routes, {"old.example": {}}, uri, "nethvoice1")
    assert [(c["op"], c["domain"]) for c in changes] == [("add_route", "new.example"), ("remove_route", "old.example")]
    routes["new.example"] = {"domain": "new.example", "address": [{"uri": uri}]}
    assert bypass.plan_domains(["new.example"], routes, {"new.example": {}}, uri, "x") == []


def test_localnets_in_freepbx_format():
    text = format_localnets(["192.168.1.0/24", "10.5.4.0/24"])
    assert text == '[{"net":"192.168.1.0","mask":"24"},{"net":"10.5.4.0","mask":"24"}]'
    assert parse_localnets(text) == ["192.168.1.0/24", "10.5.4.0/24"]
    assert parse_localnets('{"0":{"net":"10.0.0.0","mask":"255.0.0.0"}}') == ["10.0.0.0/8"]
    assert parse_localnets("") == [] and parse_localnets("not json") == []


def test_sql_literal_escapes_everything_mariadb_interprets():
    assert sql_literal("x'); DROP TABLE trunks; --") == "'x\\'); DROP TABLE trunks; --'"
    assert sql_literal("a\\b\nc\x00") == "'a\\\\b\\nc\\0'"
    assert sql_literal(None) == "NULL"


def test_changes_sql_is_one_transaction():
    sql = changes_sql([{"op": "bypass_trunk", "trunk": "2", "after": ""},
                       {"op": "set_externip", "after": "203.0.113.5"}])
    lines = sql.strip().splitlines()
    assert lines[:2] == ["SET autocommit=0;", "START TRANSACTION;"] and lines[-1] == "COMMIT;"
    assert "VALUES ('2', 'outbound_proxy', '', 0)" in sql


def test_warnings():
    by_id = {str(t["id"]): t for t in TRUNKS}
    found = bypass.warnings_for(by_id, ["1", "2", "3"], [{"op": "set_externip"}])
    pairs = [(w["id"], w.get("trunk")) for w in found]
    assert ("trunk_name_without_custom", "1") in pairs and ("trunk_name_without_custom", "2") not in pairs
    assert ("provider_must_reach_asterisk", "1") in pairs and ("trunk_without_registration", "3") in pairs
    assert ("nat_affects_proxied_calls", None) in pairs


# --- a whole configure-bypass, planned on values read first ------------------------

NV_ENV = {"PROXY_IP": "10.5.4.1", "PROXY_PORT": "5060", "ASTERISK_SIP_PORT": "20024", "NETHVOICE_HOST": "voice.example.org"}
SITE = {"trunks": TRUNKS, "externip": "", "localnets": []}


def world(**kw):
    return {"instance": "nethvoice1", "nethvoice": NV_ENV, "proxy": {"SERVICE_IP": "10.5.4.1"},
            "cluster_network": "10.5.4.0/24", "nethvoice_hosts": {"voice.example.org"}, "site": SITE,
            "mine": bypass.empty_instance_intent(), "routes": {}, "other_trunks": {}, **kw}


def test_the_request_is_checked_before_anything_is_read():
    assert bypass.request_problems({"trunks": ["Custom-Voip"], "nat": {"external_address": "203.0.113.5"},
                                    "domain_aliases": ["pbx.example.net"]}) == []
    problems = bypass.request_problems({"trunks": ["Custom-Voip", "custom-voip"],
                                        "nat": {"external_address": "10.0.0.1"},
                                        "domain_aliases": ["bad name!", "a.example", "A.example."]})
    assert [(e["field"], e["error"]) for e in agent_format(problems)] == [
        ("nat.external_address", "nat_external_address_private"), ("domain_aliases.0", "domain_aliases_format"),
        ("domain_aliases.2", "domain_aliases_duplicate"), ("trunks.1", "trunks_duplicate")]


def test_plan_configuration_on_what_was_read():
    data = {"trunks": ["Custom-Voip"], "nat": {"external_address": "203.0.113.5"},
            "domain_aliases": ["pbx.example.net"]}
    changes, trunks, nat, domains = bypass.plan_configuration(data, world())
    assert [c["op"] for c in changes] == ["bypass_trunk", "set_externip", "set_localnets", "add_route"]
    assert (trunks, nat, domains) == (["2"], {"externip": "203.0.113.5", "localnets": ["10.5.4.0/24"]},
                                      ["pbx.example.net"])
    assert bypass.needs_reload(changes) and not bypass.needs_reload([c for c in changes if c["op"] == "add_route"])
    with pytest.raises(bypass.Refused) as err:  # what only the world can say
        bypass.plan_configuration({"trunks": ["Elsewhere"], "domain_aliases": ["voice.example.org"]},
                                  world(other_trunks={"nethvoice2": ["Elsewhere"]}))
    assert [e["error"] for e in agent_format(err.value.problems)] == [
        "trunks_other_instance", "domain_aliases_owned_by_nethvoice"]


def test_the_record_after_a_plan_and_the_request_that_re_applies_it():
    data = {"trunks": ["Mediant-SBC"], "nat": {"external_address": "203.0.113.5", "local_networks": []}}
    changes, trunks, nat, domains = bypass.plan_configuration(data, world())
    after = bypass.recorded_state(bypass.empty_instance_intent(), world(), data, trunks, nat, domains, "T")
    # an already proxy-less trunk asked for is managed although nothing changes for it
    assert after["trunks"] == {"3": {"name": "Mediant-SBC", "since": "T"}}
    assert after["nat"]["previous"] == {"externip": "", "localnets": []}
    assert bypass.settled(dict(after, pending={"task": "x"}, reload_pending=True)) == after
    again = bypass.recorded_request(after)
    assert again == {"trunks": [3], "nat": {"external_address": "203.0.113.5", "local_networks": ["10.5.4.0/24"],
                                             "include_cluster_network": False}}
    mine = dict(after)
    assert bypass.plan_configuration(again, world(mine=mine, site=dict(SITE, externip="203.0.113.5",
                                                                      localnets=["10.5.4.0/24"])))[0] == []
