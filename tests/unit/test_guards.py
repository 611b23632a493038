"""Guards on what the module may take: sources, forwarded ports, domain aliases, NAT values."""

import ipaddress
import json
import re

import pytest
from firewall.core.rich import Rich_Rule  # Debian's python3-firewall: firewalld's own parser
from hypothesis import given
from hypothesis import strategies as st
from nethvoice_bypass import cluster, guards
from nethvoice_bypass.errors import InvalidValue
from nethvoice_bypass.model import ForwardRule, canonical_source, forward_id, parse_rich_rule
from nethvoice_bypass.port_guards import module_ports, port_range
from test_i18n import FIELD_ERRORS

pytestmark = pytest.mark.unit

SOURCE_REASONS = {"format", "scoped", "host_bits_set", "wrong_family", "all_addresses", "unspecified", "loopback",
                  "multicast", "broadcast", "reserved", "ipv4_mapped", "includes_special"}
DOMAIN_REASONS = {"format", "ipv6_literal", "invalid_character", "empty_label", "label_hyphen", "label_too_long",
                  "too_long", "idn"}
EXTERNAL_REASONS = {"format", "network", "not_ipv4", "private", "unspecified", "reserved", "multicast", "broadcast"}
LOCAL_REASONS = {"format", "host_bits_set", "not_ipv4", "all_addresses", "unspecified", "loopback", "multicast",
                 "broadcast", "reserved", "includes_special"}
PORT_REASONS = {"invalid_port", "sips_not_supported", "reserved_by_proxy", "in_use"}


def reason(fn, *args, **kwargs):
    with pytest.raises(InvalidValue) as err:
        fn(*args, **kwargs)
    return err.value.reason


def test_every_reason_has_a_translated_error_key():
    keys = ({f"source_{r}" for r in SOURCE_REASONS | {"duplicate"}} | {f"port_{r}" for r in PORT_REASONS}
            | {f"domain_aliases_{r}" for r in DOMAIN_REASONS}
            | {f"nat_external_address_{r}" for r in EXTERNAL_REASONS}
            | {f"nat_local_networks_{r}" for r in LOCAL_REASONS})
    assert keys - set(FIELD_ERRORS) == set()


# --- sources ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("192.0.2.10", "192.0.2.10"), ("192.0.2.10/32", "192.0.2.10"), (" 192.0.2.0/24 ", "192.0.2.0/24"),
    ("192.0.2.0/255.255.255.0", "192.0.2.0/24"), ("2001:DB8::A", "2001:db8::a"),
    ("2001:db8:0:0::a/128", "2001:db8::a"), ("2001:db8::/32", "2001:db8::/32"),
    ("fe80::1", "fe80::1"),  # link-local without a zone: a device on the same link
    ("169.254.10.1", "169.254.10.1"), ("100.64.1.1", "100.64.1.1"), ("10.0.0.0/8", "10.0.0.0/8"),
    ("64:ff9b::c000:20a", "64:ff9b::c000:20a"),  # NAT64: an IPv4 host seen over IPv6
    ("128.0.0.0/2", "128.0.0.0/2"), ("2000::/3", "2000::/3"),  # wide, but nothing special in them
])
def test_sources_accepted(text, expected):
    assert guards.check_source(text) == expected


