# SPDX-License-Identifier: GPL-3.0-or-later
"""The proxy's HEP mirror: HepCollector(host, port, ...) -> Capture {messages, counters}.

The proxy's siptrace sends a HEPv2 copy of every SIP message it receives or sends to
udp:127.0.0.1:5065 while `siptrace.status` is on. This listener keeps those frames
for a window and parses them once the window is over:

    async with HepCollector() as collector:
        await asyncio.sleep(window)
    capture = collector.result()

Bounded whatever the rate: at most `max_messages` frames and `max_bytes` kept (a
frame counts its length and what Python keeps beside it); what comes beyond is
counted in `dropped_bounds`, not kept. While the window is open each datagram costs
one recv() and an append: the frames are parsed after the window. The socket asks
for a large receive buffer, so a burst waits in the kernel rather than being lost,
and the kernel's own drop counter for the socket (SO_MEMINFO's sk_drops, the counter
SO_RXQ_OVFL would attach to each later datagram) is read when the window closes, so
loss is measured, including a burst lost after the last datagram read.
"""

import asyncio
import errno
import socket
import struct
import sys
from dataclasses import asdict, dataclass

from . import hep, sipmsg
from .errors import CaptureBusy, Failure

HOST, PORT = "127.0.0.1", 5065  # the proxy's `duplicate_uri sip:127.0.0.1:5065`
MAX_MESSAGES = 50_000
MAX_BYTES = 32 << 20
RCVBUF = 16 << 20  # granted 32 MiB: about 20,000 mirrored messages (1.6 KiB each in its accounting)
FRAME_MAX = 65535
FRAME_OVERHEAD = sys.getsizeof(b"") + 32  # the bytes object's header, its allocation and its list slot
DRAIN_BATCH = 1000  # datagrams read per wake-up, so a flood cannot hold the event loop
CLOSE_DRAIN = 100_000  # more than a full buffer holds, so a sender that never stops cannot hold close()
# Linux values (asm-generic/socket.h, linux/sock_diag.h); Python's socket module names none of them.
SO_RCVBUFFORCE = 33
SO_MEMINFO = 55
SK_MEMINFO_DROPS = 8
SK_MEMINFO_VARS = 9


@dataclass(frozen=True)
class Counters:
    """Frames `received`; of them `kept` and `dropped_bounds` (beyond max_messages or
    max_bytes); of the kept ones `unparsable` (not HEP) and `not_sip` (HEP without a SIP
    message in it); `kernel_dropped` by the kernel before we read them (None where the
    kernel does not say); `rcvbuf` the receive buffer the kernel granted."""

    received: int
    kept: int
    dropped_bounds: int
    unparsable: int
    not_sip: int
    kernel_dropped: int | None
    kept_bytes: int
    rcvbuf: int

    def to_json(self):
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Captured:
    """One mirrored message, with its SIP message parsed (None when the payload is not SIP)."""

    hep: hep.HepMessage
    sip: sipmsg.SipMessage | None

    def to_json(self):
        return {**self.hep.to_json(), "sip": self.sip.to_json() if self.sip else None}


@dataclass(frozen=True)
class Capture:
    """What a window kept, in the order received, and how much it saw."""

    messages: tuple[Captured, ...]
    counters: Counters

    def to_json(self):
        """The derived fields only (hep and sipmsg leave the SIP text and the users out)."""
        return {"messages": [m.to_json() for m in self.messages], "counters": self.counters.to_json()}


class HepCollector:
    """A UDP listener for one window; `result()` parses what it kept."""

    def __init__(self, host=HOST, port=PORT, *, max_messages=MAX_MESSAGES, max_bytes=MAX_BYTES, rcvbuf=RCVBUF):
        self.host, self.port = host, port
        self.max_messages, self.max_bytes, self.rcvbuf = max_messages, max_bytes, rcvbuf
        self._sock = None
        self._loop = None
        self._frames = []
        self._parsed = []
        self._received = self._dropped = self._kept = self._kept_bytes = 0
        self._unparsable = self._not_sip = 0
        self._kernel_dropped = None
        self._granted = 0
        self.address = None

    async def __aenter__(self):
        self.open()
        return self

    async def __aexit__(self, *exc):
        self.close()

    def open(self):
        """Bind and start reading; CaptureBusy when another listener holds the port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._granted = _grow_buffer(sock, self.rcvbuf)
            sock.bind((self.host, self.port))  # no SO_REUSEADDR: sharing the port would split the mirror
        except OSError as err:
            sock.close()
            if err.errno == errno.EADDRINUSE:
                raise CaptureBusy(f"capture busy: something else listens on {self.host}:{self.port}"
                                  " (a support session's sngrep?)") from None
            raise Failure(f"cannot listen for the proxy's HEP mirror on {self.host}:{self.port}:"
                          f" {err.strerror}") from None
        sock.setblocking(False)
        self._sock = sock
        self.address = sock.getsockname()[:2]  # the port chosen when asked for port 0
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._drain)

    def close(self):
        """Stop reading, read what is still queued, count the kernel's drops and close."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._loop.remove_reader(sock.fileno())
        self._read(sock, CLOSE_DRAIN)
        self._kernel_dropped = _kernel_drops(sock)
        sock.close()

    def _drain(self):
        self._read(self._sock, DRAIN_BATCH)

    def _read(self, sock, limit):
        """Read up to `limit` queued datagrams: the hot path, kept to a recv() and an append."""
        recv, frames = sock.recv, self._frames
        for _ in range(limit):
            try:
                data = recv(FRAME_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: nothing to read for it
                continue
            self._received += 1
            size = len(data) + FRAME_OVERHEAD
            if self._kept >= self.max_messages or self._kept_bytes + size > self.max_bytes:
                self._dropped += 1
                continue
            frames.append(data)
            self._kept += 1
            self._kept_bytes += size

    def counters(self):
        return Counters(received=self._received, kept=self._kept, dropped_bounds=self._dropped,
                        unparsable=self._unparsable, not_sip=self._not_sip, kernel_dropped=self._kernel_dropped,
                        kept_bytes=self._kept_bytes, rcvbuf=self._granted)

    def result(self):
        """The messages kept so far, parsed (each frame once: the raw frame is released as
        its message is made), in the order received, and the counters."""
        frames, self._frames = self._frames, []
        for index, frame in enumerate(frames):
            frames[index] = None
            message = hep.parse(frame)
            if message is None:
                self._unparsable += 1
                continue
            sip = sipmsg.parse(message.payload)
            if sip is None:
                self._not_sip += 1
            self._parsed.append(Captured(message, sip))
        return Capture(tuple(self._parsed), self.counters())


async def capture(window, host=HOST, port=PORT, **bounds):
    """Listen for `window` seconds -> Capture."""
    async with HepCollector(host, port, **bounds) as collector:
        await asyncio.sleep(window)
    return collector.result()


def _grow_buffer(sock, size):
    """Ask for `size` bytes of receive buffer, past net.core.rmem_max when root (SO_RCVBUFFORCE);
    -> what the kernel granted (it doubles the request for its bookkeeping)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:  # not root (EPERM): capped at net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def _kernel_drops(sock):
    """The socket's sk_drops: datagrams the kernel dropped for it (a full buffer), or None."""
    try:
        info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
    except OSError:
        return None
    if len(info) < 4 * SK_MEMINFO_VARS:
        return None
    return struct.unpack_from(f"={SK_MEMINFO_VARS}I", info)[SK_MEMINFO_DROPS]
