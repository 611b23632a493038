# SPDX-License-Identifier: GPL-3.0-or-later
"""Test helpers for packet captures: a classic BPF interpreter and packet builders.

The interpreter follows the kernel's classic BPF (net/core/filter.c): A and X are
u32, a load past the end of the packet ends the program with 0, loads at
SKF_AD_OFF + n give the packet's metadata, jumps go forward only, and a program the
kernel's checker (bpf_check_classic) would refuse raises AssertionError.
"""

import ipaddress
import struct

from hypothesis import strategies as st

SKF_AD_OFF = 0x100000000 - 0x1000
ANCILLARY = {0: "protocol", 4: "pkttype", 8: "ifindex"}
SIZES = {0x00: 4, 0x08: 2, 0x10: 1}


class _Rejected(Exception):
    pass


def check(program):
    """What bpf_check_classic refuses: empty, too long, a jump out of the program, a
    last instruction that is not a return, memory read before any store on some path
    (checked here along straight-line order, which is what our programs use)."""
    assert 0 < len(program) <= 4096, len(program)
    assert program[-1].code & 0x07 == 0x06, "the last instruction must return"
    stored = set()
    for pc, insn in enumerate(program):
        cls = insn.code & 0x07
        if cls == 0x05:
            targets = [insn.k] if insn.code == 0x05 else [insn.jt, insn.jf]
            assert all(pc + 1 + t < len(program) for t in targets), f"jump out of the program at {pc}"
        if cls in (0x02, 0x03):
            stored.add(insn.k)
        if insn.code in (0x60, 0x61):
            assert insn.k in stored, f"M[{insn.k}] read at {pc} before any store"


def run(program, packet, *, protocol, pkttype=0, ifindex=2):
    """The program's return value for packet (bytes from the network header)."""
    meta = {"protocol": protocol, "pkttype": pkttype, "ifindex": ifindex}
    try:
        return _run(program, packet, meta)
    except _Rejected:
        return 0


def _load(packet, offset, size):
    if offset + size > len(packet):
        raise _Rejected
    return int.from_bytes(packet[offset:offset + size], "big")


def _run(program, packet, meta):
    a = x = 0
    memory = {}
    pc = 0
    while True:
        insn = program[pc]
        pc += 1
        code, k, cls = insn.code, insn.k, insn.code & 0x07
        mode, size = code & 0xE0, SIZES.get(code & 0x18)
        if cls == 0x00:  # LD
            if mode == 0x20 and k >= SKF_AD_OFF:
                a = meta[ANCILLARY[k - SKF_AD_OFF]]
            elif mode in (0x20, 0x40):
                a = _load(packet, (k + (x if mode == 0x40 else 0)) & 0xFFFFFFFF, size)
            else:
                a = {0x00: k, 0x60: memory.get(k), 0x80: len(packet)}[mode]
        elif cls == 0x01:  # LDX
            if mode == 0xA0:
                x = 4 * (_load(packet, k, 1) & 0x0F)
            else:
                x = {0x00: k, 0x60: memory.get(k), 0x80: len(packet)}[mode]
        elif cls in (0x02, 0x03):
            memory[k] = a if cls == 0x02 else x
        elif cls == 0x04:
            a = _alu(code & 0xF0, a, x if code & 0x08 else k)
        elif cls == 0x05:
            pc += _jump(code & 0xF0, insn, a, x if code & 0x08 else k)
        elif cls == 0x06:
            return {0x00: k, 0x10: a}[code & 0x18]
        elif cls == 0x07:
            if code & 0xF8 == 0x80:
                a = x
            else:
                x = a
        assert a is not None and x is not None, "read of scratch memory never stored"


def _alu(op, a, operand):
    result = {0x00: a + operand, 0x10: a - operand, 0x20: a * operand, 0x40: a | operand,
              0x50: a & operand, 0x60: a << operand if operand < 32 else 0,
              0x70: a >> operand if operand < 32 else 0, 0xA0: a ^ operand}[op]
    return result & 0xFFFFFFFF


def _jump(op, insn, a, operand):
    if op == 0x00:
        return insn.k
    taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand, 0x40: a & operand != 0}[op]
    return insn.jt if taken else insn.jf


# -- packets, from the IP header on (what an AF_PACKET SOCK_DGRAM socket reads) ------

