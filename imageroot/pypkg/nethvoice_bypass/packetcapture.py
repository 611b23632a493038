# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel's packets, AF_PACKET: a short capture filtered in the kernel (adapter).

    with PacketCapture(spec, max_packets=2000, max_bytes=4 << 20) as cap:
        cap.read(5.0)                  # or: await cap.read_async(5.0)
    result = cap.result()              # CaptureResult: records, drops, kernel counters

It sees what never reaches the proxy: packets forwarded to Asterisk by a bypass rule
(with the destination port they had before firewalld's DNAT: the tap runs before
netfilter's PREROUTING), and the ICMP errors the node sends back. Kernel facts, from
net/packet/af_packet.c unless named:

- a packet socket opened with protocol 0 is not hooked to any device: nothing is
  queued until bind() gives it a protocol (packet_create, packet_do_bind). So the
  filter is attached before bind() and no packet can be queued unfiltered; what is
  queued when bind() is reached is drained and counted (`drained`, expected 0);
- with SOCK_DGRAM the filter and the reader see the packet from the IP header on;
- `lo` shows each packet twice, outgoing then host: the filter drops the outgoing
  copy, and so does the reader if a spec asked the filter to keep it;
- PACKET_STATISTICS gives (tp_packets, tp_drops) since the last read and resets them;
  tp_packets counts what passed the filter, the drops included (packet_getsockopt).
"""

import asyncio
import ctypes
import fcntl
import select
import socket
import struct
import time
from dataclasses import dataclass

from .bpf import CaptureSpec, program
from .errors import Failure
from .packets import PKTTYPES, Captured

ETH_P_ALL = 0x0003  # linux/if_ether.h
SOL_PACKET, PACKET_STATISTICS = 263, 6  # linux/socket.h, linux/if_packet.h
SO_ATTACH_FILTER, SO_RCVBUFFORCE, SO_TIMESTAMPNS = 26, 33, 35  # asm-generic/socket.h (_OLD: 64-bit time on LP64)
SIOCGIFINDEX = 0x8933  # linux/sockios.h
PACKET_OUTGOING = 4  # linux/if_packet.h
ARPHRD_LOOPBACK = 772  # linux/if_arp.h
TIMESPEC = struct.Struct("=qq")
_libc = ctypes.CDLL(None, use_errno=True)


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):  # linux/filter.h struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


@dataclass(frozen=True)
class CaptureResult:
    """What a capture kept, and what it did not: `dropped` packets (and bytes) past
    the bounds, `kernel_drops` when its queue was full, lo's outgoing copies skipped
    by the reader; `kernel_packets` is what passed the filter (drops included)."""

    spec: CaptureSpec
    interface: str | None
    records: tuple
    kept_bytes: int
    dropped: int
    dropped_bytes: int
    kernel_packets: int
    kernel_drops: int
    skipped_outgoing: int
    drained: int

    def decoded(self):
        """(Captured, Packet or None) for each record."""
        return tuple((r, r.decoded()) for r in self.records)

    def to_json(self):
        return {"spec": self.spec.to_json(), "interface": self.interface,
                "records": [r.to_json() for r in self.records], "kept_bytes": self.kept_bytes,
                "dropped": self.dropped, "dropped_bytes": self.dropped_bytes,
                "kernel_packets": self.kernel_packets, "kernel_drops": self.kernel_drops,
                "skipped_outgoing": self.skipped_outgoing, "drained": self.drained}


def attach_filter(sock, insns):
    """SO_ATTACH_FILTER with a struct sock_fprog; the kernel copies the program."""
    array = (SockFilter * len(insns))(*[SockFilter(i.code, i.jt, i.jf, i.k) for i in insns])
    fprog = SockFprog(len(insns), array)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, ctypes.string_at(ctypes.addressof(fprog),
                                                                          ctypes.sizeof(fprog)))


def bind_all(sock, ifindex, protocol=ETH_P_ALL):
    """bind() a packet socket to one interface index, or to all with 0 (Python's own
    bind needs an interface name). linux/if_packet.h struct sockaddr_ll."""
    address = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(protocol), ifindex, 0, 0, 0, b"")
    if _libc.bind(sock.fileno(), ctypes.c_char_p(address), len(address)) != 0:
        raise OSError(ctypes.get_errno(), "bind")


def statistics(sock):
    """(tp_packets, tp_drops) since the last call (linux/if_packet.h struct tpacket_stats)."""
    return struct.unpack("=II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))


def interface_index(sock, name):
    """The index of an interface in the socket's own network namespace."""
    request = struct.pack("16si", name.encode(), 0)
    return struct.unpack("16si", fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, request))[1]


