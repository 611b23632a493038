# SPDX-License-Identifier: GPL-3.0-or-later
"""Captured packets and what they say, as small frozen values (pure).

A capture keeps each packet as the kernel gave it to an AF_PACKET SOCK_DGRAM socket:
the bytes from the IP header on, with the metadata of its sockaddr_ll. decode() reads
who sent what to which port; for an ICMP destination unreachable, the quoted header
of the datagram it answers, which names the port nothing listens on (or that a
firewall refused).
"""

import ipaddress
import struct
from dataclasses import dataclass

# linux/if_packet.h: sockaddr_ll.sll_pkttype
PKTTYPES = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "outgoing"}
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
# RFC 792, 1122 and 1812 (type 3); RFC 4443 (type 1)
UNREACHABLE = {
    4: {0: "net", 1: "host", 2: "protocol", 3: "port", 4: "fragmentation-needed", 9: "prohibited",
        10: "prohibited", 13: "prohibited"},
    6: {0: "no-route", 1: "prohibited", 2: "beyond-scope", 3: "address", 4: "port", 5: "policy",
        6: "reject-route"},
}
UNREACHABLE_TYPE = {4: 3, 6: 1}
IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: length in 8-byte units


@dataclass(frozen=True)
class Captured:
    """One packet read by a capture: kernel receive time (s since the epoch), the
    interface and its link type (ARPHRD_*), the direction, skb->protocol (ethertype),
    the link-layer address of the sender and the bytes from the IP header on."""

    time: float
    ifname: str
    ifindex: int
    hatype: int
    pkttype: str
    protocol: int
    address: bytes
    packet: bytes

    def decoded(self):
        return decode(self.packet, self.protocol)

    def to_json(self):
        return {"time": self.time, "ifname": self.ifname, "ifindex": self.ifindex, "pkttype": self.pkttype,
                "protocol": self.protocol, "packet": self.packet.hex()}


@dataclass(frozen=True)
class Quoted:
    """The datagram an ICMP error answers, from the header it quotes."""

    protocol: str
    src: str
    dst: str
    sport: int | None
    dport: int | None

    def to_json(self):
        return {"protocol": self.protocol, "src": self.src, "dst": self.dst, "sport": self.sport,
                "dport": self.dport}


@dataclass(frozen=True)
class Icmp:
    """type, code; reason names a destination unreachable ("port", "prohibited", ...)."""

    type: int
    code: int
    reason: str | None
    quoted: Quoted | None

    def to_json(self):
        return {"type": self.type, "code": self.code, "reason": self.reason,
                "quoted": self.quoted.to_json() if self.quoted else None}


@dataclass(frozen=True)
class Packet:
    """An IP packet's addresses, transport and ports; length is the IP length on the
    wire (the capture may hold fewer bytes); tcp_flags only for TCP; icmp for ICMP."""

    family: int
    src: str
    dst: str
    protocol: str
    sport: int | None = None
    dport: int | None = None
    length: int = 0
    fragment: bool = False
    tcp_flags: tuple = ()
    icmp: Icmp | None = None
    payload: bytes = b""

    def to_json(self):
        return {"family": self.family, "src": self.src, "dst": self.dst, "protocol": self.protocol,
                "sport": self.sport, "dport": self.dport, "length": self.length, "fragment": self.fragment,
                "tcp_flags": list(self.tcp_flags), "icmp": self.icmp.to_json() if self.icmp else None,
                "payload_length": len(self.payload)}


@dataclass(frozen=True)
class _Header:
    family: int
    src: str
    dst: str
    number: int
    body: bytes  # from the transport header on, as captured
    length: int
    first: bool  # the first fragment (or not fragmented): the transport header is there
    fragment: bool


def _ipv4(packet):
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[0] & 0x0F < 5:
        return None
    length, flags = struct.unpack("!H2xH", packet[2:8])
    offset = flags & 0x1FFF
    return _Header(4, str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20])),
                   packet[9], packet[4 * (packet[0] & 0x0F):], length, offset == 0,
                   offset != 0 or bool(flags & 0x2000))


def _ipv6(packet):
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    number, at, first, fragment = packet[6], 40, True, False
    while number in IPV6_EXTENSIONS | {44} and len(packet) >= at + 8:
        if number == 44:  # RFC 8200 4.5: offset << 3 | res | M
            flags = struct.unpack("!H", packet[at + 2:at + 4])[0]
            first, fragment = flags & 0xFFF8 == 0, True
            number, at = packet[at], at + 8
        else:
            number, at = packet[at], at + 8 * (packet[at + 1] + 1)
    return _Header(6, str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40])),
                   number, packet[at:], 40 + struct.unpack("!H", packet[4:6])[0], first, fragment)


def _header(packet, family):
    return _ipv4(packet) if family == 4 else _ipv6(packet)


def _ports(header):
    if header.first and header.number in (6, 17) and len(header.body) >= 4:
        return struct.unpack("!HH", header.body[:4])
    return None, None


def _icmp(header):
    body = header.body
    if not header.first or len(body) < 2:
        return None
    kind, code = body[0], body[1]
    reason, quoted = None, None
    if kind == UNREACHABLE_TYPE[header.family]:
        reason = UNREACHABLE[header.family].get(code, f"code {code}")
        inner = _header(body[8:], header.family)
        if inner is not None:
            quoted = Quoted(PROTOCOLS.get(inner.number, str(inner.number)), inner.src, inner.dst, *_ports(inner))
    return Icmp(kind, code, reason, quoted)


def decode(packet, protocol=None):
    """IP packet bytes (and skb->protocol when known) -> Packet; None for what is not
    IPv4 or IPv6. A cut or later fragment leaves ports (and flags) as None (empty)."""
    family = {ETH_P_IP: 4, ETH_P_IPV6: 6}.get(protocol) or (packet[0] >> 4 if packet else None)
    header = _header(packet, family) if family in (4, 6) else None
    if header is None:
        return None
    sport, dport = _ports(header)
    name = PROTOCOLS.get(header.number, str(header.number))
    flags, icmp, payload = (), None, b""
    if header.number == 6 and header.first and len(header.body) >= 14:
        flags = tuple(f for i, f in enumerate(TCP_FLAGS) if header.body[13] & (1 << i))
        payload = header.body[4 * (header.body[12] >> 4):]
    elif header.number == 17 and header.first:
        payload = header.body[8:]
    elif header.number == {4: 1, 6: 58}[family]:
        icmp = _icmp(header)
    return Packet(family, header.src, header.dst, name, sport, dport, header.length, header.fragment,
                  flags, icmp, payload)