@pytest.mark.parametrize("text, family, expected", [
    ("192.0.2.10/24", None, "host_bits_set"), ("2001:db8::1/64", None, "host_bits_set"),
    ("192.0.2.300", None, "format"), ("192.0.02.1", None, "format"), ("example.org", None, "format"),
    ("", None, "format"), (None, None, "format"), (3232235521, None, "format"),
    ("192.0.2.10", "ipv6", "wrong_family"), ("2001:db8::1", "ipv4", "wrong_family"),
    ("fe80::1%eth0", None, "scoped"), ("fe80::/64%eth0", None, "scoped"),
    ("0.0.0.0/0", None, "all_addresses"), ("::/0", None, "all_addresses"),
    ("0.0.0.0", None, "unspecified"), ("::", None, "unspecified"), ("0.1.2.3", None, "reserved"),
    ("127.0.0.1", None, "loopback"), ("127.0.0.0/8", None, "loopback"), ("127.5.0.0/16", None, "loopback"),
    ("::1", None, "loopback"), ("224.0.0.1", None, "multicast"), ("224.0.0.0/4", None, "multicast"),
    ("239.1.0.0/16", None, "multicast"), ("ff02::1", None, "multicast"), ("ff00::/8", None, "multicast"),
    ("255.255.255.255", None, "broadcast"), ("240.0.0.1", None, "reserved"), ("240.0.0.0/4", None, "reserved"),
    ("100::1", None, "reserved"), ("4000::1", None, "reserved"), ("fec0::1", None, "reserved"),
    ("::c000:20a", None, "reserved"),  # IPv4-compatible IPv6, deprecated
    ("::ffff:192.0.2.1", None, "ipv4_mapped"), ("::ffff:c000:201", None, "ipv4_mapped"),
    ("::ffff:192.0.2.0/120", None, "ipv4_mapped"), ("::ffff:192.0.2.1", "ipv6", "ipv4_mapped"),
    ("0.0.0.0/1", None, "includes_special"), ("128.0.0.0/1", None, "includes_special"),
    ("64.0.0.0/2", None, "includes_special"), ("192.0.0.0/2", None, "includes_special"),
    ("::/1", None, "includes_special"), ("fe00::/7", None, "includes_special"),
])
def test_sources_refused(text, family, expected):
    assert reason(guards.check_source, text, family) == expected


def test_a_network_inside_or_around_a_special_range_names_it():
    with pytest.raises(InvalidValue, match="lies in 224.0.0.0/4, the multicast range"):
        guards.check_source("239.1.0.0/16")
    with pytest.raises(InvalidValue, match="includes 0.0.0.0/8"):
        guards.check_source("0.0.0.0/1")
    with pytest.raises(InvalidValue, match="give 192.0.2.1"):
        guards.check_source("::ffff:c000:201")


def test_a_slash_zero_is_no_source_only_with_allow_any_source():
    assert guards.check_source("0.0.0.0/0", allow_any_source=True) is None
    assert guards.check_source("::/0", "ipv6", allow_any_source=True) is None
    assert reason(guards.check_source, "::/0", "ipv4", allow_any_source=True) == "wrong_family"
    assert guards.check_source("192.0.2.10", allow_any_source=True) == "192.0.2.10"


def test_ipv4_mapped_sources_are_refused_in_both_spellings():
    # Python 3.11 formats ::ffff:192.0.2.1 as ::ffff:c000:201, 3.13 as ::ffff:192.0.2.1
    # (gh-87799): the canonical text, rule and record would differ with the agent's Python
    assert {reason(guards.check_source, t) for t in ("::ffff:192.0.2.1", "::FFFF:C000:0201")} == {"ipv4_mapped"}


def test_duplicate_sources_are_the_same_forward_twice():
    keys = [("ipv4", "udp", 5060, "192.0.2.10"), ("ipv4", "tcp", 5060, "192.0.2.10"), None,
            ("ipv4", "udp", 5060, "192.0.2.10"), None, ("ipv4", "udp", 5060, "192.0.2.10")]
    assert guards.duplicate_sources(keys) == [(3, 0), (5, 0)]
    canonical = [guards.check_source(t) for t in ("192.0.2.10", "192.0.2.10/32", "2001:DB8::1", "2001:db8::1")]
    assert guards.duplicate_sources(canonical) == [(1, 0), (3, 2)]


ipv4_networks = st.builds(lambda n, p: ipaddress.IPv4Network((n, p), strict=False),
                          st.integers(0, 2**32 - 1), st.integers(0, 32))
ipv6_networks = st.builds(lambda n, p: ipaddress.IPv6Network((n, p), strict=False),
                          st.integers(0, 2**128 - 1), st.integers(0, 128))
special_v6 = st.builds(lambda base, host, p: ipaddress.IPv6Network((base + host, p), strict=False),
                       st.sampled_from([0, 0xFFFF << 32, 0xFF << 120, 0x64FF9B << 96, 0xFEC << 116]),
                       st.integers(0, 2**32 - 1), st.integers(80, 128))
