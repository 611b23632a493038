# SPDX-License-Identifier: GPL-3.0-or-later
"""CaptureSpec -> a classic BPF program for an AF_PACKET SOCK_DGRAM socket (pure).

The kernel runs it on every packet before it is queued, so traffic outside the spec
(RTP on 10000-20000/udp above all) costs no copy and no Python. With SOCK_DGRAM the
link-layer header is gone: offsets start at the IP header, and the family comes from
skb->protocol (an ancillary load, linux/filter.h). What it keeps (tests/unit/test_bpf.py
says it again as a reference predicate, and runs the program in an interpreter):

- IPv4 (skb->protocol 0x0800): first fragments only (only they carry the ports), a
  header length of at least 20 bytes taken from IHL (`ldxb 4*([0]&0xf)`), options
  skipped; IPv6 (0x86dd): the transport header right after the fixed header or after
  one Fragment header with offset 0 (other extension headers are not walked);
- UDP or TCP whose destination port (direction "dst"; "src": source port; "either")
  is in `ports`, and, when `peers` are given, whose far end (the source for a
  destination-port match, the destination for a source-port match) is in one of them;
- ICMP destination unreachable (type 3; with unreachable="port" code 3 only) and
  ICMPv6 (type 1; code 4) whose quoted datagram matches the same rule: the quoted
  header names the port that nothing listens on, or that a firewall refused;
- an out-of-bounds load ends the program with 0 (net/core/filter.c), so a truncated
  header is never kept.
"""

import ipaddress
from dataclasses import dataclass

from .bpfasm import ADD, AND, JEQ, JGE, JGT, JSET, LSH, RSH, Assembler, B, H, W
from .errors import InvalidValue

# linux/filter.h: ancillary data, loaded at SKF_AD_OFF + n (u32 two's complement)
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX = 0, 4, 8
# linux/if_ether.h, linux/if_packet.h, net/loopback.c (LOOPBACK_IFINDEX in every netns)
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PACKET_OUTGOING, LOOPBACK_IFINDEX = 4, 1
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
IPV6_FRAGMENT = 44
MAX_PORT_RANGES, MAX_PEERS = 16, 8
DIRECTIONS = ("dst", "src", "either")
UNREACHABLE = ("any", "port", "none")


def _span(item):
    """5060, "5060-5061" or (5060, 5061) -> (low, high); (0, 0) for anything else."""
    try:
        if isinstance(item, str) and "-" in item:
            low, high = item.split("-", 1)
        elif isinstance(item, tuple | list):
            low, high = item
        else:
            low = high = item
        return (0, 0) if isinstance(item, bool) else (int(low), int(high))
    except (TypeError, ValueError):
        return 0, 0


def port_ranges(ports):
    """{5060, 5061, "10000-10010", (6060, 6061)} -> ((5060, 5061), (6060, 6061), (10000, 10010))."""
    spans = []
    for item in ports:
        low, high = _span(item)
        if not 1 <= low <= high <= 65535:
            raise InvalidValue("invalid_port", f"not a port or a port range: {item!r}")
        spans.append((low, high))
    merged = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return tuple(merged)


