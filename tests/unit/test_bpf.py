# SPDX-License-Identifier: GPL-3.0-or-later
"""The capture's BPF program against a reference predicate written from the spec's
words, on packets built with struct: hand-picked cases, then thousands of random ones."""

import ipaddress
import shutil
import struct
import subprocess

import pytest
from bpfkit import PORTS, check, frames, icmp, ipv4, ipv6, mostly, run, tcp, udp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nethvoice_bypass.bpf import CaptureSpec, program
from nethvoice_bypass.errors import InvalidValue
from nethvoice_bypass.packets import Captured
from nethvoice_bypass.pcap import pcap_file

pytestmark = pytest.mark.unit

IP, IPV6 = 0x0800, 0x86DD
SIP = CaptureSpec.of({5060, 5061, 6060})


# -- the reference: what the spec says, parsed with struct ---------------------------

def reference(spec, packet, protocol, pkttype=0, ifindex=2):
    """True when the spec says the packet is kept."""
    if not spec.loopback_outgoing and ifindex == 1 and pkttype == 4:
        return False
    if protocol == IP and 4 in spec.captured_families():
        return reference_ipv4(spec, packet)
    if protocol == IPV6 and 6 in spec.captured_families():
        return reference_ipv6(spec, packet)
    return False


def datagram(spec, family, src, dst, ports):
    """ports: the transport header's first 4 bytes or fewer."""
    if len(ports) < 4:
        return False
    sport, dport = struct.unpack("!HH", ports[:4])
    nets = spec.networks(family)

    def wanted(port, address):
        in_ports = any(low <= port <= high for low, high in spec.ports)
        return in_ports and (nets is None or any(ipaddress.ip_address(address) in n for n in nets))
    by_dst, by_src = wanted(dport, src), wanted(sport, dst)
    return {"dst": by_dst, "src": by_src, "either": by_dst or by_src}[spec.direction]


def ipv4_header(packet):
    """(header length, protocol, src, dst) of a first fragment with IHL >= 5, else None."""
    if len(packet) < 20 or struct.unpack("!H", packet[6:8])[0] & 0x1FFF or packet[0] & 0x0F < 5:
        return None
    return 4 * (packet[0] & 0x0F), packet[9], packet[12:16], packet[16:20]


def protocol_names(spec):
    return {{"udp": 17, "tcp": 6}[p] for p in spec.protocols}


def reference_ipv4(spec, packet):
    header = ipv4_header(packet)
    if header is None:
        return False
    length, proto, src, dst = header
    body = packet[length:]
    if proto in protocol_names(spec):
        return datagram(spec, 4, bytes(src), bytes(dst), body)
    if proto != 1 or spec.unreachable == "none" or len(body) < 2 or body[0] != 3:
        return False
    if spec.unreachable == "port" and body[1] != 3:
        return False
    quoted = ipv4_header(body[8:])
    if quoted is None or quoted[1] not in protocol_names(spec):
        return False
    return datagram(spec, 4, bytes(quoted[2]), bytes(quoted[3]), body[8 + quoted[0]:])


def ipv6_transport(packet):
    """(next header, offset of the transport header) after at most one Fragment header
    with offset 0; None for a later fragment."""
    next_header, offset = packet[6], 40
    if next_header == 44:
        if len(packet) < 48 or struct.unpack("!H", packet[42:44])[0] & 0xFFF8:
            return None
        next_header, offset = packet[40], 48
    return next_header, offset


def reference_ipv6(spec, packet):
    if len(packet) < 40:
        return False
    found = ipv6_transport(packet)
    if found is None:
        return False
    proto, offset = found
    body = packet[offset:]
    if proto in protocol_names(spec):
        return datagram(spec, 6, packet[8:24], packet[24:40], body)
    if proto != 58 or spec.unreachable == "none" or len(body) < 2 or body[0] != 1:
        return False
    if spec.unreachable == "port" and body[1] != 4:
        return False
    quoted = body[8:]
    if len(quoted) < 40 or quoted[6] not in protocol_names(spec):
        return False
    return datagram(spec, 6, quoted[8:24], quoted[24:40], quoted[40:])


def kept(spec, packet, protocol, **meta):
    code = program(spec)
    check(code)
    verdict = run(code, packet, protocol=protocol, **meta)
    assert verdict in (0, spec.snaplen)
    return verdict != 0


# -- hand-picked cases ----------------------------------------------------------------

