"""The pure core of configure-bypass: trunks, NAT settings and domain aliases planned on
what the module owns, what is asked and what was read."""

import pytest
from builders import NV, PROXY_VALUE, TRUNKS, agent_format, trunk, world
from nethvoice_bypass import bypass_plan as bypass
from nethvoice_bypass import bypass_request as request
from nethvoice_bypass.bypass_plan import GIVE_BACK, Desired
from nethvoice_bypass.conflicts import Resolutions
from nethvoice_bypass.errors import Refused
from nethvoice_bypass.freepbx import changes_sql, sql_literal
from nethvoice_bypass.record import AliasEntry, InstanceRecord, NatField, TrunkEntry
from nethvoice_bypass.sipsettings import format_localnets, parse_localnets

pytestmark = pytest.mark.unit

SBC = "sip:198.51.100.7:5060;lr"
URI = "sip:10.5.4.1:20040"  # Asterisk's UDP listener over the cluster VPN (NethVoice 1.8)


def owned(*trunks, nat=None, aliases=None):
    return InstanceRecord(trunks={t.id: t for t in trunks}, nat=nat or {}, aliases=aliases or {})


def plan(desired=None, w=None, mine=None, explicit=True, **choices):
    return bypass.plan_instance(desired or Desired(), w or world(), mine or InstanceRecord(), "T", explicit,
                                Resolutions(**{k: frozenset(v) for k, v in choices.items()}))


def summary(planned):
    return [(c.op, getattr(c, "trunk", None) or getattr(c, "setting", None) or getattr(c, "domain", None),
             c.before, c.after) for c in planned.changes]


# --- trunks -----------------------------------------------------------------------------

def test_bypass_records_identity_and_the_exact_before():
    planned = plan(Desired(trunks=("1", "2", "3", "4")))
    assert summary(planned) == [("bypass_trunk", "1", PROXY_VALUE, ""), ("bypass_trunk", "2", SBC, ""),
                                ("manage_trunk", "3", "", ""), ("manage_trunk", "4", None, None)]
    assert planned.mine.trunks["2"] == TrunkEntry("2", "Custom-Voip", "pjsip", SBC, "T")
    assert planned.mine.trunks["4"].before is None  # no outbound_proxy row: absent stays absent


@pytest.mark.parametrize("before, now, expected", [
    (SBC, "", [("restore_trunk", "2", "", SBC)]),               # the provider's SBC comes back, not the proxy
    (None, "", [("restore_trunk", "2", "", None)]),             # no row before: the row goes
    ("", "", [("release_trunk", "2", "", "")]),                 # managed while proxy-less: stays proxy-less
    (SBC, PROXY_VALUE, [("restore_trunk", "2", PROXY_VALUE, SBC)]),  # NethVoice put its proxy back meanwhile
    (SBC, "sip:203.0.113.9;lr", [("release_trunk", "2", "sip:203.0.113.9;lr", "sip:203.0.113.9;lr")]),
])
def test_unbypass_gives_back_exactly_what_was_there(before, now, expected):
    w = world(trunks=[trunk(2, "Custom-Voip", proxy=now)])
    planned = plan(Desired(trunks=()), w, owned(TrunkEntry("2", "Custom-Voip", "pjsip", before)))
    assert summary(planned) == expected and planned.mine.trunks == {}


def test_a_reused_trunk_id_is_released_and_never_changed():
    w = world(trunks=[trunk(3, "New-Provider")])  # trunk 3 was deleted; NethVoice gave its id to a new trunk
    mine = owned(TrunkEntry("3", "Mediant-SBC", "pjsip", ""))
    for desired, explicit in ((Desired(), False), (Desired(trunks=()), True)):
        planned = plan(desired, w, mine, explicit)
        assert summary(planned) == [("release_trunk", "3", None, None)] and planned.mine.trunks == {}
        assert "now names New-Provider" in planned.changes[0].why
    gone = plan(Desired(), world(trunks=[]), mine, False)
    assert summary(gone) == [("release_trunk", "3", None, None)] and "is gone" in gone.changes[0].why


