# SPDX-License-Identifier: GPL-3.0-or-later
"""The SIP probe against real peers on loopback: well-behaved, stalling and hostile ones.
Each probe returns its outcome within its deadline; the bound is checked by the test
itself (asyncio.wait_for), so a probe that hangs fails the test instead of hanging it."""

import asyncio
import contextlib
import re
import socket

import pytest
from nethvoice_bypass import sipprobe

pytestmark = pytest.mark.unit

DEADLINE = 1.0  # the probe's deadline in these tests
MARGIN = 0.5    # what the test allows on top, as an upper bound only


async def bounded(target, port, protocol, **kw):
    """probe() with the test's deadline; fails the test when it does not return in time."""
    try:
        return await asyncio.wait_for(sipprobe.probe(target, port, protocol, deadline=DEADLINE, **kw),
                                      DEADLINE + MARGIN)
    except TimeoutError:
        pytest.fail(f"the {protocol} probe did not return within {DEADLINE + MARGIN} s")


def answer(request, code=200, headers=(), body=b"", length=None):
    """A response to request (bytes) with its Via, Call-ID and CSeq."""
    copied = re.findall(rb"^(?:Via|Call-ID|CSeq|From|To):.*$", request, re.M | re.I)
    length = len(body) if length is None else length
    lines = [f"SIP/2.0 {code} Whatever".encode(), *[c.rstrip(b"\r") for c in copied],
             b"Server: Asterisk PBX 20", *[h.encode() for h in headers], f"Content-Length: {length}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@contextlib.asynccontextmanager
async def tcp_peer(handler):
    """A TCP server on 127.0.0.1 running handler(request, reader, writer) per connection;
    its port. Stalled handlers are cancelled at the end."""
    tasks = set()

    async def serve(reader, writer):
        tasks.add(asyncio.current_task())
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            await handler(request, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _UdpPeer(asyncio.DatagramProtocol):
    def __init__(self, replies):
        self.replies, self.received = replies, []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.received.append(data)
        for reply in self.replies(data, len(self.received)):
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def udp_peer(replies, host="127.0.0.1"):
    """A UDP peer answering each datagram with replies(data, n); (its port, its protocol)."""
    transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _UdpPeer(replies), local_addr=(host, 0))
    try:
        yield transport.get_extra_info("sockname")[1], peer
    finally:
        transport.close()


def stall_forever():
    return asyncio.Event().wait()


# -- TCP ------------------------------------------------------------------------------


async def test_tcp_reply_after_keepalive_provisional_and_body_in_pieces():
    async def handler(request, _reader, writer):
        writer.write(b"\r\n\r\n" + answer(request, 100))
        reply = answer(request, 401, body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")
        for i in range(0, len(reply), 7):
            writer.write(reply[i:i + 7])
            await writer.drain()
            await asyncio.sleep(0.005)
        await stall_forever()

    async with tcp_peer(handler) as port:
        out = await bounded("127.0.0.1", port, "tcp")
    assert (out["outcome"], out["code"], out["server"]) == ("reply", 401, "Asterisk PBX 20")


@pytest.mark.parametrize("length", [1000, 100000], ids=["in-limit", "over-limit"])
async def test_tcp_headers_then_a_stalled_body(length):
    async def handler(request, _reader, writer):
        writer.write(answer(request, 200, length=length) + b"partial body")
        await stall_forever()

    async with tcp_peer(handler) as port:
        out = await bounded("127.0.0.1", port, "tcp")
    if length <= sipprobe.MAX_MESSAGE:  # waited for, until the deadline
        assert out["outcome"] == "timeout" and "no complete SIP answer" in out["detail"]
    else:  # more than an OPTIONS answer can be: not waited for
        assert out["outcome"] == "invalid" and "Content-Length '100000'" in out["detail"]
        assert out["rtt_ms"] < DEADLINE * 1000


@pytest.mark.parametrize("length", ["-5", "abc", "", "1e3"])
async def test_tcp_bad_content_length_is_invalid(length):
    async def handler(request, _reader, writer):
        writer.write(answer(request, 200, length=length))
        await stall_forever()

    async with tcp_peer(handler) as port:
        out = await bounded("127.0.0.1", port, "tcp")
    if length == "":  # an empty value is no length at all: 0
        assert out["outcome"] == "reply"
    else:
        assert out["outcome"] == "invalid" and f"bad Content-Length '{length}'" in out["detail"]


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x00\xa5\x01\x00", b"HTTP/1.1 400 Bad Request\r\n\r\n",
                                     b"SIP/2.0 200\r\n\r\n", b"SIP/2.0 OK OK\r\nVia: x\r\n\r\n"])