CASES = [  # (why, packet, protocol, kept by SIP)
    ("UDP SIP OPTIONS to 5060", ipv4(17, udp(5060, 5060, b"OPTIONS")), IP, True),
    ("to 6060, the proxy's LAN port", ipv4(17, udp(40000, 6060)), IP, True),
    ("RTP to 10000", ipv4(17, udp(10000, 10000)), IP, False),
    ("TCP SYN to 5061", ipv4(6, tcp(40000, 5061)), IP, True),
    ("an IPv4 header with options", ipv4(17, udp(40000, 5060), ihl=15), IP, True),
    ("options, RTP", ipv4(17, udp(5060, 12000), ihl=7), IP, False),
    ("a first fragment", ipv4(17, udp(40000, 5060, bytes(1400)), more=True), IP, True),
    ("a later fragment whose bytes look like port 5060", ipv4(17, udp(5060, 5060), offset=185), IP, False),
    ("IHL 4 is not an IPv4 header", ipv4(17, udp(5060, 5060), ihl=4), IP, False),
    ("cut inside the ports", ipv4(17, udp(40000, 5060))[:23], IP, False),
    ("SCTP to 5060", ipv4(132, udp(5060, 5060)), IP, False),
    ("GRE", ipv4(47, bytes(40)), IP, False),
    ("IPv6 UDP to 5060", ipv6(17, udp(40000, 5060)), IPV6, True),
    ("IPv6 TCP to 5061", ipv6(6, tcp(40000, 5061)), IPV6, True),
    ("IPv6 first fragment", ipv6(17, udp(40000, 5060), fragment=(0, True)), IPV6, True),
    ("IPv6 later fragment", ipv6(17, udp(40000, 5060), fragment=(100, False)), IPV6, False),
    ("IPv6 behind hop-by-hop: not walked", ipv6(17, udp(40000, 5060), hop_by_hop=True), IPV6, False),
    ("port unreachable quoting UDP 5060",
     ipv4(1, icmp(3, 3, ipv4(17, udp(40000, 5060), src="192.0.2.1", dst="192.0.2.10"))), IP, True),
    ("admin-prohibited quoting UDP 5061",
     ipv4(1, icmp(3, 13, ipv4(17, udp(40000, 5061)))), IP, True),
    ("port unreachable quoting RTP", ipv4(1, icmp(3, 3, ipv4(17, udp(5060, 12000)))), IP, False),
    ("port unreachable quoting a header with options",
     ipv4(1, icmp(3, 3, ipv4(17, udp(1, 5060), ihl=9)), ihl=6), IP, True),
    ("echo request", ipv4(1, icmp(8, 0, ipv4(17, udp(1, 5060)))), IP, False),
    ("quoted datagram cut before its ports", ipv4(1, icmp(3, 3, ipv4(17, udp(1, 5060))[:22])), IP, False),
    ("ICMPv6 port unreachable quoting 5060", ipv6(58, icmp(1, 4, ipv6(17, udp(1, 5060)))), IPV6, True),
    ("ICMPv6 packet too big", ipv6(58, icmp(2, 0, ipv6(17, udp(1, 5060)))), IPV6, False),
    ("ARP", bytes.fromhex("0001080006040001") + bytes(20), 0x0806, False),
    ("IPv4 bytes under the IPv6 protocol", ipv4(17, udp(1, 5060)), IPV6, False),
]


@pytest.mark.parametrize("why, packet, protocol, expected", CASES, ids=[c[0] for c in CASES])
def test_hand_picked_packets(why, packet, protocol, expected):
    assert reference(SIP, packet, protocol) == expected, "the reference disagrees with the case"
    assert kept(SIP, packet, protocol) == expected


def test_loopback_shows_each_packet_twice_and_the_outgoing_copy_is_dropped():
    packet = ipv4(17, udp(40000, 5060), src="127.0.0.1", dst="127.0.0.1")
    assert not kept(SIP, packet, IP, pkttype=4, ifindex=1)
    assert kept(SIP, packet, IP, pkttype=0, ifindex=1)
    assert kept(SIP, packet, IP, pkttype=4, ifindex=2)  # what the node sends on eth0
    everything = CaptureSpec.of({5060}, loopback_outgoing=True)
    assert kept(everything, packet, IP, pkttype=4, ifindex=1)


def test_peers_are_the_far_end():
    spec = CaptureSpec.of({5060}, peers=["192.0.2.10"], direction="either")
    assert kept(spec, ipv4(17, udp(40000, 5060), src="192.0.2.10"), IP)
    assert not kept(spec, ipv4(17, udp(40000, 5060), src="192.0.2.11"), IP)
    assert kept(spec, ipv4(17, udp(5060, 40000), src="192.0.2.1", dst="192.0.2.10"), IP)  # the reply
    assert not kept(spec, ipv6(17, udp(40000, 5060)), IPV6)  # no IPv6 peer: no IPv6 at all
    quoted = ipv4(17, udp(40000, 5060), src="192.0.2.10", dst="192.0.2.1", ihl=8)
    assert kept(spec, ipv4(1, icmp(3, 3, quoted), src="192.0.2.1", dst="192.0.2.10", ihl=6), IP)