def test_unattended_repairs_nethvoice_and_reports_the_admin():
    mine = owned(TrunkEntry("1", "Telco-Main", "pjsip", PROXY_VALUE), TrunkEntry("2", "Custom-Voip", "pjsip", SBC))
    w = world(trunks=[trunk(1, "Telco-Main"), trunk(2, "Custom-Voip", proxy="sip:192.0.2.99;lr")])
    planned = plan(Desired(), w, mine, explicit=False)
    assert summary(planned) == [("bypass_trunk", "1", PROXY_VALUE, "")]
    [conflict] = planned.conflicts
    assert (conflict.key, conflict.kind, conflict.ours, conflict.theirs) == (
        "trunk:nethvoice1:2", "trunk_proxy_changed", "", "sip:192.0.2.99;lr")
    assert conflict.ways_out()["put_ours_back"]["data"] == {"put_ours_back": ["trunk:nethvoice1:2"]}
    # an explicit request for the same trunks does not overwrite it either
    assert summary(plan(Desired(trunks=("1", "2")), w, mine)) == summary(planned)
    back = plan(Desired(), w, mine, False, put_ours_back={"trunk:nethvoice1:2"})
    assert ("bypass_trunk", "2", "sip:192.0.2.99;lr", "") in summary(back) and not back.conflicts
    theirs = plan(Desired(), w, mine, False, keep_theirs={"trunk:nethvoice1:2"})
    assert ("release_trunk", "2", "sip:192.0.2.99;lr", "sip:192.0.2.99;lr") in summary(theirs)
    assert "2" not in theirs.mine.trunks and not theirs.conflicts


# --- NAT settings ------------------------------------------------------------------------

LOCALNETS = ("192.0.2.0/24", "10.5.4.0/24")
NAT = {"externip": "203.0.113.5", "localnets": LOCALNETS}


def test_nat_records_each_setting_with_its_stored_before():
    planned = plan(Desired(nat=NAT), world(nat={"externip": "", "localnets": None}))
    assert summary(planned) == [("set_externip", "externip", "", "203.0.113.5"),
                                ("set_localnets", "localnets", (), LOCALNETS)]
    assert planned.changes[1].stored == format_localnets(LOCALNETS)
    assert planned.mine.nat == {"externip": NatField("externip", "203.0.113.5", "", "T"),
                                "localnets": NatField("localnets", LOCALNETS, None, "T")}


def test_nat_give_back_restores_the_stored_text_and_leaves_an_admin_edit():
    dotted = '[{"net":"192.168.1.0","mask":"255.255.255.0"}]'  # as an older FreePBX stored it
    mine = owned(nat={"externip": NatField("externip", "203.0.113.5", "198.51.100.1"),
                      "localnets": NatField("localnets", LOCALNETS, dotted)})
    stored = {"externip": "203.0.113.5", "localnets": format_localnets(LOCALNETS)}
    planned = plan(Desired(nat=GIVE_BACK), world(nat=stored), mine)
    assert [(c.op, c.stored) for c in planned.changes] == [("set_externip", "198.51.100.1"),
                                                           ("set_localnets", dotted)]
    assert planned.mine.nat == {}
    # the public IP changed and the admin set it in FreePBX: theirs, kept
    edited = dict(stored, externip="198.51.100.77")
    planned = plan(Desired(nat=GIVE_BACK), world(nat=edited), mine)
    assert [c.op for c in planned.changes] == ["release_nat", "set_localnets"]


def test_nat_conflicts_are_never_overwritten_unattended():
    mine = owned(nat={"externip": NatField("externip", "203.0.113.5", "")})
    w = world(nat={"externip": "198.51.100.77", "localnets": None})
    planned = plan(Desired(), w, mine, explicit=False)
    assert planned.changes == () and [c.key for c in planned.conflicts] == ["nat:nethvoice1:externip"]
    asked = plan(Desired(nat={"externip": "203.0.113.9", "localnets": ()}), w, mine)
    assert [c.kind for c in asked.conflicts] == ["nat_changed"] and "externip" not in [
        getattr(c, "setting", "") for c in asked.changes]
    taken = plan(Desired(nat={"externip": "198.51.100.77", "localnets": ()}), w, mine)
    assert [(c.op, c.setting) for c in taken.changes][0] == ("take_nat", "externip") and not taken.conflicts
    assert taken.mine.nat["externip"].before == ""  # the first before is kept while the module owns it
    back = plan(Desired(), w, mine, False, put_ours_back={"nat:nethvoice1:externip"})
    assert [(c.op, c.stored) for c in back.changes] == [("set_externip", "203.0.113.5")]


# --- domain aliases ------------------------------------------------------------------------

ALIAS = AliasEntry("pbx.example.net", (URI,), "nethvoice1 via nethvoice-bypass")


OLD_URI = "sip:10.5.4.1:20024"