def drain(sock):
    """Throw away what is queued now; how many packets that was."""
    count = 0
    while True:
        try:
            sock.recv(1, socket.MSG_TRUNC)
        except BlockingIOError:
            return count
        count += 1


def open_socket(spec, interface=None, rcvbuf=4 << 20):
    """-> (socket, packets drained before bind): filtered from its first packet."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)  # 0: not hooked yet
    except PermissionError:
        raise Failure("a packet capture needs root (CAP_NET_RAW): run it as root") from None
    try:
        sock.setblocking(False)
        attach_filter(sock, program(spec))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:  # beyond net.core.rmem_max, which root may exceed
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        ifindex = 0
        if interface:
            try:
                ifindex = interface_index(sock, interface)
            except OSError:
                raise Failure(f"no network interface {interface} to capture on") from None
        drained = drain(sock)
        statistics(sock)  # reset: counters start at bind
        bind_all(sock, ifindex)
        return sock, drained
    except BaseException:
        sock.close()
        raise


class PacketCapture:
    """A bounded window of packets matching a CaptureSpec; see the module docstring."""

    def __init__(self, spec, *, max_packets=2000, max_bytes=4 << 20, interface=None, rcvbuf=4 << 20):
        self.spec, self.interface, self.rcvbuf = spec, interface, rcvbuf
        self.max_packets, self.max_bytes = max_packets, max_bytes
        self.sock, self.drained, self.records, self.kept_bytes = None, 0, [], 0
        self.dropped = self.dropped_bytes = self.skipped_outgoing = 0
        self.kernel_packets = self.kernel_drops = 0
        self._indexes, self._until, self._done = {}, None, False

    def open(self):
        """Open the socket in the calling thread's network namespace; once only, so a
        capture opened in another namespace can then be used in a `with`."""
        if self.sock is None:
            self.sock, self.drained = open_socket(self.spec, self.interface, self.rcvbuf)
        return self

    def close(self):
        if self.sock is not None:
            self._count_kernel()
            self.sock.close()
            self.sock = None

    __enter__ = open

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        return self.sock.fileno()

    def _count_kernel(self):
        packets, drops = statistics(self.sock)
        self.kernel_packets += packets
        self.kernel_drops += drops

    def _ifindex(self, name):
        if name not in self._indexes:
            try:
                self._indexes[name] = interface_index(self.sock, name)
            except OSError:  # gone since
                self._indexes[name] = 0
        return self._indexes[name]

    def _take(self, data, ancdata, address):
        ifname, protocol, pkttype, hatype, link_address = address
        if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK and not self.spec.loopback_outgoing:
            self.skipped_outgoing += 1
            return
        if len(self.records) >= self.max_packets or self.kept_bytes + len(data) > self.max_bytes:
            self.dropped += 1
            self.dropped_bytes += len(data)
            return
        stamp = time.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= TIMESPEC.size:
                seconds, nanos = TIMESPEC.unpack_from(value)
                stamp = seconds + nanos / 1e9
        record = Captured(stamp, ifname, self._ifindex(ifname), hatype, PKTTYPES.get(pkttype, str(pkttype)),
                          protocol, link_address, data)
        self.records.append(record)
        self.kept_bytes += len(data)
        if self._until is not None and self._until(record):
            self._done = True

    def read_ready(self):
        """Read what is queued now, without waiting; True once the `until` of the read in
        progress was satisfied (it stops there)."""
        space = socket.CMSG_SPACE(TIMESPEC.size)
        while not self._done:
            try:
                data, ancdata, _, address = self.sock.recvmsg(self.spec.snaplen, space)
            except BlockingIOError:
                break
            self._take(data, ancdata, address)
        return self._done

    def read(self, seconds, until=None):
        """Read for `seconds`, or until until(record) is true for a kept record: whether it was."""
        self._until, self._done = until, False
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        try:
            while not self.read_ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                poller.poll(remaining * 1000)
            return self._done
        finally:
            self._until, self._done = None, False

    async def read_async(self, seconds, until=None):
        """read() on the running event loop: a reader callback, no thread."""
        self._until, self._done = until, False
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def ready():
            if self.read_ready() and not finished.done():
                finished.set_result(True)
        loop.add_reader(self.sock.fileno(), ready)
        try:
            await asyncio.wait_for(finished, seconds)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(self.sock.fileno())
        satisfied = self.read_ready()
        self._until, self._done = None, False
        return satisfied

    def result(self):
        """CaptureResult of the window so far (kernel counters read now if open)."""
        if self.sock is not None:
            self._count_kernel()
        return CaptureResult(self.spec, self.interface, tuple(self.records), self.kept_bytes, self.dropped,
                             self.dropped_bytes, self.kernel_packets, self.kernel_drops, self.skipped_outgoing,
                             self.drained)
