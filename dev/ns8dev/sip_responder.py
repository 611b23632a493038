"""A minimal SIP user agent server: answers every request with 200 OK.

Stands in for the NethVoice proxy (Kamailio, `Server: NethServer 8 <id>`) and for
Asterisk (`Server: Asterisk PBX`) in the sandbox, so a probe can tell who answered.
Stdlib only; listens on UDP and TCP, IPv4 and IPv6 (one dual-stack socket each).

    python -m ns8dev.sip_responder --server "Asterisk PBX" --listen udp:20040 --listen tcp:20024

(`@HOST`: that listener on that address only, instead of every --host.)
One log line per request on stdout, e.g.
    udp 192.0.2.10:40000 -> 5060 OPTIONS call-id='abc@h' ua='probe' xff='' answered
(xff: the X-Forwarded-For header the proxy adds to the INVITEs it relays.)
and the line `ready` once every listener is bound.
"""

import argparse
import asyncio
import errno
import re
import socket

# Compact header forms (RFC 3261 §7.3.3) we need to recognise.
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length"}
COPIED = ("via", "from", "to", "call-id", "cseq")
CANONICAL = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}

# The proxy's scanner drop list (kamailio.cfg route[REQINIT]); the sandbox proxy uses it.
PROXY_SCANNER_UA = (
    "friendly|sundayddr|scanner|sip-scan|SIPScan|sipsak|sipcli|sipv|VaxSIPUserAgent"
    "|VaxIPUserAgent|SIVuS|smap"
)


def parse(data):
    """Split a SIP message into (start line, [(lower name, name, value)], body)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            low, name, value = headers[-1]
            headers[-1] = (low, name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        low = name.strip().lower()
        headers.append((COMPACT.get(low, low), name.strip(), value.strip()))
    return lines[0], headers, body


def plain_host(host):
    """'::ffff:192.0.2.10' -> '192.0.2.10' (dual-stack sockets report mapped addresses)."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def fill_via(value, host, port):
    """Add received= and fill an empty rport on the top Via, as RFC 3261/3581 servers do."""
    if re.search(r";\s*rport(?=;|$)", value):
        value = re.sub(r";\s*rport(?=;|$)", f";rport={port}", value, count=1)
    if ";received=" not in value:
        value += f";received={host}"
    return value


REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 486: "Busy Here", 503: "Service Unavailable"}


class Responder:
    def __init__(self, server, drop_user_agent=None, reject=()):
        self.server = server
        self.drop = re.compile(drop_user_agent) if drop_user_agent else None
        self.reject = dict(reject)  # Request-URI user -> status code, as Asterisk refuses a call

    def handle(self, data, transport, peer, local_port):
        """Return the reply bytes for one request, or None (dropped, ACK, not a request)."""
        start, headers, _ = parse(data)
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("SIP/2.0"):
            return None  # a response or garbage: a UAS never answers those
        method = parts[0]
        host, port = plain_host(peer[0]), peer[1]
        ua = next((v for low, _, v in headers if low == "user-agent"), "")
        call_id = next((v for low, _, v in headers if low == "call-id"), "")
        xff = next((v for low, _, v in headers if low == "x-forwarded-for"), "")
        verdict = "answered"
        if method == "ACK":
            verdict = "ignored"
        elif self.drop and self.drop.search(ua):
            verdict = "dropped"  # like Kamailio: no reply at all
        print(f"{transport} {host}:{port} -> {local_port} {method} call-id={call_id!r} "
              f"ua={ua!r} xff={xff!r} {verdict}", flush=True)  # a rejected request is answered too
        if verdict != "answered":
            return None
        user = re.match(r"\S+ sips?:([^@;>\s]+)@", start)
        code = self.reject.get(user.group(1) if user else "", 200)
        out = [f"SIP/2.0 {code} {REASONS.get(code, 'OK')}"]
        first_via = True
        for low, _, value in headers:
            if low not in COPIED:
                continue
            if low == "via" and first_via:
                value = fill_via(value, host, port)
                first_via = False
            if low == "to" and not re.search(r";\s*tag=", value):
                value += ";tag=sbx" + format(abs(hash((host, port, value))) % 10**8, "08d")
            out.append(f"{CANONICAL[low]}: {value}")
        out += [f"Server: {self.server}", "Content-Length: 0", "", ""]
        return "\r\n".join(out).encode()


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder, port):
        self.responder, self.port = responder, port

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = self.responder.handle(data, "udp", addr, self.port)
        if reply:
            self.transport.sendto(reply, addr)