source_texts = st.one_of(
    st.builds(str, st.one_of(ipv4_networks, ipv6_networks, special_v6)),
    st.builds(lambda net: str(net.network_address), st.one_of(ipv4_networks, ipv6_networks, special_v6)),
    st.text(alphabet="0123456789abcdefABCDEF:./% x", max_size=48), st.text(max_size=48))


@given(source_texts, st.sampled_from([None, "ipv4", "ipv6"]), st.booleans())
def test_check_source_answers_a_canonical_fixed_point_or_invalid_value(text, family, allow_any):
    try:
        canonical = guards.check_source(text, family, allow_any)
    except InvalidValue as err:
        assert err.reason in SOURCE_REASONS
        return
    if canonical is None:
        assert allow_any and ipaddress.ip_network(text.strip()).prefixlen == 0
        return
    assert guards.check_source(canonical) == canonical == canonical_source(text)
    assert canonical == canonical.strip().lower() and "%" not in canonical


@given(st.one_of(ipv4_networks, ipv6_networks), st.sampled_from(["udp", "tcp"]))
def test_canonical_sources_round_trip_through_the_rule_and_the_record(network, protocol):
    try:
        source = guards.check_source(str(network))
    except InvalidValue:
        return
    family = "ipv6" if network.version == 6 else "ipv4"
    rule = ForwardRule(family, protocol, 5060, 20040, source)
    text = rule.to_rich_rule()
    assert str(Rich_Rule(rule_str=text)) == text  # firewalld keeps the text as written
    assert parse_rich_rule(text).source == source
    record = json.loads(json.dumps({"source": source, "rule": text}))
    assert guards.check_source(record["source"]) == source and record["rule"] == text
    assert forward_id(family, protocol, 5060, source).endswith(source.replace("/", "_"))


# --- NAT ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("203.0.113.5", "203.0.113.5"), (" 198.51.100.7 ", "198.51.100.7"), ("8.8.8.8", "8.8.8.8")])
def test_external_addresses_accepted(text, expected):
    assert guards.check_external_address(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("pbx.example.org", "format"), ("", "format"), (None, "format"), (3405803781, "format"),
    ("203.0.113.0/24", "network"), ("203.0.113.5/32", "network"), ("2001:db8::5", "not_ipv4"),
    ("192.168.1.5", "private"), ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("100.64.0.1", "private"),
    ("127.0.0.1", "private"), ("169.254.1.1", "private"), ("0.0.0.0", "unspecified"), ("0.1.2.3", "reserved"),
    ("240.0.0.1", "reserved"), ("224.0.0.1", "multicast"), ("255.255.255.255", "broadcast"),
])
def test_external_addresses_refused(text, expected):
    assert reason(guards.check_external_address, text) == "external_address_" + expected


@pytest.mark.parametrize("text, expected", [
    ("192.168.1.0/24", "192.168.1.0/24"), (" 10.0.0.0/8 ", "10.0.0.0/8"), ("192.168.1.5", "192.168.1.5/32"),
    ("169.254.0.0/16", "169.254.0.0/16"), ("10.5.4.0/255.255.255.0", "10.5.4.0/24")])
def test_local_networks_accepted(text, expected):
    assert guards.check_local_network(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("lan", "format"), ("", "format"), (None, "format"), ("fe80::/64%eth0", "format"),
    ("192.168.1.5/24", "host_bits_set"), ("2001:db8::/32", "not_ipv4"), ("0.0.0.0/0", "all_addresses"),
    ("0.0.0.0", "unspecified"), ("0.0.0.0/8", "reserved"), ("127.0.0.0/8", "loopback"),
    ("224.0.0.0/4", "multicast"), ("255.255.255.255", "broadcast"), ("240.0.0.0/4", "reserved"),
    ("0.0.0.0/1", "includes_special"), ("192.0.0.0/2", "includes_special"),
])
def test_local_networks_refused(text, expected):
    assert reason(guards.check_local_network, text) == "local_networks_" + expected


@given(st.one_of(st.builds(str, ipv4_networks), st.builds(lambda n: str(n.network_address), ipv4_networks),
                 st.text(alphabet="0123456789./: ", max_size=20), st.text(max_size=20)))
