# SPDX-License-Identifier: GPL-3.0-or-later
"""SIP OPTIONS probe (asyncio, stdlib): who answers on a SIP port, and how.

A probe ends within one deadline (connect, sends, headers and body) and never raises;
its `outcome` (with a `detail`) is one of:
- reply: a final response (401 and 403 included: a SIP server is alive there); its
  Server/User-Agent header tells the proxy (`NethServer 8 ...`) from Asterisk;
- refused: ICMP port unreachable (a connected UDP socket sees it), or a TCP reset;
- timeout: no answer within the deadline (dropped, or rejected with an ICMP host
  unreachable as firewalld does: filtered; or an answer that stalled);
- invalid: something answered, but not a SIP response (garbage, a malformed message, a
  connection closed or reset before the answer);
- error: not sent, or the socket failed on this side: not a unicast IP address
  (broadcast, multicast, unspecified), no route from this node, a non-local source.

Run as a command to probe from another host or namespace:
  python3 -m nethvoice_bypass.sipprobe 192.0.2.1 --port 5060 --protocol udp
"""

import argparse
import asyncio
import errno
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
import time
import uuid

USER_AGENT = "nethvoice-bypass-probe"  # must not match the proxy's scanner drop list
UDP_RETRANSMITS = (0.5, 1.0, 2.0)      # RFC 3261 timer E doubling, then give up
DEADLINE = sum(UDP_RETRANSMITS)        # seconds for a whole exchange, UDP or TCP
MAX_MESSAGE = 65536                    # an OPTIONS answer is small; more is not one
COMPACT = {"i": "call-id", "v": "via", "l": "content-length"}  # RFC 3261 7.3.3
STATUS_LINE = re.compile(r"SIP/2\.0 (\d{3})(?: (.*))?$")
UNREACHABLE = (errno.EHOSTUNREACH, errno.EHOSTDOWN)  # ICMP host unreachable (firewalld's reject): filtered


class NotSip(Exception):
    """The peer's bytes are not a SIP message: the reason, for `invalid`."""


def not_unicast(address):
    """Why an IP address is no probe target ("multicast", "broadcast", "unspecified"),
    or None for a unicast one. An IPv4-mapped IPv6 address is judged as its IPv4."""
    ip = ipaddress.ip_address(address)
    ip = (ip.ipv4_mapped if ip.version == 6 else None) or ip
    if ip.is_multicast or ip.is_unspecified:
        return "multicast" if ip.is_multicast else "unspecified"
    return "broadcast" if ip == ipaddress.IPv4Address("255.255.255.255") else None


def host_literal(address):
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def parse_response(data):
    """A response's head as {code, reason, headers} (any body ignored); None if not a SIP response."""
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    status, *header_lines = head.split("\r\n")
    match = STATUS_LINE.match(status)
    if not match:
        return None
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(COMPACT.get(name.strip().lower(), name.strip().lower()), value.strip())
    return {"code": int(match.group(1)), "reason": match.group(2) or "", "headers": headers}


def content_length(headers):
    """The body's length a message announces (0 if none); NotSip if no length a probe reads."""
    text = headers.get("content-length", "").strip() or "0"
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_MESSAGE:
        raise NotSip(f"bad Content-Length {text[:20]!r} (a probe reads at most {MAX_MESSAGE} bytes)")
    return int(text)


def socket_detail(err):
    return os.strerror(err.errno) if getattr(err, "errno", None) else str(err) or type(err).__name__


def result(outcome, started, response=None, detail=""):
    out = {"outcome": outcome, "rtt_ms": round((time.monotonic() - started) * 1000, 1), "detail": detail}
    if response:
        h = response["headers"]
        out.update(code=response["code"], reason=response["reason"],
                   server=h.get("server") or h.get("user-agent") or "")
    return out