def test_the_program_is_small():
    assert len(program(SIP)) < 80
    assert len(program(CaptureSpec.of({5060, 5061, 6060}, peers=["192.0.2.10", "2001:db8::/64"],
                                      direction="either"))) < 150
    biggest = CaptureSpec.of([(p, p + 1) for p in range(1000, 17000, 1000)], direction="either",
                             peers=[f"2001:db8::{i:x}:0/125" for i in range(8)])
    code = program(biggest)
    check(code)
    assert 255 < len(code) < 1024  # far jumps go through trampolines
    assert kept(biggest, ipv6(17, udp(1, 16001), src="2001:db8::7:3"), IPV6)
    assert kept(biggest, ipv6(58, icmp(1, 4, ipv6(17, udp(1, 16001), src="2001:db8::7:3"))), IPV6)
    assert not kept(biggest, ipv6(17, udp(1, 16001), src="2001:db8::8:3"), IPV6)


def test_specs_are_checked_and_normalized():
    spec = CaptureSpec.of([5061, "5062-5064", (6060, 6061), 5060], protocols=["udp"], peers=["192.0.2.10/32"])
    assert spec.ports == ((5060, 5064), (6060, 6061)) and spec.peers == ("192.0.2.10/32",)
    assert spec.to_json()["ports"] == [[5060, 5064], [6060, 6061]]
    for bad in ({"ports": [0]}, {"ports": ["5070-5060"]}, {"protocols": ["sctp"]}, {"peers": ["nope"]},
                {"direction": "up"}, {"unreachable": "some"}, {"families": [5]}, {"snaplen": 10},
                {"ports": list(range(1, 40, 2))}):
        with pytest.raises(InvalidValue):
            CaptureSpec.of(**{"ports": [5060], **bad})


# -- random packets against the reference ---------------------------------------------

PEERS = ["192.0.2.10", "192.0.2.0/24", "198.51.100.0/25", "0.0.0.0/0", "2001:db8::10", "2001:db8::/64",
         "2001:db8:1::/48", "::/0"]
specs = st.builds(
    lambda ports, ranges, protocols, peers, families, **kw: CaptureSpec.of(
        list(ports) + list(ranges) or [5060], protocols, peers=peers, families=families, **kw),
    st.lists(st.sampled_from(PORTS[:-2] + [1, 65535]), max_size=4),
    st.lists(st.sampled_from([(5060, 5062), (10000, 20000), (1, 65535), (6000, 6100)]), max_size=2),
    mostly(["udp", "tcp"], ["udp"], ["tcp"]),
    st.lists(st.sampled_from(PEERS), max_size=3, unique=True) | st.just([]),
    mostly([4, 6], [4], [6]),
    direction=st.sampled_from(["dst", "src", "either"]), unreachable=mostly("any", "port", "none"),
    loopback_outgoing=st.booleans())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs, st.lists(frames(), min_size=20, max_size=40))
def test_random_packets_against_the_reference(spec, batch):
    code = program(spec)
    check(code)
    for packet, protocol, pkttype, ifindex in batch:
        verdict = run(code, packet, protocol=protocol, pkttype=pkttype, ifindex=ifindex)
        assert (verdict != 0) == reference(spec, packet, protocol, pkttype, ifindex), (packet.hex(), protocol)
        assert verdict in (0, spec.snaplen)


TRUNK = CaptureSpec.of({5060, 5061, 6060}, direction="either", peers=["192.0.2.0/24", "2001:db8::/64"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=20, max_size=40))
def test_random_packets_against_a_trunks_spec(batch):
    """A spec near the packets' ports and addresses: about one packet in ten is kept."""
    code = program(TRUNK)
    for packet, protocol, pkttype, ifindex in batch:
        verdict = run(code, packet, protocol=protocol, pkttype=pkttype, ifindex=ifindex)
        assert (verdict != 0) == reference(TRUNK, packet, protocol, pkttype, ifindex), (packet.hex(), protocol)


# -- the pcap export -------------------------------------------------------------------