@dataclass(frozen=True)
class CaptureSpec:
    """What a capture keeps; build it with CaptureSpec.of(...), which normalizes.

    ports: inclusive ranges; protocols: "udp"/"tcp"; direction: which port is matched;
    peers: networks of the far end (empty: any); families: 4 and/or 6; unreachable:
    which ICMP destination-unreachable to keep; loopback_outgoing: keep the outgoing
    copy `lo` shows of every packet; snaplen: bytes kept of each packet.
    """

    ports: tuple = ((5060, 5061),)
    protocols: tuple = ("tcp", "udp")
    direction: str = "dst"
    peers: tuple = ()
    families: tuple = (4, 6)
    unreachable: str = "any"
    loopback_outgoing: bool = False
    snaplen: int = 65535

    def __post_init__(self):
        if not self.ports or len(self.ports) > MAX_PORT_RANGES or port_ranges(self.ports) != self.ports:
            raise InvalidValue("ports", f"1 to {MAX_PORT_RANGES} merged port ranges (CaptureSpec.of merges them)")
        if not self.protocols or not set(self.protocols) <= {"udp", "tcp"}:
            raise InvalidValue("enum", f"protocols are udp and tcp, not {self.protocols!r}")
        if self.direction not in DIRECTIONS or self.unreachable not in UNREACHABLE:
            raise InvalidValue("enum", f"unknown direction or unreachable: {self.direction!r}, {self.unreachable!r}")
        if not self.families or not set(self.families) <= {4, 6} or len(self.peers) > MAX_PEERS:
            raise InvalidValue("enum", f"families are 4 and 6, at most {MAX_PEERS} peers")
        if not 64 <= self.snaplen <= 262144:
            raise InvalidValue("snaplen", f"snaplen between 64 and 262144 bytes, not {self.snaplen}")

    @classmethod
    def of(cls, ports=(5060, 5061), protocols=("udp", "tcp"), *, peers=(), families=(4, 6), **kw):
        """Normalized: ports merged into ranges, peers as canonical networks, sorted sets."""
        try:
            networks = sorted({ipaddress.ip_network(p, strict=False) for p in peers},
                              key=lambda n: (n.version, n))
        except ValueError as err:
            raise InvalidValue("format", f"not an IP network: {err}") from None
        return cls(ports=port_ranges(ports), protocols=tuple(sorted(set(protocols))),
                   peers=tuple(str(n) for n in networks), families=tuple(sorted(set(families))), **kw)

    def networks(self, family):
        """The peers of one family as ip_network; None when any address will do."""
        if not self.peers:
            return None
        return [n for n in map(ipaddress.ip_network, self.peers) if n.version == family]

    def captured_families(self):
        """The families a packet can match in: with peers, only theirs."""
        return tuple(f for f in self.families if self.networks(f) is None or self.networks(f))

    def to_json(self):
        return {"ports": [list(r) for r in self.ports], "protocols": list(self.protocols),
                "direction": self.direction, "peers": list(self.peers), "families": list(self.families),
                "unreachable": self.unreachable, "loopback_outgoing": self.loopback_outgoing, "snaplen": self.snaplen}


def _ports(asm, offset, side, ranges, hit, miss, tag):
    """Jump to hit when the side's port of the ports at X + offset is in ranges, else
    to miss. Both ports are loaded as one word, so a datagram cut inside them is out."""
    if side == "dst":
        asm.ld(H, offset + 2, x=True)
    else:
        asm.ld(W, offset, x=True)
        asm.alu(RSH, 16)
    for i, (low, high) in enumerate(ranges):
        last = i == len(ranges) - 1
        if low == high:
            asm.jump(JEQ, low, hit, miss if last else None)
        else:
            other = miss if last else f"{tag}.r{i}"
            asm.jump(JGE, low, None, other)
            asm.jump(JGT, high, other, hit)
            if not last:
                asm.label(other)


