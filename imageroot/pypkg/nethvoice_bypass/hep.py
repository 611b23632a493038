# SPDX-License-Identifier: GPL-3.0-or-later
"""frame bytes -> HepMessage | None: one frame of the proxy's siptrace mirror.

The proxy mirrors with `hep_version 2`; a support tool (heplify, sngrep) may send
HEPv3, read here too. Anything else, truncated or malformed, is None, never an
exception: the collector's socket takes whatever is sent to it.

HEPv2 as Kamailio 5.6 writes it (src/modules/siptrace/siptrace_hep.c,
trace_send_hep2_duplicate; struct hep_hdr and hep_timehdr in sipcapture/hep.h):
  u8 version (2), u8 length, u8 family, u8 proto, u16 sport, u16 dport (network order)
  src and dst address, 4+4 or 16+16 bytes
  u32 tv_sec, u32 tv_usec, u16 capture id + 2 bytes of struct padding (12 bytes)
  the SIP message
- `length` counts the first two blocks only (16 for IPv4, 40 for IPv6), not the time.
- The time is little-endian whatever the host (`to_le`); the capture id is copied in
  host order, little-endian on the proxy's x86-64 and arm64; the padding is copied
  from the stack, so it is not always zero and is never read.
- family is the Linux AF_INET (2) or AF_INET6 (10); src and dst are always of one
  family (Kamailio drops the copy otherwise: "interworking detected").
- proto comes from pipport2su: udp 17, tcp 6, sctp 132, and tls, ws and wss all 22
  (IPPROTO_IDP, "fake proto type"), which sipcapture reads back as TLS. So TLS is
  told apart from TCP in the mirror, and a TLS message arrives decrypted.
HEPv3 (the same file, trace_send_hep3_duplicate): "HEP3", u16 total length, then
chunks {u16 vendor, u16 type, u16 length including these 6 bytes, data}, all in
network order; vendor 0 types below, payload in type 15.
"""

import functools
import ipaddress
import struct
from dataclasses import dataclass

V2_HEADER = struct.Struct("!BBBBHH")
V2_TIME = struct.Struct("<IIH2x")
V3_CHUNK = struct.Struct("!HHH")
FAMILIES = {2: ("ipv4", 4), 10: ("ipv6", 16)}  # Linux AF_INET, AF_INET6: (name, address bytes)
AF_OF = {"ipv4": 2, "ipv6": 10}
TRANSPORTS = {17: "udp", 6: "tcp", 22: "tls", 132: "sctp"}
PROTO_OF = {"udp": 17, "tcp": 6, "tls": 22, "sctp": 132}
# HEPv3 generic chunk types (vendor 0)
FAMILY, PROTO, SRC4, DST4, SRC6, DST6, SPORT, DPORT, SEC, USEC, PROTO_TYPE, CAPTURE_ID = range(1, 13)
PAYLOAD = 15
SIP = 1  # HEPv3 protocol type: anything else (RTCP, logs) is not for us