async def test_tcp_garbage_is_invalid_at_once(garbage):
    async def handler(_request, _reader, writer):
        writer.write(garbage)
        await stall_forever()

    async with tcp_peer(handler) as port:
        out = await bounded("127.0.0.1", port, "tcp")
    if garbage == b"SIP/2.0 200\r\n\r\n":  # a status line without a reason phrase, not to us
        assert out["outcome"] == "timeout"
    else:
        assert out["outcome"] == "invalid" and out["detail"].startswith("not a SIP response")
        assert out["rtt_ms"] < DEADLINE * 1000


async def test_tcp_endless_headers_are_invalid():
    async def handler(request, _reader, writer):
        writer.write(answer(request, 200)[:-4])
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"X-Pad: " + b"a" * 4000 + b"\r\n")
                await writer.drain()

    async with tcp_peer(handler) as port:
        out = await bounded("127.0.0.1", port, "tcp")
    assert out["outcome"] == "invalid" and "without a complete SIP message" in out["detail"]


@pytest.mark.parametrize("first", [b"", b"SIP/2.0 200 OK\r\nVia: x"], ids=["nothing", "half"])
async def test_tcp_peer_that_closes(first):
    async def handler(_request, _reader, writer):
        writer.write(first)
        await writer.drain()

    async with tcp_peer(handler) as port:
        out = await bounded("127.0.0.1", port, "tcp")
    assert out["outcome"] == "invalid"
    assert out["detail"] == ("the connection was closed " +
                             ("without an answer" if not first else "in the middle of an answer"))


async def test_tcp_silent_and_slow_peers_time_out():
    async def silent(_request, _reader, _writer):
        await stall_forever()

    async def trickle(request, _reader, writer):
        for byte in answer(request, 200):
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    for handler, detail in ((silent, "0 bytes received"), (trickle, "bytes received")):
        async with tcp_peer(handler) as port:
            out = await bounded("127.0.0.1", port, "tcp")
        assert out["outcome"] == "timeout" and detail in out["detail"], out


async def test_tcp_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: a RST
        out = await bounded("127.0.0.1", port, "tcp")
    assert out["outcome"] == "refused"


# -- UDP ------------------------------------------------------------------------------


async def test_udp_reply():
    async with udp_peer(lambda data, n: [answer(data, 100), answer(data, 200)]) as (port, _):
        out = await bounded("127.0.0.1", port, "udp")
    assert (out["outcome"], out["code"]) == ("reply", 200)


async def test_udp_junk_then_nothing_is_invalid():
    async with udp_peer(lambda data, n: [b"\x00junk"] if n == 1 else []) as (port, peer):
        out = await bounded("127.0.0.1", port, "udp")
    assert out["outcome"] == "invalid" and "1 datagrams that are not SIP" in out["detail"]
    assert len(peer.received) == 2  # sent at 0 and 0.5 s, then the deadline


async def test_udp_provisional_only_is_a_timeout():
    async with udp_peer(lambda data, n: [answer(data, 180), answer(data.replace(b"Call-ID", b"X"), 200)]) as (
            port, _):
        out = await bounded("127.0.0.1", port, "udp")
    assert out["outcome"] == "timeout" and "other SIP responses ignored" in out["detail"]


async def test_udp_refused():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = await bounded("127.0.0.1", port, "udp")
    assert out["outcome"] == "refused"


# -- targets and local errors ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
@pytest.mark.parametrize("target", ["255.255.255.255", "224.0.0.1", "0.0.0.0", "::", "ff02::1",
                                    "::ffff:224.0.0.1"])
async def test_non_unicast_targets_are_not_sent_to(target, protocol):
    async with udp_peer(lambda data, n: [answer(data)], host="0.0.0.0") as (port, peer):
        out = await bounded(target, port, protocol)
    assert out["outcome"] == "error" and out["detail"].startswith("not sent:")
    assert peer.received == []  # 0.0.0.0 would have reached this peer
    assert sipprobe.not_unicast(target)


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
@pytest.mark.parametrize("target, port, source_ip, detail", [
    ("sip.example.org", 5060, None, "not sent:"),  # a name: not resolved
    ("127.0.0.1", 70000, None, ""),
    ("127.0.0.1", 5060, "192.0.2.123", "Cannot assign requested address"),  # not a local address
    ("127.0.0.1", 5060, "::1", ""),  # the wrong family
])
async def test_local_errors_are_an_outcome(protocol, target, port, source_ip, detail):
    out = await bounded(target, port, protocol, source_ip=source_ip)
    assert out["outcome"] == "error" and detail.lower() in out["detail"].lower(), out


def test_unicast_addresses():
    assert [sipprobe.not_unicast(a) for a in ("192.0.2.1", "127.0.0.1", "2001:db8::1", "::ffff:192.0.2.1")] == [
        None] * 4
    assert sipprobe.not_unicast("255.255.255.255") == "broadcast"
    assert sipprobe.not_unicast("::ffff:0.0.0.0") == "unspecified"