def dual_stack_socket(kind, host, port):
    """A socket on host:port; `::` also takes IPv4 (dual stack), `127.0.0.1` only IPv4."""
    family = socket.AF_INET if ":" not in host else socket.AF_INET6
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def read_message(reader):
    """One SIP message from a stream: headers up to the blank line, then Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    _, headers, _ = parse(head)
    length = next((int(v) for low, _, v in headers if low == "content-length"), 0)
    return head + (await reader.readexactly(length) if length else b"")


async def listen(responder, host, proto, port, sock):
    loop = asyncio.get_running_loop()
    if proto == "udp":
        await loop.create_datagram_endpoint(lambda: UdpProtocol(responder, port), sock=sock)
        return

    async def on_client(reader, writer):
        peer = writer.get_extra_info("peername")
        try:
            while True:
                reply = responder.handle(await read_message(reader), "tcp", peer, port)
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    await asyncio.start_server(on_client, sock=sock)


async def take_over_when_free(responder, host, proto, port):
    """A shared address taken by another sandbox's identical stand-in: answer there
    as soon as that one stops, so this sandbox never loses it."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    while True:
        await asyncio.sleep(0.5)
        try:
            sock = dual_stack_socket(kind, host, port)
        except OSError:
            continue
        await listen(responder, host, proto, port, sock)
        print(f"{proto} {host}:{port} taken over", flush=True)
        return


async def serve(responder, listeners, hosts=("::",), shared=False):
    waiting = []
    pairs = [(h, (proto, port)) for proto, port, only in listeners for h in ([only] if only else hosts)]
    for host, (proto, port) in pairs:
        try:
            sock = dual_stack_socket(socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM, host, port)
        except OSError as err:
            if not (shared and err.errno == errno.EADDRINUSE):
                raise
            print(f"{proto} {host}:{port} busy: another sandbox's stand-in answers there for now", flush=True)
            waiting.append(asyncio.ensure_future(take_over_when_free(responder, host, proto, port)))
            continue
        await listen(responder, host, proto, port, sock)
    print("ready", flush=True)
    await asyncio.Event().wait()


def parse_listen(value):
    proto, _, rest = value.partition(":")
    port, _, host = rest.partition("@")
    if proto not in ("udp", "tcp") or not port.isdigit():
        raise argparse.ArgumentTypeError("expected udp:PORT or tcp:PORT, optionally @HOST")
    return proto, int(port), host or None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="value of the Server header")
    parser.add_argument("--listen", type=parse_listen, action="append", required=True,
                        metavar="udp:PORT|tcp:PORT[@HOST]")
    parser.add_argument("--host", action="append", help="bind address, repeatable (default dual-stack ::)")
    parser.add_argument("--shared", action="store_true",
                        help="skip an address:port already taken (by another sandbox's same stand-in)")
    parser.add_argument("--reject", metavar="USER=CODE", action="append", default=[],
                        type=lambda v: (v.split("=", 1)[0], int(v.split("=", 1)[1])),
                        help="answer requests for this Request-URI user with this code (e.g. 0599000403=403)")
    parser.add_argument("--drop-user-agent", metavar="REGEX",
                        help="silently drop requests whose User-Agent matches (re.search), "
                        f"like the proxy's scanner list: {PROXY_SCANNER_UA}")
    args = parser.parse_args(argv)
    try:
        responder = Responder(args.server, args.drop_user_agent, args.reject)
        asyncio.run(serve(responder, args.listen, args.host or ["::"], args.shared))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
