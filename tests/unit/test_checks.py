"""Each check proven both ways on snapshots: the condition gives the finding, its
absence does not."""

import copy

import pytest
from nethvoice_bypass.checks import run_checks
from nethvoice_bypass.conflicts import Conflict
from nethvoice_bypass.nft import parse_nft_rule
from nethvoice_bypass.verify import answered_by

pytestmark = pytest.mark.unit

NV = {"ASTERISK_SIP_PORT": "20024", "ASTERISK_SIP_UDP_PORT": "20040", "PROXY_IP": "10.5.4.1", "PROXY_PORT": "5060"}
PROXY_RULE = 'rule family="ipv4" source address="192.0.2.0/24" forward-port port="5060" protocol="udp" to-port="6060"'


def forward(**kw):
    base = {"id": "udp-ipv4-5060-198.51.100.7", "instance": "nethvoice1", "family": "ipv4", "protocol": "udp",
            "port": 5060, "source": "198.51.100.7", "zone": "public", "target_port": 20040, "state": "in_sync",
            "rule": 'rule priority="-10" family="ipv4" source address="198.51.100.7" forward-port port="5060" '
                    'protocol="udp" to-port="20040"'}
    return {**base, **kw}


def trunk(**kw):
    base = {"id": "2", "name": "Custom-Voip", "registration": "send", "transport": "0.0.0.0-udp",
            "outbound_proxy": "", "managed": False}
    return {**base, **kw}


def healthy():
    """A bypass with nothing to report but the constant 5061 note."""
    return {
        "instances": {"nethvoice1": NV},
        "proxy": {"id": "nethvoice-proxy1", "public_ip": "203.0.113.5", "behind_nat": True,
                  "local_networks": ["192.0.2.0/24"], "sip_ports": {"udp": 5060, "tcp": 5060}, "rules": [PROXY_RULE]},
        "forwards": [forward()],
        "trunks": {"nethvoice1": [trunk(managed=True)]},
        "nat": {"nethvoice1": {"externip": "203.0.113.5", "localnets": ["192.0.2.0/24", "10.5.4.0/24"],
                               "managed": True}},
        "domain_aliases": {"nethvoice1": [{"domain": "pbx.example.org", "uri": "sip:10.5.4.1:20024",
                                           "present": True}]},
        "cluster_network": "10.5.4.0/24",
        "strict_forward_ports": False,
        "conntrack_available": True,
    }


CONFLICT = Conflict("trunk:nethvoice1:2", "trunk_proxy_changed", "Custom-Voip", "", "sip:192.0.2.9;lr",
                    "nethvoice1").to_json()


def test_a_conflict_finding_carries_both_ways_out():
    [found] = [f for f in run_checks(dict(healthy(), conflicts=[CONFLICT])) if f["id"].startswith("conflict_")]
    assert found["subject"] == "trunk:nethvoice1:2" and found["conflict"]["ways_out"]["keep_theirs"] == {
        "action": "reconcile-bypass", "data": {"keep_theirs": ["trunk:nethvoice1:2"]}}
    assert "sip:192.0.2.9;lr" in found["message"] and "put_ours_back" in found["remedy"]


def ids(snapshot):
    return sorted(f["id"] for f in run_checks(snapshot))


def test_healthy_bypass_has_only_the_5061_note():
    assert ids(healthy()) == ["sips_5061_with_proxy"]


def change(path, value):
    snapshot = healthy()
    target = snapshot
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return snapshot