class Request:
    """One OPTIONS: its identifiers and when it started."""

    def __init__(self, target, port, protocol):
        self.target, self.port, self.protocol = target, port, protocol
        self.call_id, self.tag = str(uuid.uuid4()), secrets.token_hex(6)
        self.branch = "z9hG4bK" + secrets.token_hex(8)
        self.started = time.monotonic()

    def message(self, sockname):
        """The OPTIONS sent from sockname: an IP-literal Request-URI, no user part."""
        target, local = host_literal(self.target), host_literal(sockname[0])
        lines = [f"OPTIONS sip:{target}:{self.port} SIP/2.0",
                 f"Via: SIP/2.0/{self.protocol.upper()} {local}:{sockname[1]};branch={self.branch};rport",
                 "Max-Forwards: 70", f"From: <sip:probe@{local}>;tag={self.tag}", f"To: <sip:{target}:{self.port}>",
                 f"Call-ID: {self.call_id}", "CSeq: 1 OPTIONS", f"Contact: <sip:probe@{local}:{sockname[1]}>",
                 f"User-Agent: {USER_AGENT}", "Accept: application/sdp", "Content-Length: 0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def answers(self, response):
        """A final response to this request (1xx are not)."""
        h = response["headers"]
        return (response["code"] >= 200 and h.get("call-id") == self.call_id
                and h.get("cseq", "").endswith("OPTIONS") and self.branch in h.get("via", ""))


class _UdpProbe(asyncio.DatagramProtocol):
    def __init__(self, request):
        self.request = request
        self.not_sip = self.others = 0  # datagrams ignored: not SIP responses; not final or not ours
        self.unreachable = ""
        self.done = asyncio.get_running_loop().create_future()

    def finish(self, outcome, response=None, detail=""):
        if not self.done.done():
            self.done.set_result((outcome, response, detail))

    def datagram_received(self, data, addr):
        if not data.strip(b"\r\n"):
            return  # a keepalive (RFC 5626)
        response = parse_response(data)
        if response is None or not response["headers"].get("content-length", "0").strip().isdigit():
            self.not_sip += 1
        elif self.request.answers(response):
            self.finish("reply", response)
        else:
            self.others += 1

    def error_received(self, exc):
        if isinstance(exc, ConnectionRefusedError):
            self.finish("refused", detail="ICMP port unreachable")
        elif exc.errno in UNREACHABLE:  # the next send may get through: noted, the probe goes on
            self.unreachable = f" ({socket_detail(exc)})"
        else:
            self.finish("error", detail=f"the probe could not be sent: {socket_detail(exc)}")


async def probe_udp(target, port, source_ip=None, source_port=0, retransmits=UDP_RETRANSMITS, deadline=DEADLINE):
    request = Request(target, port, "udp")
    family = socket.AF_INET6 if ipaddress.ip_address(target).version == 6 else socket.AF_INET
    try:
        transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _UdpProbe(request), family=family,
            local_addr=(source_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), source_port),
            remote_addr=(target, port), reuse_port=bool(source_port) or None)
    except (OSError, ValueError, OverflowError) as err:
        return result("error", request.started, detail=f"no socket for the probe: {socket_detail(err)}")
    try:
        return await _udp_exchange(transport, proto, retransmits, request.started + deadline)
    finally:
        transport.close()


async def _udp_exchange(transport, proto, retransmits, end):
    request, sends = proto.request, 0
    message = request.message(transport.get_extra_info("sockname"))
    waits = list(retransmits)
    while time.monotonic() < end:
        if waits:
            transport.sendto(message)
            sends += 1
        wait = min(waits.pop(0) if waits else end, end - time.monotonic())
        try:
            outcome, response, detail = await asyncio.wait_for(asyncio.shield(proto.done), max(wait, 0))
            return result(outcome, request.started, response, detail)
        except TimeoutError:
            continue
    ignored = f" ({proto.not_sip} datagrams that are not SIP, {proto.others} other SIP responses ignored)"
    if proto.not_sip:  # something answers there, but not SIP
        return result("invalid", request.started, detail=f"no SIP answer after {sends} sends{ignored}")
    return result("timeout", request.started,
                  detail=f"no answer after {sends} sends{proto.unreachable}" + ignored * bool(proto.others))