@dataclass(frozen=True, slots=True)
class HepMessage:
    """One mirrored message: when, from where to where, over what, and the SIP text.

    `src`/`dst` are (ip text, port), IPv6 compressed as inet_ntop writes it (Kamailio's
    own default, `ipv6_hex_style "c"`). `time` is the proxy's clock, in seconds."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    transport: str
    family: str
    capture_id: int
    payload: bytes
    version: int = 2

    def to_json(self):
        """Everything but the payload, whose SIP text names people (sipmsg derives what to keep)."""
        return {"time": self.time, "src": list(self.src), "dst": list(self.dst), "transport": self.transport,
                "family": self.family, "capture_id": self.capture_id, "version": self.version,
                "payload_bytes": len(self.payload)}


@functools.lru_cache(maxsize=4096)
def _endpoint(raw, port):
    """(ip text, port), shared: the same few peers send most frames, so tens of thousands
    of messages hold a few of these instead of one each."""
    return str(ipaddress.ip_address(raw)), port


def parse(frame):
    """bytes -> HepMessage | None (HEPv2, HEPv3; anything else None)."""
    if not isinstance(frame, bytes):
        return None
    if frame[:4] == b"HEP3":
        return _parse_v3(frame)
    if frame[:1] == b"\x02":
        return _parse_v2(frame)
    return None


def _parse_v2(frame):
    if len(frame) < V2_HEADER.size:
        return None
    _version, length, af, proto, sport, dport = V2_HEADER.unpack_from(frame)
    family, size = FAMILIES.get(af, (None, 0))
    transport = TRANSPORTS.get(proto)
    start = length + V2_TIME.size
    if family is None or transport is None or length != V2_HEADER.size + 2 * size or len(frame) <= start:
        return None
    sec, usec, capture_id = V2_TIME.unpack_from(frame, length)
    if usec >= 1_000_000:
        return None
    src, dst = frame[8:8 + size], frame[8 + size:length]
    return HepMessage(sec + usec / 1e6, _endpoint(src, sport), _endpoint(dst, dport), transport, family,
                      capture_id, frame[start:], 2)


def _v3_chunks(frame):
    """{type: data} of the generic chunks (first of each wins), or None if they do not add up."""
    if len(frame) < 6:
        return None
    total = int.from_bytes(frame[4:6], "big")
    if total > len(frame):
        return None
    chunks, pos = {}, 6
    while pos + V3_CHUNK.size <= total:
        vendor, kind, length = V3_CHUNK.unpack_from(frame, pos)
        if length < V3_CHUNK.size or pos + length > total:
            return None
        if vendor == 0 and kind not in chunks:
            chunks[kind] = frame[pos + V3_CHUNK.size:pos + length]
        pos += length
    return chunks if pos == total else None


def _number(chunks, kind, size, default=None):
    data = chunks.get(kind)
    if data is None or len(data) != size:
        return default
    return int.from_bytes(data, "big")


def _parse_v3(frame):
    chunks = _v3_chunks(frame)
    if chunks is None or _number(chunks, PROTO_TYPE, 1, SIP) != SIP:
        return None
    family, size = FAMILIES.get(_number(chunks, FAMILY, 1), (None, 0))
    transport = TRANSPORTS.get(_number(chunks, PROTO, 1))
    src, dst = (chunks.get(SRC4), chunks.get(DST4)) if size == 4 else (chunks.get(SRC6), chunks.get(DST6))
    sport, dport = _number(chunks, SPORT, 2), _number(chunks, DPORT, 2)
    sec, usec = _number(chunks, SEC, 4), _number(chunks, USEC, 4, 0)
    payload = chunks.get(PAYLOAD)
    if (family is None or transport is None or None in (sport, dport, sec) or not payload or usec >= 1_000_000
            or src is None or dst is None or len(src) != size or len(dst) != size):
        return None
    return HepMessage(sec + usec / 1e6, _endpoint(src, sport), _endpoint(dst, dport), transport, family,
                      _number(chunks, CAPTURE_ID, 4, 0), payload, 3)


def _addresses(src, dst):
    a, b = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if a.version != b.version:
        raise ValueError(f"{src[0]} and {dst[0]} are not of one family: Kamailio mirrors no such message")
    return ("ipv4" if a.version == 4 else "ipv6"), a.packed, b.packed


def encode_v2(payload, *, src, dst, transport="udp", time=0.0, capture_id=1):
    """The frame Kamailio 5.6 writes for payload sent src -> dst ((ip, port) each) at time."""
    family, src_ip, dst_ip = _addresses(src, dst)
    sec, usec = divmod(round(time * 1_000_000), 1_000_000)
    header = V2_HEADER.pack(2, V2_HEADER.size + 2 * len(src_ip), AF_OF[family], PROTO_OF[transport],
                            src[1], dst[1])
    return header + src_ip + dst_ip + V2_TIME.pack(sec, usec, capture_id) + payload


def _chunk(kind, data):
    return V3_CHUNK.pack(0, kind, V3_CHUNK.size + len(data)) + data


def encode_v3(payload, *, src, dst, transport="udp", time=0.0, capture_id=1):
    """The frame Kamailio 5.6 writes with `hep_version 3` (no auth key, no correlation id)."""
    family, src_ip, dst_ip = _addresses(src, dst)
    sec, usec = divmod(round(time * 1_000_000), 1_000_000)
    first, second = (SRC4, DST4) if family == "ipv4" else (SRC6, DST6)
    body = b"".join([
        _chunk(FAMILY, bytes([AF_OF[family]])), _chunk(PROTO, bytes([PROTO_OF[transport]])),
        _chunk(first, src_ip), _chunk(second, dst_ip),
        _chunk(SPORT, src[1].to_bytes(2, "big")), _chunk(DPORT, dst[1].to_bytes(2, "big")),
        _chunk(SEC, sec.to_bytes(4, "big")), _chunk(USEC, usec.to_bytes(4, "big")),
        _chunk(PROTO_TYPE, bytes([SIP])), _chunk(CAPTURE_ID, capture_id.to_bytes(4, "big")),
        _chunk(PAYLOAD, payload)])
    return b"HEP3" + (6 + len(body)).to_bytes(2, "big") + body