@pytest.mark.parametrize("routes, desired, explicit, expected, conflict", [
    ({"pbx.example.net": (URI,)}, None, False, [], None),
    # re-pointed by someone: a conflict, left alone; removing the alias releases it
    ({"pbx.example.net": ("sip:10.5.4.9:5060",)}, None, False, [], "route_changed"),
    ({"pbx.example.net": ("sip:10.5.4.9:5060",)}, (), True, [("release_route", ("sip:10.5.4.9:5060",))], None),
    # removed by someone: unattended it is a conflict; asked for again, it is made again
    ({}, None, False, [], "route_removed"),
    ({}, ("pbx.example.net",), True, [("add_route", (URI,))], None),
    ({"pbx.example.net": (URI,)}, (), True, [("remove_route", None)], None),
])
def test_alias_routes(routes, desired, explicit, expected, conflict):
    planned = plan(Desired(aliases=desired), world(routes=routes), owned(aliases={ALIAS.domain: ALIAS}), explicit)
    assert [(c.op, c.after) for c in planned.changes] == expected
    assert [c.kind for c in planned.conflicts] == ([conflict] if conflict else [])


def test_alias_follows_nethvoice_port_change():
    old = AliasEntry("pbx.example.net", (OLD_URI,), ALIAS.description)
    planned = plan(Desired(), world(routes={old.domain: (OLD_URI,)}), owned(aliases={old.domain: old}), False)
    assert [(c.op, c.before, c.after) for c in planned.changes] == [("add_route", (OLD_URI,), (URI,))]
    assert planned.mine.aliases[old.domain].uris == (URI,) and not planned.conflicts
    # already moved by NethVoice's own repoint: the record follows, nothing is written
    moved = plan(Desired(), world(routes={old.domain: (URI,)}), owned(aliases={old.domain: old}), False)
    assert [c.op for c in moved.changes] == ["take_route"] and moved.mine.aliases[old.domain].uris == (URI,)


def test_alias_uri_targets_asterisk_udp_listener():
    assert bypass.route_uri({"SERVICE_IP": "10.5.4.1"}, NV) == URI
    assert bypass.route_uri({"SERVICE_IP": "10.5.4.1"}, {"ASTERISK_SIP_PORT": "20024"}) == "sip:10.5.4.1:20024"


# --- the request ------------------------------------------------------------------------------

def test_resolve_trunks_by_id_or_name():
    assert request.resolve_trunks([2, "telco-main"], TRUNKS, {}) == (["2", "1"], [])
    ids, errors = request.resolve_trunks(["Nope", "Other-Trunk", 2, "Custom-Voip"], TRUNKS,
                                         {"nethvoice2": ["Other-Trunk"]})
    assert ids == ["2"]
    assert [(e["field"], e["error"]) for e in agent_format(errors)] == [
        ("trunks.0", "trunks_not_found"), ("trunks.1", "trunks_other_instance"), ("trunks.3", "trunks_duplicate")]


@pytest.mark.parametrize("nat, error", [
    ({"external_address": "192.168.1.5"}, "nat_external_address_private"),
    ({"external_address": "10.0.0.1"}, "nat_external_address_private"),
    ({"external_address": "pbx.example.org"}, "nat_external_address_format"),
    ({"external_address": "2001:db8::5"}, "nat_external_address_not_ipv4"),
    ({"external_address": "203.0.113.5", "local_networks": ["192.168.1.5/24"]}, "nat_local_networks_host_bits_set"),
    ({"external_address": "203.0.113.5", "local_networks": ["lan"]}, "nat_local_networks_format"),
    ({"external_address": "203.0.113.5", "local_networks": ["0.0.0.0/0"]}, "nat_local_networks_all_addresses"),
    ({"external_address": "240.0.0.1"}, "nat_external_address_reserved"),
])
def test_nat_refusals(nat, error):
    _, errors = request.check_nat(nat, "10.5.4.0/24")
    assert [e["error"] for e in agent_format(errors)] == [error]


def test_nat_includes_cluster_network_once():
    desired, errors = request.check_nat({"external_address": "203.0.113.5",
                                         "local_networks": ["192.168.1.0/24", "192.168.1.0/24"]}, "10.5.4.0/24")
    assert errors == [] and desired == {"externip": "203.0.113.5", "localnets": ("192.168.1.0/24", "10.5.4.0/24")}
    desired, _ = request.check_nat({"external_address": "203.0.113.5", "include_cluster_network": False},
                                   "10.5.4.0/24")
    assert desired["localnets"] == ()