class _Stream:
    """The bytes of one TCP connection as they arrive, never much more than a message."""

    def __init__(self):
        self.reader, self.buffer, self.received = None, b"", 0

    async def more(self):
        chunk = await self.reader.read(MAX_MESSAGE)
        if not chunk:
            raise NotSip("the connection was closed " + ("in the middle of an answer" if self.buffer
                                                          else "without an answer"))
        self.buffer += chunk
        self.received += len(chunk)
        if len(self.buffer) > 2 * MAX_MESSAGE:
            raise NotSip(f"more than {2 * MAX_MESSAGE} bytes without a complete SIP message")

    async def response(self):
        """The next message's parsed head, its body read and dropped; NotSip as soon as
        the bytes cannot be a SIP response."""
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")  # keepalives between messages (RFC 5626)
            if not b"SIP/2.0 ".startswith(self.buffer[:8].upper()):
                raise NotSip(f"not a SIP response: {repr(self.buffer[:40])[2:-1]}")
            if b"\r\n\r\n" in self.buffer:
                break
            await self.more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        response = parse_response(head)
        if response is None:
            raise NotSip(f"not a SIP response: {repr(head[:40])[2:-1]}")
        length = content_length(response["headers"])
        while len(self.buffer) < length:
            await self.more()
        self.buffer = self.buffer[length:]
        return response


async def probe_tcp(target, port, source_ip=None, source_port=0, deadline=DEADLINE):
    request, stream = Request(target, port, "tcp"), _Stream()
    try:
        return await asyncio.wait_for(_tcp_exchange(request, source_ip, source_port, stream), deadline)
    except TimeoutError:
        if stream.reader is None:
            detail = "no connection"
        else:
            detail = f"connected, {stream.received} bytes received and no complete SIP answer"
        return result("timeout", request.started, detail=f"{detail} within {deadline:g} s")


async def _tcp_exchange(request, source_ip, source_port, stream):
    local = (source_ip, source_port) if source_ip or source_port else None
    try:
        stream.reader, writer = await asyncio.open_connection(request.target, request.port, local_addr=local)
    except ConnectionRefusedError:
        return result("refused", request.started, detail="connection refused (TCP RST)")
    except (OSError, ValueError, OverflowError) as err:
        outcome = "timeout" if getattr(err, "errno", None) in UNREACHABLE else "error"
        return result(outcome, request.started, detail=f"no connection: {socket_detail(err)}")
    try:
        writer.write(request.message(writer.get_extra_info("sockname")))
        await writer.drain()
        while True:
            response = await stream.response()
            if request.answers(response):
                return result("reply", request.started, response)
    except NotSip as err:
        return result("invalid", request.started, detail=str(err))
    except ConnectionError as err:
        return result("invalid", request.started, detail=f"the connection was lost: {socket_detail(err)}")
    except OSError as err:
        return result("error", request.started, detail=f"the connection failed: {socket_detail(err)}")
    finally:
        writer.close()


async def probe(target, port, protocol="udp", **kw):
    """One probe's result: {target, port, protocol, outcome, rtt_ms, detail[, code, reason, server]}."""
    started = time.monotonic()
    try:
        reason = not_unicast(target)
        if protocol not in ("udp", "tcp"):
            out = result("error", started, detail=f"unknown protocol {protocol!r}")
        elif reason:
            out = result("error", started, detail=f"not sent: {target} is a {reason} address, not one SIP peer")
        else:
            out = await (probe_udp if protocol == "udp" else probe_tcp)(target, port, **kw)
    except ValueError as err:
        out = result("error", started, detail=f"not sent: {err}")
    except Exception as err:  # noqa: BLE001 - one probe never ends the others, nor the step
        out = result("error", started, detail=f"the probe failed: {type(err).__name__}: {err}")
    return {"target": target, "port": port, "protocol": protocol, **out}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Send a SIP OPTIONS and report who answered")
    parser.add_argument("target")
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--protocol", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--source-ip")
    parser.add_argument("--source-port", type=int, default=0,
                        help="fixed source port, as a device that always sends from 5060")
    parser.add_argument("--deadline", type=float, default=DEADLINE, help="seconds for the whole exchange")
    args = parser.parse_args(argv)
    out = asyncio.run(probe(args.target, args.port, args.protocol, source_ip=args.source_ip,
                            source_port=args.source_port, deadline=args.deadline))
    json.dump(out, sys.stdout)
    print()
    return 0 if out["outcome"] == "reply" else 1


if __name__ == "__main__":
    sys.exit(main())