def udp(sport, dport, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, flags=0x02, payload=b""):
    """flags: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


def icmp(kind, code, quoted):
    return struct.pack("!BBHI", kind, code, 0, 0) + quoted


def ipv4(protocol, payload, src="192.0.2.10", dst="192.0.2.1", *, ihl=5, options=None,
         offset=0, more=False, total=None):
    """An IPv4 packet; ihl below 5 writes that nibble over a 20-byte header."""
    if options is None:
        options = bytes(max(0, ihl * 4 - 20))
    header_length = 20 + len(options)
    flags = (0x2000 if more else 0) | offset
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total or header_length + len(payload), 0x1234,
                         flags, 64, protocol, 0, ipaddress.IPv4Address(src).packed,
                         ipaddress.IPv4Address(dst).packed)
    return header + options + payload


def ipv6(next_header, payload, src="2001:db8::10", dst="2001:db8::1", *, fragment=None, hop_by_hop=False):
    """An IPv6 packet; fragment = (offset in 8-byte units, more) adds a Fragment header."""
    if fragment is not None:
        offset, more = fragment
        payload = struct.pack("!BBHI", next_header, 0, (offset << 3) | int(more), 7) + payload
        next_header = 44
    if hop_by_hop:
        payload = struct.pack("!BB6s", next_header, 0, bytes(6)) + payload
        next_header = 0
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + payload


# -- random packets, near the ports and addresses a trunk's spec names ---------------

ADDRESSES = {4: ["192.0.2.10", "192.0.2.11", "192.0.2.1", "192.0.2.200", "198.51.100.7", "198.51.100.130",
                 "127.0.0.1"],
             6: ["2001:db8::10", "2001:db8::11", "2001:db8::1", "2001:db8::8000:0:0:10", "2001:db8:1::10",
                 "2001:db8:1:8000::1", "fe80::1"]}
PORTS = [5060, 5061, 5062, 6060, 5059, 10000, 15000, 20000, 0, 65535]
port = st.one_of(st.sampled_from(PORTS), st.sampled_from(PORTS[:4]), st.integers(0, 65535))


def mostly(usual, *rare):
    """usual 3 times in 4, else one of rare: random packets should often be near a match."""
    return st.sampled_from([usual] * 3 * len(rare) + list(rare))


@st.composite
def ip_packets(draw, family, quoted=False):
    """An IPv4 or IPv6 packet: UDP, TCP, ICMP quoting another packet, or other."""
    kind = draw(mostly("udp", "tcp", "other") if quoted else st.sampled_from(["udp", "tcp", "icmp", "other"]))
    if kind == "udp":
        body, proto = udp(draw(port), draw(port), draw(st.binary(max_size=8))), 17
    elif kind == "tcp":
        body, proto = tcp(draw(port), draw(port), draw(st.integers(0, 0xFF))), 6
    elif kind == "icmp":
        inner = draw(ip_packets(family, quoted=True))
        inner = inner[:draw(st.integers(0, len(inner)))] if draw(mostly(False, True)) else inner
        kinds = [3, 1, 8, 11] if family == 4 else [1, 2, 128, 3]
        body = icmp(draw(mostly(kinds[0], *kinds[1:])), draw(mostly(3 if family == 4 else 4, 0, 1, 13)), inner)
        proto = 1 if family == 4 else 58
    else:
        body, proto = draw(st.binary(max_size=24)), draw(st.sampled_from([0, 1, 6, 17, 47, 58, 132]))
    src, dst = draw(st.sampled_from(ADDRESSES[family])), draw(st.sampled_from(ADDRESSES[family]))
    if family == 4:
        ihl = draw(mostly(5, 6, 9, 15, 0, 4))
        options = draw(st.binary(min_size=max(0, ihl * 4 - 20), max_size=max(0, ihl * 4 - 20)))
        offset = draw(mostly(0, 1, 185, 0x1000, 0x1FFF))
        return ipv4(proto, body, src, dst, ihl=ihl, options=options, offset=offset, more=draw(st.booleans()))
    fragment = draw(mostly(None, (0, True), (0, False), (1, True), (4096, True), (8191, False)))
    return ipv6(proto, body, src, dst, fragment=fragment, hop_by_hop=draw(mostly(False, True)))


IP, IPV6 = 0x0800, 0x86DD


@st.composite
def frames(draw):
    """(packet, protocol, pkttype, ifindex); sometimes cut short or of another protocol."""
    protocol = draw(st.sampled_from([IP, IP, IPV6, IPV6, 0x0806]))
    if protocol == 0x0806:
        packet = draw(st.binary(max_size=60))
    else:
        packet = draw(ip_packets(4 if protocol == IP else 6))
        if draw(mostly(False, True)):
            packet = packet[:draw(st.integers(0, len(packet)))]
        if draw(st.integers(0, 19)) == 0:
            protocol = IPV6 if protocol == IP else IP  # bytes that do not fit the header
    return packet, protocol, draw(mostly(0, 4, 1, 3)), draw(st.sampled_from([1, 2, 2, 7]))
