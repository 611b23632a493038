# SPDX-License-Identifier: GPL-3.0-or-later
"""The proxy's siptrace mirror: HEPv2 frames on 127.0.0.1:5065.

A frame, as Kamailio 5.6's siptrace sends it (hep_version 2, seen on the sandbox):
  u8 version (2), u8 length (16 for IPv4: this header and the addresses), u8 family
  (2 AF_INET, 10 AF_INET6), u8 protocol (17 UDP, 6 TCP), u16 source port, u16
  destination port (network order), source and destination address (4+4 or 16+16),
  then u32 tv_sec, u32 tv_usec, u16 capture id and 2 bytes of padding in the
  sender's byte order (little-endian on x86), then the SIP message as it was
  received or sent. Traffic the proxy's LAN rules forward from 5060 arrives on 6060.

    python -m ns8dev.hep        # print the frames that arrive (Ctrl-C stops)
"""

import contextlib
import errno
import ipaddress
import socket
import struct
import threading
import time

PORT = 5065


def parse(frame):
    """A frame -> {version, family, protocol, src, sport, dst, dport, time, capture_id, sip}."""
    version, length, family, protocol, sport, dport = struct.unpack("!BBBBHH", frame[:8])
    if version != 2:
        raise ValueError(f"not a HEPv2 frame (version {version})")
    size = 4 if family == socket.AF_INET else 16
    src = ipaddress.ip_address(frame[8:8 + size])
    dst = ipaddress.ip_address(frame[8 + size:8 + 2 * size])
    tv_sec, tv_usec, capture_id = struct.unpack("<IIH", frame[length:length + 10])
    sip = frame[length + 12:]
    return {"version": version, "length": length, "family": family, "protocol": protocol,
            "src": str(src), "sport": sport, "dst": str(dst), "dport": dport,
            "time": tv_sec + tv_usec / 1e6, "capture_id": capture_id, "sip": sip.decode(errors="replace")}


class Capture:
    """Frames arriving on 127.0.0.1:<port> while the context is open (in the namespace
    of the thread that opens it). A port held by someone else is waited for, up to
    `wait` seconds: two sandboxes' tests share the root namespace's 5065."""

    def __init__(self, port=PORT, wait=30.0):
        self.port, self.wait = port, wait
        self.frames = []
        self._stop = threading.Event()

    def __enter__(self):
        deadline = time.monotonic() + self.wait
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError as err:
                sock.close()
                if err.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sock.settimeout(0.1)
        self.sock = sock
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        while not self._stop.is_set():
            try:
                self.frames.append(parse(self.sock.recv(65535)))
            except (TimeoutError, ValueError):
                continue

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.sock.close()

    def wait_for(self, predicate, timeout=5.0):
        """The frames matching predicate, once there is one (or [] after timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [f for f in list(self.frames) if predicate(f)]
            if found:
                return found
            time.sleep(0.05)
        return []


def main():
    with contextlib.suppress(KeyboardInterrupt), Capture(wait=0) as capture:
        seen = 0
        while True:
            time.sleep(0.2)
            for frame in capture.frames[seen:]:
                first = frame["sip"].split("\r\n", 1)[0]
                print(f"{frame['src']}:{frame['sport']} -> {frame['dst']}:{frame['dport']} {first}", flush=True)
            seen = len(capture.frames)


if __name__ == "__main__":
    main()