def test_nat_checks_answer_canonical_values_or_invalid_value(text):
    for check, reasons, prefix in ((guards.check_external_address, EXTERNAL_REASONS, "external_address_"),
                                   (guards.check_local_network, LOCAL_REASONS, "local_networks_")):
        try:
            value = check(text)
        except InvalidValue as err:
            assert err.reason.removeprefix(prefix) in reasons and err.reason.startswith(prefix)
            continue
        assert check(value) == value


# --- ports --------------------------------------------------------------------------------

NETHVOICE = {"TCP_PORT": "20001", "TCP_PORTS_RANGE": "20001-20037", "UDP_PORT": "20040", "UDP_PORTS": "20040",
             "ASTERISK_SIP_PORT": "20025", "ASTERISK_SIP_UDP_PORT": "20040", "ASTERISK_IAX_PORT": "20027",
             "ASTERISK_RTPSTART": "20002", "ASTERISK_RTPEND": "21001", "JANUS_RTPSTART": "21002",
             "JANUS_RTPEND": "22001"}
PROXY = {"TCP_PORT": "20100", "TCP_PORTS_RANGE": "20100-20101", "TCP_PORTS": "20100,20101",
         "RTP_PORT_MIN": "10000", "RTP_PORT_MAX": "20000"}
OPEN = [{"port": "443", "protocol": "tcp", "owner": "service https"},
        {"port": "30000-30010", "protocol": "udp", "owner": "service custom1"},
        {"port": "8443", "protocol": "tcp", "owner": "port"}]
HOLDERS = guards.port_holders(open_ports=OPEN, modules={"nethvoice1": NETHVOICE, "nethvoice-proxy1": PROXY},
                              proxy_id="nethvoice-proxy1", proxy_srv={"udp": {"port": "5070"}},
                              vpn_ports=[51820])


@pytest.mark.parametrize("env, expected", [
    ({"TCP_PORT": "20000"}, {"tcp": [(20000, 20000)], "udp": []}),  # tcp-ports-demand=1
    ({"TCP_PORT": "20000", "TCP_PORTS_RANGE": "20000-20001", "TCP_PORTS": "20000,20001",
      "UDP_PORT": "20500", "UDP_PORTS_RANGE": "20500-20520"}, {"tcp": [(20000, 20001)], "udp": [(20500, 20520)]}),
    ({"TCP_PORT": "x", "TCP_PORTS": "1,,3,99999", "UDP_PORTS_RANGE": "9-3"}, {"tcp": [(1, 1), (3, 3)], "udp": []}),
])
def test_module_ports_as_add_module_writes_them(env, expected):
    assert module_ports(env) == expected


@pytest.mark.parametrize("text, expected", [
    ("5060", (5060, 5060)), ("10000-20000", (10000, 20000)), (" 22 ", (22, 22)), ("5060-", None), ("-5", None),
    ("0", None), ("65536", None), ("20-10", None), ("", None), ("٣", None), ("1-2-3", None), (None, None)])
def test_port_range(text, expected):
    assert port_range(text) == expected


@pytest.mark.parametrize("port, protocol, holder", [
    (22, "tcp", "SSH"), (80, "tcp", "traefik (HTTP)"), (443, "tcp", "traefik (cluster-admin)"),
    (9311, "tcp", "the api-server"), (6379, "tcp", "Redis"), (55820, "udp", "the cluster VPN"),
    (51820, "udp", "the cluster VPN (WireGuard endpoint)"), (5070, "udp", "nethvoice-proxy1 (the proxy's SIP)"),
    (15000, "udp", "nethvoice-proxy1 (RTP media of the proxy)"), (20101, "tcp", "nethvoice-proxy1 (its TCP ports)"),
    (20024, "tcp", "nethvoice1 (its TCP ports)"), (20040, "udp", "nethvoice1 (its UDP ports)"),
    (20500, "udp", "nethvoice1 (Asterisk RTP media)"), (21500, "udp", "nethvoice1 (WebRTC media)"),
    (20025, "udp", "nethvoice1 (Asterisk SIP)"), (30005, "udp", "the firewall's service custom1"),
    (8443, "tcp", "a port open in the firewall"),
])
def test_a_port_someone_holds_is_refused_naming_the_holder(port, protocol, holder):
    with pytest.raises(InvalidValue) as err:
        guards.check_forward_port(port, protocol, HOLDERS)
    assert err.value.reason == "in_use"
    assert str(err.value).startswith(f"port {port}/{protocol} is used by {holder}")