def test_domains_and_the_request_checked_before_anything_is_read():
    domains, errors = request.check_domains(["PBX.customer.example.", "198.51.100.20", "pbx.customer.example",
                                             "voice.example.org", "other.example.org", "bad_domain!"],
                                            {"voice.example.org"}, {"other.example.org": ("x",)}, {})
    assert domains == ["pbx.customer.example", "198.51.100.20"]
    assert [e["error"] for e in agent_format(errors)] == ["domain_aliases_duplicate", "domain_aliases_owned_by_nethvoice",
                                                          "domain_aliases_route_exists",
                                                          "domain_aliases_invalid_character"]
    problems = request.request_problems({"trunks": ["Custom-Voip", "custom-voip"],
                                         "nat": {"external_address": "10.0.0.1"},
                                         "domain_aliases": ["bad name!", "a.example", "A.example."]})
    assert [(e["field"], e["error"]) for e in agent_format(problems)] == [
        ("nat.external_address", "nat_external_address_private"),
        ("domain_aliases.0", "domain_aliases_invalid_character"),
        ("domain_aliases.2", "domain_aliases_duplicate"), ("trunks.1", "trunks_duplicate")]


def test_desired_on_what_was_read():
    assert request.desired({"trunks": ["Custom-Voip"], "nat": None}, world(), InstanceRecord()) == \
        Desired(trunks=("2",), nat=GIVE_BACK)
    with pytest.raises(Refused) as err:  # what only the world can say
        request.desired({"trunks": ["Elsewhere"], "domain_aliases": ["voice.example.org"]},
                        world(other_trunks={"nethvoice2": ["Elsewhere"]}), InstanceRecord())
    assert [e["error"] for e in agent_format(err.value.problems)] == [
        "trunks_other_instance", "domain_aliases_owned_by_nethvoice"]


def test_warnings():
    by_id = {str(t["id"]): t for t in TRUNKS}
    changes = plan(Desired(nat=NAT)).changes
    found = request.warnings_for(by_id, ["1", "2", "3"], changes)
    pairs = [(w["id"], w.get("trunk")) for w in found]
    assert ("trunk_name_without_custom", "1") in pairs and ("trunk_name_without_custom", "2") not in pairs
    assert ("provider_must_reach_asterisk", "1") in pairs and ("trunk_without_registration", "3") in pairs
    assert ("nat_affects_proxied_calls", None) in pairs


# --- FreePBX's stored forms -----------------------------------------------------------------

def test_localnets_in_freepbx_format():
    text = format_localnets(["192.168.1.0/24", "10.5.4.0/24"])
    assert text == '[{"net":"192.168.1.0","mask":"24"},{"net":"10.5.4.0","mask":"24"}]'
    assert parse_localnets(text) == ("192.168.1.0/24", "10.5.4.0/24")
    assert parse_localnets('{"0":{"net":"10.0.0.0","mask":"255.0.0.0"}}') == ("10.0.0.0/8",)
    assert parse_localnets("") == () and parse_localnets("not json") == ()


@pytest.mark.parametrize("value", ["x'); DROP TABLE trunks; --", "a\\b\nc\x00", "a\\'b", "é'", "\\\\'"])
def test_sql_literal_means_the_same_under_any_sql_mode(value):
    literal = sql_literal(value)
    assert literal.startswith("CONVERT(X'") and literal.endswith("' USING utf8mb4)") and "\\" not in literal
    assert bytes.fromhex(literal.split("X'")[1].split("'")[0]).decode() == value
    assert sql_literal(None) == "NULL" and sql_literal("sip:10.5.4.1:5060;lr") == "'sip:10.5.4.1:5060;lr'"


def test_changes_sql_is_one_transaction_and_deletes_what_was_absent():
    changes = plan(Desired(trunks=()), world(trunks=[trunk(4, "No-Row", proxy="")]),
                   owned(TrunkEntry("4", "No-Row", "pjsip", None))).changes
    changes += plan(Desired(trunks=("2",), nat=NAT)).changes
    sql = changes_sql(changes)
    lines = sql.strip().splitlines()
    assert lines[:2] == ["SET autocommit=0;", "START TRANSACTION;"] and lines[-1] == "COMMIT;"
    assert "DELETE FROM pjsip WHERE id = '4' AND keyword = 'outbound_proxy';" in lines
    assert "VALUES ('2', 'outbound_proxy', '', 0)" in sql and "ON DUPLICATE KEY UPDATE val = VALUES(val)" in sql
