"""SIP OPTIONS probe (asyncio, stdlib): who answers on a SIP port, and how.

Any final response (401 and 403 included) means a SIP server is alive there; the
Server/User-Agent header tells whether it was the proxy (`NethServer 8 ...`) or
Asterisk. A connected UDP socket turns ICMP port-unreachable into "refused", so a
closed port is told apart from a filtered one ("timeout").

Run as a command to probe from another host or namespace:
  python3 -m nethvoice_bypass.sipprobe 192.0.2.1 --port 5060 --protocol udp
"""

import argparse
import asyncio
import ipaddress
import json
import re
import secrets
import socket
import sys
import time
import uuid

USER_AGENT = "nethvoice-bypass-probe"  # must not match the proxy's scanner drop list
UDP_RETRANSMITS = (0.5, 1.0, 2.0)      # RFC 3261 timer E doubling, then give up


def host_literal(address):
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def options_request(target, port, local_ip, local_port, protocol, branch, tag, call_id):
    target_h, local_h = host_literal(target), host_literal(local_ip)
    lines = [
        f"OPTIONS sip:{target_h}:{port} SIP/2.0",
        f"Via: SIP/2.0/{protocol.upper()} {local_h}:{local_port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{local_h}>;tag={tag}",
        f"To: <sip:{target_h}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:probe@{local_h}:{local_port}>",
        f"User-Agent: {USER_AGENT}",
        "Accept: application/sdp",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response(data):
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    status, *header_lines = head.split("\r\n")
    match = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", status)
    if not match:
        return None
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return {"code": int(match.group(1)), "reason": match.group(2), "headers": headers}


def matches(response, call_id, branch):
    h = response["headers"]
    return (h.get("call-id", h.get("i")) == call_id and h.get("cseq", "").endswith("OPTIONS")
            and branch in h.get("via", h.get("v", "")))


def result(outcome, started, response=None, detail=""):
    out = {"outcome": outcome, "rtt_ms": round((time.monotonic() - started) * 1000, 1), "detail": detail}
    if response:
        h = response["headers"]
        out.update(code=response["code"], reason=response["reason"],
                   server=h.get("server") or h.get("user-agent") or "")
    return out


class _UdpProbe(asyncio.DatagramProtocol):
    def __init__(self, call_id, branch):
        self.call_id, self.branch = call_id, branch
        self.done = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        response = parse_response(data)
        if response and response["code"] >= 200 and matches(response, self.call_id, self.branch):
            if not self.done.done():
                self.done.set_result(response)

    def error_received(self, exc):
        if isinstance(exc, ConnectionRefusedError) and not self.done.done():
            self.done.set_exception(exc)


async def probe_udp(target, port, source_ip=None, source_port=0, retransmits=UDP_RETRANSMITS):
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ipaddress.ip_address(target).version == 6 else socket.AF_INET
    call_id, branch, tag = str(uuid.uuid4()), "z9hG4bK" + secrets.token_hex(8), secrets.token_hex(6)
    started = time.monotonic()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _UdpProbe(call_id, branch), family=family,
        local_addr=(source_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), source_port),
        remote_addr=(target, port), reuse_port=bool(source_port) or None)
    try:
        local_ip, local_port = transport.get_extra_info("sockname")[:2]
        message = options_request(target, port, local_ip, local_port, "udp", branch, tag, call_id)
        for wait in retransmits:
            transport.sendto(message)
            try:
                response = await asyncio.wait_for(asyncio.shield(proto.done), wait)
                return result("reply", started, response)
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                return result("refused", started, detail="ICMP port unreachable")
        return result("timeout", started, detail=f"no answer after {len(retransmits)} sends")
    finally:
        transport.close()


async def probe_tcp(target, port, source_ip=None, source_port=0, timeout=3.5):
    call_id, branch, tag = str(uuid.uuid4()), "z9hG4bK" + secrets.token_hex(8), secrets.token_hex(6)
    started = time.monotonic()
    local = (source_ip, source_port) if source_ip or source_port else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target, port, local_addr=local), timeout)
    except ConnectionRefusedError:
        return result("refused", started, detail="connection refused (TCP RST)")
    except (TimeoutError, OSError) as err:
        return result("timeout", started, detail=f"no connection: {err or 'timed out'}")
    try:
        local_ip, local_port = writer.get_extra_info("sockname")[:2]
        writer.write(options_request(target, port, local_ip, local_port, "tcp", branch, tag, call_id))
        await writer.drain()
        deadline = started + timeout
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), max(0.01, deadline - time.monotonic()))
            response = parse_response(head)
            length = int((response or {}).get("headers", {}).get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            if response and response["code"] >= 200 and matches(response, call_id, branch):
                return result("reply", started, response)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as err:
        return result("timeout", started, detail=f"no SIP answer on the connection: {type(err).__name__}")
    finally:
        writer.close()


async def probe(target, port, protocol="udp", **kw):
    runner = probe_udp if protocol == "udp" else probe_tcp
    out = await runner(target, port, **kw)
    return {"target": target, "port": port, "protocol": protocol, **out}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Send a SIP OPTIONS and report who answered")
    parser.add_argument("target")
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--protocol", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--source-ip")
    parser.add_argument("--source-port", type=int, default=0,
                        help="fixed source port, as a device that always sends from 5060")
    args = parser.parse_args(argv)
    out = asyncio.run(probe(args.target, args.port, args.protocol, source_ip=args.source_ip,
                            source_port=args.source_port))
    json.dump(out, sys.stdout)
    print()
    return 0 if out["outcome"] == "reply" else 1


if __name__ == "__main__":
    sys.exit(main())