def test_the_admin_port_message():
    with pytest.raises(InvalidValue, match=r"^port 443/tcp is used by traefik \(cluster-admin\): forwarding it "
                                           r"would lock the admin out$"):
        guards.check_forward_port(443, "tcp", guards.port_holders())


@pytest.mark.parametrize("port, protocol, expected", [
    (5061, "tcp", "sips_not_supported"), (5061, "udp", "sips_not_supported"), (6060, "udp", "reserved_by_proxy"),
    (6061, "tcp", "reserved_by_proxy"), (0, "udp", "invalid_port"), (65536, "udp", "invalid_port"),
    ("5060", "udp", "invalid_port"), (True, "udp", "invalid_port"), (5060.0, "udp", "invalid_port"),
])
def test_ports_the_proxy_keeps_or_that_are_no_ports(port, protocol, expected):
    assert reason(guards.check_forward_port, port, protocol, HOLDERS) == expected


def test_5060_is_always_allowed_and_free_ports_are_allowed():
    assert guards.check_forward_port(5060, "udp", HOLDERS + guards.port_holders(
        open_ports=[{"port": "5060", "protocol": "udp", "owner": "service nethvoice-proxy1"}])) is None
    assert guards.check_forward_port(443, "udp", HOLDERS) is None  # traefik holds 443/tcp only
    assert guards.check_forward_port(5080, "udp", HOLDERS) is None
    assert guards.check_forward_port(22024, "udp", HOLDERS) is None


def test_the_proxys_fixed_ports_are_listed_and_refused_by_their_own_reasons():
    held = {(h.protocol, h.first) for h in HOLDERS if h.holder.startswith("nethvoice-proxy1")}
    assert {("tcp", 5061), ("udp", 6060), ("tcp", 6060), ("tcp", 6061), ("udp", 5070)} <= held
    assert reason(guards.check_forward_port, 6060, "udp", HOLDERS) == "reserved_by_proxy"


def test_holders_skip_what_does_not_parse():
    holders = guards.port_holders(open_ports=[{"port": "http", "protocol": "tcp"}, {"port": "99", "protocol": "sctp"}],
                                  modules={"m1": {"TCP_PORT": "", "RTP_PORT_MIN": "5", "RTP_PORT_MAX": "x"}, "m2": None},
                                  proxy_srv={"udp": None, "tcp": {"port": "none"}}, vpn_ports=[None, 0])
    assert holders == guards.port_holders()


@given(st.one_of(st.integers(-5, 70000), st.none(), st.text(max_size=5), st.floats(), st.booleans()),
       st.sampled_from(["udp", "tcp", "sctp", ""]))
def test_check_forward_port_answers_none_or_invalid_value(port, protocol):
    try:
        assert guards.check_forward_port(port, protocol, HOLDERS) is None
    except InvalidValue as err:
        assert err.reason in PORT_REASONS


class Node:
    """A stand-in for the cluster Redis: the hash node/<id>/vpn as the core writes it."""

    def __init__(self, vpn):
        self.vpn = vpn

    def hget(self, key, field):
        return self.vpn.get(field) if key == "node/1/vpn" else None


@pytest.mark.parametrize("endpoint, expected", [
    ("node1.example.org:55820", 55820), ("[2001:db8::1]:51820", 51820), ("node1.example.org", None),
    ("node1:0", None), ("node1:70000", None), (None, None)])
def test_vpn_endpoint_port(endpoint, expected):
    vpn = {"ip_address": "10.5.4.1", "public_key": "k", "destinations": ""}
    if endpoint is not None:
        vpn["endpoint"] = endpoint
    assert cluster.vpn_endpoint_port(1, Node(vpn)) == expected


# --- domain aliases ---------------------------------------------------------------------

# gojsonschema 1.2.0 format_checkers.go rxHostname: the hostname the agent's engine accepts
GO_HOSTNAME = re.compile(r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])"
                         r"(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9]))*$")


