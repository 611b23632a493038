# SPDX-License-Identifier: GPL-3.0-or-later
"""Captured packets decoded into who sent what to which port, and what an ICMP error
says about the datagram it answers."""

import pytest
from bpfkit import frames, icmp, ipv4, ipv6, run, tcp, udp
from hypothesis import given, settings
from hypothesis import strategies as st
from nethvoice_bypass.bpf import CaptureSpec, program
from nethvoice_bypass.packets import Captured, Icmp, Packet, Quoted, decode

pytestmark = pytest.mark.unit

IP, IPV6 = 0x0800, 0x86DD
OPTIONS = b"OPTIONS sip:192.0.2.1 SIP/2.0\r\n\r\n"


def test_a_sip_datagram():
    packet = ipv4(17, udp(40000, 5060, OPTIONS), ihl=6)
    assert decode(packet, IP) == Packet(4, "192.0.2.10", "192.0.2.1", "udp", 40000, 5060, len(packet),
                                        payload=OPTIONS)
    assert decode(packet).to_json()["payload_length"] == len(OPTIONS)  # the family from the version nibble


def test_tcp_flags_tell_a_syn_from_a_refusal():
    assert decode(ipv4(6, tcp(40000, 5060, 0x02)), IP).tcp_flags == ("SYN",)
    refused = decode(ipv4(6, tcp(5060, 40000, 0x14), src="192.0.2.1", dst="192.0.2.10"), IP)
    assert (refused.tcp_flags, refused.sport, refused.dst) == (("RST", "ACK"), 5060, "192.0.2.10")
    assert decode(ipv6(6, tcp(40000, 5061, 0x12)), IPV6).tcp_flags == ("SYN", "ACK")


@pytest.mark.parametrize("family, kind, code, reason", [
    (4, 3, 3, "port"), (4, 3, 13, "prohibited"), (4, 3, 1, "host"), (4, 3, 99, "code 99"),
    (6, 1, 4, "port"), (6, 1, 1, "prohibited"), (6, 1, 3, "address")])
def test_an_unreachable_names_the_closed_port(family, kind, code, reason):
    if family == 4:
        quoted = ipv4(17, udp(40000, 5062, OPTIONS), src="192.0.2.10", dst="192.0.2.1", ihl=7)
        packet = ipv4(1, icmp(kind, code, quoted[:28 + 8]), src="192.0.2.1", dst="192.0.2.10")
    else:
        quoted = ipv6(17, udp(40000, 5062, OPTIONS), src="2001:db8::10", dst="2001:db8::1")
        packet = ipv6(58, icmp(kind, code, quoted), src="2001:db8::1", dst="2001:db8::10")
    decoded = decode(packet)
    assert decoded.protocol == ("icmp" if family == 4 else "icmpv6")
    src, dst = ("192.0.2.10", "192.0.2.1") if family == 4 else ("2001:db8::10", "2001:db8::1")
    assert decoded.icmp == Icmp(kind, code, reason, Quoted("udp", src, dst, 40000, 5062))
    assert decoded.to_json()["icmp"]["quoted"]["dport"] == 5062


def test_what_cannot_be_read_is_left_empty():
    later = decode(ipv4(17, udp(40000, 5060), offset=185), IP)
    assert (later.fragment, later.sport, later.dport) == (True, None, None)
    first = decode(ipv4(17, udp(40000, 5060), more=True), IP)
    assert (first.fragment, first.dport) == (True, 5060)
    walked = decode(ipv6(17, udp(40000, 5060), fragment=(0, True), hop_by_hop=True), IPV6)
    assert (walked.protocol, walked.dport, walked.fragment) == ("udp", 5060, True)
    cut = decode(ipv4(17, udp(40000, 5060))[:22], IP)
    assert (cut.protocol, cut.dport, cut.length) == ("udp", None, 28)
    assert decode(ipv4(1, icmp(8, 0, b"ping")), IP).icmp == Icmp(8, 0, None, None)
    assert decode(ipv4(1, icmp(3, 3, b"short")), IP).icmp == Icmp(3, 3, "port", None)
    assert decode(bytes.fromhex("0001080006040001"), 0x0806) is None
    assert decode(b"", None) is None and decode(ipv4(17, b"")[:19], IP) is None


def test_a_record_carries_its_metadata():
    record = Captured(1767225600.5, "eth0", 2, 1, "outgoing", IP, bytes(6), ipv4(17, udp(5060, 40000)))
    assert record.decoded().sport == 5060
    assert record.to_json()["pkttype"] == "outgoing" and record.to_json()["packet"].startswith("4500")


@settings(max_examples=200, deadline=None)
@given(st.lists(frames(), min_size=10, max_size=30))
def test_what_the_filter_keeps_decodes_to_a_port_of_the_spec(batch):
    """The filter and the decoder read the same headers: the integration tests rely on
    the decoder to say that nothing outside the spec was returned."""
    spec = CaptureSpec.of({5060, 5061, 6060}, direction="either")
    code = program(spec)
    for packet, protocol, pkttype, ifindex in batch:
        decoded = decode(packet, protocol)  # never raises, whatever the bytes
        if not run(code, packet, protocol=protocol, pkttype=pkttype, ifindex=ifindex):
            continue
        about = decoded.icmp.quoted if decoded.icmp else decoded
        assert about.protocol in ("udp", "tcp")
        assert about.dport in (5060, 5061, 6060) or about.sport in (5060, 5061, 6060)