def _address(asm, network, offset, x, hit, miss):
    """Jump to hit when the address at offset (X + offset when x) is in network."""
    if network.prefixlen == 0:
        asm.goto(hit)
        return
    words = network.max_prefixlen // 32
    value = int(network.network_address)
    for i in range(words):
        bits = min(32, network.prefixlen - 32 * i)
        last = network.prefixlen <= 32 * (i + 1)
        asm.ld(W, offset + 4 * i, x)
        if bits < 32:
            asm.alu(AND, (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF)
        asm.jump(JEQ, (value >> (32 * (words - 1 - i))) & 0xFFFFFFFF, hit if last else None, miss)
        if last:
            return


def _match(asm, spec, family, name, where, reload=None):
    """Accept a datagram that matches the spec, else fall through after the block.

    where = (ports, src, dst, x): its ports at X + ports, its addresses at src and dst
    (X-relative when x). reload = (slot of X for the ports, slot of X for the
    addresses) when they differ (a quoted IPv4 header's options lie between them)."""
    ports, src, dst, x = where
    sides = {"dst": [("dst", src)], "src": [("src", dst)]}
    sides["either"] = sides["dst"] + sides["src"]
    nets = spec.networks(family)
    for side, address in sides[spec.direction]:
        tag = f"{name}.{side}"
        if reload:
            asm.ldx_memory(reload[0])
        _ports(asm, ports, side, spec.ports, f"{tag}.nets" if nets else "accept", f"{tag}.end", tag)
        if nets:
            asm.label(f"{tag}.nets")
            if reload:
                asm.ldx_memory(reload[1])
            for i, network in enumerate(nets):
                last = i == len(nets) - 1
                _address(asm, network, address, x, "accept", f"{tag}.end" if last else f"{tag}.n{i}")
                if not last:
                    asm.label(f"{tag}.n{i}")
        asm.label(f"{tag}.end")
    asm.goto("reject")


def _dispatch(asm, spec, name, icmp):
    """A = protocol number: jump to the family's transport or ICMP block."""
    for proto in spec.protocols:
        asm.jump(JEQ, PROTOCOL_NUMBERS[proto], f"{name}.l4", None)
    if spec.unreachable != "none":
        asm.jump(JEQ, PROTOCOL_NUMBERS[icmp], f"{name}.icmp", None)
    asm.goto("reject")


def _unreachable(asm, spec, kind, port_code, quoted_protocol):
    """Reject unless X points at a destination unreachable (type kind; with "port",
    code port_code) quoting one of spec.protocols at X + quoted_protocol."""
    asm.ld(B, 0, x=True)
    asm.jump(JEQ, kind, None, "reject")
    if spec.unreachable == "port":
        asm.ld(B, 1, x=True)
        asm.jump(JEQ, port_code, None, "reject")
    asm.ld(B, quoted_protocol, x=True)
    for i, proto in enumerate(spec.protocols):
        last = i == len(spec.protocols) - 1
        asm.jump(JEQ, PROTOCOL_NUMBERS[proto], None if last else f"{kind}.quoted", "reject" if last else None)
    asm.label(f"{kind}.quoted")


def _ipv4(asm, spec):
    asm.label("v4")
    asm.ld(H, 6)  # flags | fragment offset: only the first fragment has the ports
    asm.jump(JSET, 0x1FFF, "reject", None)
    asm.ldx_header_length(0)  # X = 4 * ([0] & 0xf), the header length
    asm.txa()
    asm.jump(JGE, 20, None, "reject")
    asm.ld(B, 9)
    _dispatch(asm, spec, "v4", "icmp")
    asm.label("v4.l4")
    _match(asm, spec, 4, "v4", (0, 12, 16, False))
    if spec.unreachable == "none":
        return
    asm.label("v4.icmp")  # RFC 792: an 8-byte header, then the quoted IP header and 8 bytes
    _unreachable(asm, spec, 3, 3, 8 + 9)
    asm.ld(H, 8 + 6, x=True)
    asm.jump(JSET, 0x1FFF, "reject", None)
    nets = spec.networks(4)
    if nets:
        asm.stx(0)  # M[0] = the outer header length: the quoted addresses are at X + 20
    asm.ld(B, 8, x=True)
    asm.alu(AND, 0x0F)
    asm.alu(LSH, 2)
    asm.jump(JGE, 20, None, "reject")
    asm.alu(ADD)
    asm.tax()  # X = both header lengths: the quoted ports are at X + 8
    if nets:
        asm.stx(1)
    _match(asm, spec, 4, "v4i", (8, 8 + 12, 8 + 16, True), reload=(1, 0) if nets else None)


def _ipv6(asm, spec):
    asm.label("v6")
    asm.ld(B, 6)
    asm.jump(JEQ, IPV6_FRAGMENT, None, "v6.fixed")
    asm.ld(H, 42)  # RFC 8200 4.5: offset << 3 | res | M; only offset 0 has the ports
    asm.jump(JSET, 0xFFF8, "reject", None)
    asm.ldx(48)
    asm.ld(B, 40)
    asm.goto("v6.proto")
    asm.label("v6.fixed")
    asm.ldx(40)
    asm.label("v6.proto")
    _dispatch(asm, spec, "v6", "icmpv6")
    asm.label("v6.l4")
    _match(asm, spec, 6, "v6", (0, 8, 24, False))
    if spec.unreachable == "none":
        return
    asm.label("v6.icmp")  # RFC 4443: an 8-byte header, then the quoted packet
    _unreachable(asm, spec, 1, 4, 8 + 6)
    _match(asm, spec, 6, "v6i", (8 + 40, 8 + 8, 8 + 24, True))


def program(spec):
    """CaptureSpec -> tuple of Insn that keeps spec.snaplen bytes of a matching packet."""
    asm = Assembler()
    families = spec.captured_families()
    if not spec.loopback_outgoing:  # lo shows each packet twice: outgoing, then host
        asm.ld(W, SKF_AD_OFF + SKF_AD_IFINDEX)
        asm.jump(JEQ, LOOPBACK_IFINDEX, None, "family")
        asm.ld(W, SKF_AD_OFF + SKF_AD_PKTTYPE)
        asm.jump(JEQ, PACKET_OUTGOING, "reject", None)
    asm.label("family")
    asm.ld(W, SKF_AD_OFF + SKF_AD_PROTOCOL)  # ntohs(skb->protocol)
    for family, ethertype in ((4, ETH_P_IP), (6, ETH_P_IPV6)):
        if family in families:
            asm.jump(JEQ, ethertype, f"v{family}", None)
    asm.goto("reject")
    if 4 in families:
        _ipv4(asm, spec)
    if 6 in families:
        _ipv6(asm, spec)
    asm.label("reject")
    asm.ret(0)
    asm.label("accept")
    asm.ret(spec.snaplen)
    return asm.assemble()
