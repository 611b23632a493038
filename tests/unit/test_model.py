import ipaddress

import pytest
from firewall.core.rich import Rich_Rule  # Debian's python3-firewall: firewalld's own parser
from hypothesis import given
from hypothesis import strategies as st
from nethvoice_bypass.model import (
    ForwardRule,
    InvalidValue,
    canonical_source,
    forward_id,
    parse_rich_rule,
)

pytestmark = pytest.mark.unit

ports = st.integers(min_value=1, max_value=65535)


@st.composite
def sources(draw, family):
    if family == "ipv4":
        net = draw(st.builds(ipaddress.IPv4Network, st.tuples(
            st.integers(0, 2**32 - 1), st.integers(8, 32)), strict=st.just(False)))
    else:
        net = draw(st.builds(ipaddress.IPv6Network, st.tuples(
            st.integers(0, 2**128 - 1), st.integers(16, 128)), strict=st.just(False)))
    return draw(st.one_of(st.none(), st.just(canonical_source(str(net)))))


@st.composite
def rules(draw):
    family = draw(st.sampled_from(["ipv4", "ipv6"]))
    return ForwardRule(
        family=family,
        protocol=draw(st.sampled_from(["udp", "tcp"])),
        port=draw(ports),
        to_port=draw(ports),
        source=draw(sources(family)),
        priority=draw(st.integers(-32768, 32767)),
    )


@given(rules())
def test_rendered_text_is_firewalld_canonical_form(rule):
    text = rule.to_rich_rule()
    parsed = Rich_Rule(rule_str=text)
    parsed.check()
    assert str(parsed) == text


@given(rules())
def test_parse_round_trips(rule):
    assert parse_rich_rule(rule.to_rich_rule()) == rule


@given(rules())
def test_parse_accepts_firewalld_normalisation_of_other_spellings(rule):
    # unquoted, elements reordered: firewalld treats it as the same rule
    loose = (f"rule family={rule.family} forward-port to-port={rule.to_port} "
             f"protocol={rule.protocol} port={rule.port}")
    if rule.source:
        loose += f" source address={rule.source}"
    if rule.priority:
        loose = loose.replace("rule ", f"rule priority={rule.priority} ", 1)
    assert parse_rich_rule(str(Rich_Rule(rule_str=loose))) == rule


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.10", "192.0.2.10"),
    ("192.0.2.10/32", "192.0.2.10"),
    (" 192.0.2.0/24 ", "192.0.2.0/24"),
    ("2001:DB8::A", "2001:db8::a"),
    ("2001:db8:0:0::a/128", "2001:db8::a"),
    ("2001:db8::/32", "2001:db8::/32"),
])
def test_canonical_source(text, expected):
    assert canonical_source(text) == expected


@pytest.mark.parametrize("text, family, reason", [
    ("192.0.2.10/24", None, "host_bits_set"),
    ("2001:db8::1/64", None, "host_bits_set"),
    ("192.0.2.300", None, "format"),
    ("192.0.02.1", None, "format"),
    ("example.org", None, "format"),
    ("fe80::1%eth0", None, "scoped"),
    ("192.0.2.10", "ipv6", "wrong_family"),
    ("2001:db8::1", "ipv4", "wrong_family"),
])
def test_canonical_source_refuses(text, family, reason):
    with pytest.raises(InvalidValue) as err:
        canonical_source(text, family)
    assert err.value.reason == reason


def test_rule_refuses_non_canonical_or_mismatched_values():
    with pytest.raises(InvalidValue):
        ForwardRule("ipv4", "udp", 5060, 20040, source="192.0.2.10/32")
    with pytest.raises(InvalidValue):
        ForwardRule("ipv6", "udp", 5060, 20040, source="192.0.2.10")
    with pytest.raises(InvalidValue):
        ForwardRule("ipv4", "sctp", 5060, 20040)
    with pytest.raises(InvalidValue):
        ForwardRule("ipv4", "udp", 0, 20040)


@pytest.mark.parametrize("text", [
    'rule family="ipv4" source NOT address="192.0.2.10" forward-port port="5060" protocol="udp" to-port="1"',
    'rule family="ipv4" forward-port port="5060" protocol="udp" to-port="1" to-addr="192.0.2.2"',
    'rule family="ipv4" destination address="192.0.2.1" forward-port port="5060" protocol="udp" to-port="1"',
    'rule family="ipv4" forward-port port="5060-5061" protocol="tcp" to-port="1"',
    'rule family="ipv4" source address="192.0.2.10" accept',
    'rule service name="ssh" accept',
    'not a rule',
    'rule family="ipv4" forward-port port="5060" protocol="udp" to-port="1" log',
])
def test_parse_treats_other_rules_as_foreign(text):
    assert parse_rich_rule(text) is None


def test_proxy_lan_rule_parses_with_priority_zero():
    rule = parse_rich_rule("rule family=ipv4 source address=192.0.2.0/24 forward-port port=5060 "
                           "protocol=udp to-port=6060")
    assert rule == ForwardRule("ipv4", "udp", 5060, 6060, "192.0.2.0/24", priority=0)


def test_overlap():
    lan = ForwardRule("ipv4", "udp", 5060, 6060, "192.0.2.0/24", priority=0)
    mediant = ForwardRule("ipv4", "udp", 5060, 20040, "192.0.2.10")
    anywhere = ForwardRule("ipv4", "udp", 5060, 20040)
    elsewhere = ForwardRule("ipv4", "udp", 5060, 20040, "198.51.100.7")
    assert mediant.overlaps(lan) and anywhere.overlaps(lan)
    assert not elsewhere.overlaps(lan)
    assert not ForwardRule("ipv4", "tcp", 5060, 20024, "192.0.2.10").overlaps(lan)
    assert not ForwardRule("ipv6", "udp", 5060, 20040).overlaps(lan)


def test_forward_id_is_readable_and_path_safe():
    assert forward_id("ipv4", "udp", 5060, "192.0.2.10") == "udp-ipv4-5060-192.0.2.10"
    assert forward_id("ipv6", "tcp", 5060, None) == "tcp-ipv6-5060-any"
    assert forward_id("ipv4", "udp", 5060, "192.0.2.0/24") == "udp-ipv4-5060-192.0.2.0_24"
