# SPDX-License-Identifier: GPL-3.0-or-later
"""Captured records -> a classic pcap file a provider's engineer opens in Wireshark (pure).

Format: the libpcap file format (tcpdump.org/manpages/pcap-savefile.5.html, and
draft-ietf-opsawg-pcap): a 24-byte file header, then per packet a 16-byte record
header (seconds, microseconds, bytes kept, length on the wire) and the bytes.
Link types (tcpdump.org/linktypes.html): LINKTYPE_RAW (101) holds bare IPv4/IPv6
packets; LINKTYPE_LINUX_SLL2 (276) adds a 20-byte header per packet with the
interface index, the direction (host, outgoing, ...) and the sender's link address,
which tells the node's replies from what it received.
"""

import base64
import struct
from dataclasses import dataclass

from .packets import PKTTYPES

MAGIC = 0xA1B2C3D4  # microsecond timestamps, written little-endian; readers swap by the magic
LINKTYPES = {"raw": 101, "sll2": 276}
FILE_HEADER, RECORD_HEADER, SLL2_HEADER = 24, 16, 20
PKTTYPE_NUMBERS = {name: number for number, name in PKTTYPES.items()}


@dataclass(frozen=True)
class PcapFile:
    """The file's bytes, how many packets it holds and how many did not fit max_bytes."""

    data: bytes
    linktype: str
    packets: int
    omitted: int

    def to_json(self):
        return {"pcap": base64.b64encode(self.data).decode(), "linktype": self.linktype,
                "packets": self.packets, "omitted": self.omitted, "bytes": len(self.data)}


def _wire_length(packet):
    """The IP length from the header: the capture may have kept fewer bytes."""
    if len(packet) >= 4 and packet[0] >> 4 == 4:
        return max(len(packet), struct.unpack("!H", packet[2:4])[0])
    if len(packet) >= 6 and packet[0] >> 4 == 6:
        return max(len(packet), 40 + struct.unpack("!H", packet[4:6])[0])
    return len(packet)


def _sll2(record):
    address = record.address[:8]
    return struct.pack("!HHIHBB8s", record.protocol, 0, record.ifindex, record.hatype,
                       PKTTYPE_NUMBERS.get(record.pkttype, 0), len(address), address)


def pcap_file(records, *, linktype="raw", max_bytes=16 << 20, snaplen=262144):
    """records: Captured (packets.py) in time order -> PcapFile of at most max_bytes.

    Records that would make the file larger than max_bytes are left out (counted in
    omitted), the first ones kept: the start of a window is what explains the rest."""
    if linktype not in LINKTYPES:
        raise ValueError(f"unknown link type {linktype!r}: one of {', '.join(LINKTYPES)}")
    if max_bytes < FILE_HEADER:
        raise ValueError(f"max_bytes {max_bytes} is smaller than the pcap file header")
    parts = [struct.pack("<IHHiIII", MAGIC, 2, 4, 0, 0, snaplen, LINKTYPES[linktype])]
    size, kept = FILE_HEADER, 0
    records = list(records)
    for record in records:
        extra = _sll2(record) if linktype == "sll2" else b""
        data = (extra + record.packet)[:snaplen]
        if size + RECORD_HEADER + len(data) > max_bytes:
            break
        seconds = int(record.time)
        micros = min(999999, round((record.time - seconds) * 1e6))
        parts.append(struct.pack("<IIII", seconds, micros, len(data), len(extra) + _wire_length(record.packet)))
        parts.append(data)
        size += RECORD_HEADER + len(data)
        kept += 1
    return PcapFile(b"".join(parts), linktype, kept, len(records) - kept)