@pytest.mark.parametrize("snapshot, expected", [
    (change(["forwards", 0, "source"], "192.0.2.10"), "forward_captures_proxy_lan"),
    (change(["forwards", 0, "state"], "stale_target"), "forward_stale_target"),
    (change(["forwards", 0, "state"], "missing_runtime"), "forward_not_applied"),
    (change(["forwards", 0, "state"], "instance_missing"), "forward_instance_missing"),
    (change(["strict_forward_ports"], True), "strict_forward_ports"),
    (change(["conntrack_available"], False), "conntrack_missing"),
    (change(["nat", "nethvoice1", "externip"], ""), "nat_externip_unset"),
    (change(["nat", "nethvoice1", "externip"], "198.51.100.1"), "nat_externip_mismatch"),
    (change(["nat", "nethvoice1", "localnets"], ["192.0.2.0/24"]), "nat_localnets_missing_cluster"),
    (change(["nat", "nethvoice1", "localnets"], ["10.5.4.0/24"]), "nat_localnets_missing_lan"),
    (change(["trunks", "nethvoice1", 0, "drift"], True), "trunk_proxy_returned"),
    (change(["trunks", "nethvoice1", 0, "name"], "Telco-Main"), "trunk_name_without_custom"),
    (change(["trunks", "nethvoice1", 0, "transport"], "0.0.0.0-tls"), "trunk_tls_5061"),
    (change(["proxy", "sip_ports"], {"udp": 5062, "tcp": 5062}), "proxy_port_not_5060"),
    (dict(healthy(), repairs=[{"op": "add_route", "domain": "pbx.example.org", "before": ["sip:10.5.4.1:20024"],
                               "after": ["sip:10.5.4.1:20040"], "why": "port"}]), "domain_alias_stale"),
    (dict(healthy(), conflicts=[CONFLICT]), "conflict_trunk_proxy_changed"),
    (dict(healthy(), releases=[{"op": "release_trunk", "trunk": "3", "name": "Mediant-SBC", "before": None,
                                "after": None, "why": "id 3 now names New-Trunk"}]), "trunk_released"),
    (dict(healthy(), record_damage={"file": "bypass.json", "error": "not JSON", "rebuilt": True}), "record_damaged"),
    (dict(healthy(), record_damage={"file": "bypass.json.damaged-x", "error": "set aside", "rebuilt": True}),
     "record_rebuilt"),
    (dict(healthy(), competing_rules={"f": [PROXY_RULE]}), "forward_competing_rule"),
    (dict(healthy(), proxy_live={"siptrace": True, "destinations": []}), "siptrace_on"),
    (dict(healthy(), proxy_live={"siptrace": True, "destinations": []}, siptrace_marker={"task": "t", "pid": 1}),
     "siptrace_left_on"),
    (dict(healthy(), proxy_live={"siptrace": False, "destinations": [
        {"uri": "sip:10.5.4.1:20040", "setid": 1, "flags": "IP", "active": False, "probing": True}]}),
     "proxy_destination_inactive"),
    (dict(healthy(), proxy_live={"siptrace": None, "destinations": [], "error": "refused"}), "proxy_rpc_unreachable"),
    (dict(healthy(), orphaned_rules=[forward()["rule"].replace("198.51.100.7", "198.51.100.9")]),
     "forward_orphaned"),
])
def test_each_check_appears_with_its_cause(snapshot, expected):
    assert expected in ids(snapshot)
    assert expected not in ids(healthy())


def test_forward_without_source_names_trunks_still_on_the_proxy():
    snapshot = change(["forwards", 0, "source"], None)
    snapshot["trunks"]["nethvoice1"].append(trunk(id="1", name="Telco-Main", outbound_proxy="sip:10.5.4.1:5060;lr"))
    found = [f for f in run_checks(snapshot) if f["id"] == "forward_without_source"]
    assert found and "Telco-Main" in found[0]["message"]
    # a TCP-only trunk does not count against a UDP forward
    snapshot["trunks"]["nethvoice1"][-1]["transport"] = "0.0.0.0-tcp"
    assert "forward_without_source" not in ids(snapshot)


def test_nat_checks_need_a_bypass():
    snapshot = healthy()
    snapshot["trunks"]["nethvoice1"][0]["managed"] = False
    snapshot["nat"]["nethvoice1"] = {"externip": "", "localnets": [], "managed": False}
    assert not [i for i in ids(snapshot) if i.startswith("nat_")]


def test_every_finding_has_message_and_remedy():
    snapshot = copy.deepcopy(healthy())
    snapshot["forwards"][0].update(source=None, state="stale_target")
    snapshot.update(conntrack_available=False, strict_forward_ports=True)
    for found in run_checks(snapshot):
        assert found["message"] and found["remedy"] and found["severity"] in ("error", "warning", "info")


def test_answered_by():
    assert answered_by("NethServer 8 nethvoice-proxy1") == "proxy"
    assert answered_by("Asterisk PBX 20.5") == "asterisk"
    assert answered_by("FPBX-16.0.40(20.5.2)") == "asterisk"
    assert answered_by("Yealink") == "other"
    assert answered_by("") is None


def test_parse_nft_rules_as_firewalld_generates_them():
    v4 = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "192.0.2.10"}},
          {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5060}},
          {"redirect": {"port": 20040}}]
    assert parse_nft_rule(v4) == ("ipv4", "192.0.2.10", "udp", 5060, 20040)
    v6 = [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                     "right": {"prefix": {"addr": "2001:db8::", "len": 64}}}},
          {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5060}},
          {"redirect": {"port": 20024}}]
    assert parse_nft_rule(v6) == ("ipv6", "2001:db8::/64", "tcp", 5060, 20024)
    anywhere = [{"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 5060}},
                {"redirect": {"port": 20024}}]
    assert parse_nft_rule(anywhere) == ("ipv4", None, "tcp", 5060, 20024)
    assert parse_nft_rule([{"accept": None}]) is None