@pytest.mark.parametrize("text, expected", [
    ("PBX.customer.example.", "pbx.customer.example"), ("pbx", "pbx"), ("a.b-c.d0", "a.b-c.d0"),
    ("Bücher.EXAMPLE", "xn--bcher-kva.example"), ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("bücher。example。", "xn--bcher-kva.example"),  # UTS 46 maps the ideographic full stop
    ("ｅｘａｍｐｌｅ.org", "example.org"), ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008: ß stays
    ("ab--cd.example", "ab--cd.example"), ("198.51.100.20", "198.51.100.20"), ("198.51.100.20.", "198.51.100.20"),
    ("1x.example", "1x.example"), ("a" * 63 + ".example", "a" * 63 + ".example"),
    (".".join(["a" * 63] * 3) + "." + "b" * 61, ".".join(["a" * 63] * 3) + "." + "b" * 61),  # 253
])
def test_domains_accepted(text, expected):
    assert guards.check_domain(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("", "format"), (".", "format"), ("  ", "format"), (None, "format"), (42, "format"),
    ("1.2.3", "format"), ("192.000.002.001", "format"), ("999.1.1.1", "format"),
    ("2001:db8::1", "ipv6_literal"), ("[2001:db8::1]", "ipv6_literal"), ("fe80::1%eth0", "ipv6_literal"),
    ("a'b.example", "invalid_character"), ("x'); DROP TABLE domain; --", "invalid_character"),
    ("a b.example", "invalid_character"), ("a_b.example", "invalid_character"), ('a"b', "invalid_character"),
    ("a\\b", "invalid_character"), ("a\x00b", "invalid_character"), ("[192.0.2.1]", "invalid_character"),
    ("pbx.example:5060", "invalid_character"), ("sip:pbx.example", "invalid_character"),
    ("a..b", "empty_label"), (".a", "empty_label"), ("a.b..", "empty_label"),
    ("-a.b", "label_hyphen"), ("a-.b", "label_hyphen"), ("a.-", "label_hyphen"), ("-ü.de", "label_hyphen"),
    ("a" * 64 + ".example", "label_too_long"), ("ü" * 60 + ".de", "label_too_long"),
    (".".join(["a" * 63] * 4), "too_long"), (".".join(["a" * 63] * 3) + "." + "b" * 62, "too_long"),
    ("xn--zz.example", "idn"), ("xn--a.example", "idn"), ("xn--.example", "label_hyphen"), ("xn--a-ecp.example", "idn"),
    ("☃\u200d.example", "idn"), ("a\u00a0b.example", "idn"), ("\u0660\u06f0.example", "idn"),
])
def test_domains_refused(text, expected):
    assert reason(guards.check_domain, text) == expected


domain_alphabet = st.sampled_from(list("abcXYZ019-.") + list("üßéçøåπяж中日한") + ["\u3002", "_", " ", "'"])
domain_texts = st.one_of(st.text(domain_alphabet, max_size=80), st.text(max_size=40),
                         st.lists(st.text(domain_alphabet, min_size=1, max_size=64), min_size=1,
                                  max_size=6).map(".".join))


@given(domain_texts)
def test_check_domain_answers_a_safe_canonical_name_or_invalid_value(text):
    try:
        name = guards.check_domain(text)
    except InvalidValue as err:
        assert err.reason in DOMAIN_REASONS
        return
    assert guards.check_domain(name) == name
    assert GO_HOSTNAME.match(name) and len(name) <= 253 and name == name.lower()  # and < 256, as gojsonschema
    assert re.fullmatch(r"[a-z0-9.-]+", name)  # safe in the proxy's SQL literals, matched as text by Kamailio


# --- all of them --------------------------------------------------------------------------

garbage = st.one_of(st.binary(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
                    st.text(st.characters(codec=None, categories=None), max_size=40), st.integers(), st.floats(),
                    st.none(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers()))


@given(garbage)
def test_garbage_is_refused_with_invalid_value_and_nothing_else(value):
    for check in (guards.check_source, guards.check_domain, guards.check_external_address, guards.check_local_network):
        try:
            check(value)
        except InvalidValue:
            pass