def read_pcap(data):
    """A reader written from pcap-savefile(5): (linktype, snaplen, [(time, wire length, bytes)])."""
    magic = data[:4]
    order = {bytes.fromhex("d4c3b2a1"): "<", bytes.fromhex("a1b2c3d4"): ">"}[magic]
    major, minor, _, _, snaplen, linktype = struct.unpack(order + "HHiIII", data[4:24])
    assert (major, minor) == (2, 4)
    records, at = [], 24
    while at < len(data):
        seconds, micros, kept_length, wire_length = struct.unpack(order + "IIII", data[at:at + 16])
        assert micros < 1_000_000 and kept_length <= wire_length
        records.append((seconds + micros / 1e6, wire_length, data[at + 16:at + 16 + kept_length]))
        at += 16 + kept_length
    assert at == len(data), "a record runs past the end of the file"
    return linktype, snaplen, records


def captured(packet, time=1767225600.25, pkttype="host", protocol=IP):
    return Captured(time, "eth0", 2, 1, pkttype, protocol, bytes.fromhex("020000000010"), packet)


def test_pcap_raw_holds_the_ip_packets_with_their_times():
    options = captured(ipv4(17, udp(40000, 5060, b"OPTIONS sip:192.0.2.1 SIP/2.0\r\n")), time=1767225600.000001)
    cut = captured(ipv4(17, udp(40000, 5060, bytes(1000)))[:300], time=1767225601.5)
    syn6 = captured(ipv6(6, tcp(40000, 5060)), time=1767225602.999999, protocol=IPV6)
    exported = pcap_file([options, cut, syn6])
    assert (exported.packets, exported.omitted) == (3, 0)
    linktype, snaplen, records = read_pcap(exported.data)
    assert linktype == 101 and snaplen == 262144
    assert [r[2] for r in records] == [options.packet, cut.packet, syn6.packet]
    assert [r[1] for r in records] == [len(options.packet), 1028, len(syn6.packet)]  # the IP length
    assert [r[0] for r in records] == pytest.approx([1767225600.000001, 1767225601.5, 1767225602.999999], abs=1e-6)
    assert exported.to_json()["packets"] == 3


def test_pcap_sll2_says_which_way_a_packet_went():
    reply = captured(ipv4(17, udp(5060, 40000), src="192.0.2.1", dst="192.0.2.10"), pkttype="outgoing")
    linktype, _, records = read_pcap(pcap_file([reply], linktype="sll2").data)
    assert linktype == 276
    header, packet = records[0][2][:20], records[0][2][20:]
    protocol, reserved, ifindex, hatype, pkttype, address_length = struct.unpack("!HHIHBB", header[:12])
    assert (protocol, reserved, ifindex, hatype, pkttype, address_length) == (IP, 0, 2, 1, 4, 6)
    assert header[12:18] == bytes.fromhex("020000000010") and packet == reply.packet
    assert records[0][1] == 20 + len(reply.packet)


def test_pcap_is_bounded_and_keeps_the_start_of_the_window():
    many = [captured(ipv4(17, udp(40000, 5060, bytes(100))), time=1767225600 + i) for i in range(50)]
    exported = pcap_file(many, max_bytes=24 + 5 * (16 + 128) + 10)
    assert (exported.packets, exported.omitted) == (5, 45)
    assert len(exported.data) <= 24 + 5 * 144 + 10
    assert [r[0] for r in read_pcap(exported.data)[2]] == [1767225600 + i for i in range(5)]
    with pytest.raises(ValueError):
        pcap_file(many, linktype="ethernet")


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is not installed (optional)")
def test_pcap_opens_in_tshark(tmp_path):
    records = [captured(ipv4(17, udp(40000, 5060, b"OPTIONS sip:192.0.2.1 SIP/2.0\r\nCall-ID: x\r\n\r\n"))),
               captured(ipv6(6, tcp(40000, 5061)), protocol=IPV6),
               captured(ipv4(1, icmp(3, 3, ipv4(17, udp(5060, 5062), src="192.0.2.1", dst="192.0.2.10"))),
                        pkttype="outgoing")]
    for linktype in ("raw", "sll2"):
        path = tmp_path / f"{linktype}.pcap"
        path.write_bytes(pcap_file(records, linktype=linktype).data)
        fields = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "ip.dst", "-e", "ipv6.dst",
                                 "-e", "udp.dstport", "-e", "tcp.dstport", "-e", "icmp.code"],
                                capture_output=True, text=True, check=True).stdout.splitlines()
        assert [f.split("\t") for f in fields] == [
            ["192.0.2.1", "", "5060", "", ""], ["", "2001:db8::1", "", "5061", ""],
            ["192.0.2.1,192.0.2.10", "", "5062", "", "3"]], linktype
    directions = subprocess.run(["tshark", "-r", str(tmp_path / "sll2.pcap"), "-T", "fields", "-e", "sll.pkttype"],
                                capture_output=True, text=True, check=True).stdout.split()
    assert directions == ["0", "0", "4"]  # host, host, outgoing
