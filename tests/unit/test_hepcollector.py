"""The HEP listener on real loopback sockets: everything sent is kept or counted, within its bounds."""

import asyncio
import socket

import pytest
from nethvoice_bypass import hep, hepcollector
from nethvoice_bypass.errors import CaptureBusy, Failure
from nethvoice_bypass.hepcollector import HepCollector
from test_sipmsg import INVITE

pytestmark = pytest.mark.unit

TRUNK, PROXY = ("203.0.113.10", 5060), ("198.51.100.5", 5060)


def frames(count):
    """HEPv2 copies of INVITEs, one Call-ID each, as the proxy mirrors them."""
    return [hep.encode_v2(INVITE.replace(b"5f1c9a", f"{n:06}".encode()), src=TRUNK, dst=PROXY, time=1e9 + n)
            for n in range(count)]


def send(address, datagrams):
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        for datagram in datagrams:
            sender.sendto(datagram, address)


async def received(collector, count, timeout=10.0):
    """Let the loop read until `count` datagrams came in (or give up: the counters tell)."""
    for _ in range(int(timeout / 0.01)):
        if collector.counters().received + (collector.counters().kernel_dropped or 0) >= count:
            return
        await asyncio.sleep(0.01)


async def test_a_burst_is_kept_whole_and_in_order():
    sent = frames(3000)
    async with HepCollector("127.0.0.1", 0) as collector:
        send(collector.address, sent)  # the loop reads nothing meanwhile: the socket buffer holds them
        await received(collector, len(sent))
    capture = collector.result()
    assert capture.counters.to_json() == {
        "received": 3000, "kept": 3000, "dropped_bounds": 0, "unparsable": 0, "not_sip": 0, "kernel_dropped": 0,
        "kept_bytes": capture.counters.kept_bytes, "rcvbuf": capture.counters.rcvbuf}
    assert [m.sip.call_id for m in capture.messages] == [f"{n:06}@203.0.113.10" for n in range(3000)]
    assert capture.messages[0].hep.src == TRUNK and capture.messages[0].sip.method == "INVITE"
    first = capture.to_json()["messages"][0]
    assert (first["src"], first["sip"]["request_uri"]["user"]) == (list(TRUNK), "05****01")
    assert "0512345601" not in str(capture.to_json())


async def test_what_is_not_hep_or_not_sip_is_counted():
    datagrams = [b"\x16\x03\x01garbage", hep.encode_v2(b"\x00binary", src=TRUNK, dst=PROXY), *frames(2)]
    async with HepCollector("::1", 0) as collector:
        send(collector.address, datagrams)
        await received(collector, len(datagrams))
    capture = collector.result()
    assert (capture.counters.unparsable, capture.counters.not_sip, len(capture.messages)) == (1, 1, 3)
    assert capture.messages[0].sip is None and capture.messages[0].hep.payload == b"\x00binary"


async def test_no_more_than_max_messages_are_kept_and_the_rest_is_counted():
    async with HepCollector("127.0.0.1", 0, max_messages=100) as collector:
        send(collector.address, frames(300))
        await received(collector, 300)
    counters = collector.result().counters
    assert (counters.received, counters.kept, counters.dropped_bounds) == (300, 100, 200)
    assert len(collector.result().messages) == 100


async def test_no_more_than_max_bytes_are_kept():
    sent = frames(50)
    size = len(sent[0]) + hepcollector.FRAME_OVERHEAD
    async with HepCollector("127.0.0.1", 0, max_bytes=10 * size + size // 2) as collector:
        send(collector.address, sent)
        await received(collector, 50)
    counters = collector.result().counters
    assert (counters.kept, counters.dropped_bounds, counters.kept_bytes) == (10, 40, 10 * size)


async def test_datagrams_the_kernel_dropped_are_counted():
    async with HepCollector("127.0.0.1", 0, rcvbuf=4096) as collector:  # a few frames fill it
        send(collector.address, frames(200))
    counters = collector.result().counters
    assert counters.kernel_dropped > 0
    assert counters.received + counters.kernel_dropped == 200


async def test_a_port_someone_else_listens_on_is_capture_busy():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sngrep:
        sngrep.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sngrep.bind(("127.0.0.1", 0))
        port = sngrep.getsockname()[1]
        with pytest.raises(CaptureBusy) as err:
            async with HepCollector("127.0.0.1", port):
                pass
    assert str(err.value) == f"capture busy: something else listens on 127.0.0.1:{port} (a support session's sngrep?)"


async def test_other_bind_failures_are_one_line():
    with pytest.raises(Failure, match=r"^cannot listen for the proxy's HEP mirror on 192\.0\.2\.1:5065: .+$"):
        async with HepCollector("192.0.2.1", 5065):  # not an address of this host
            pass


async def test_the_port_is_free_again_after_the_window():
    capture = None
    async with HepCollector("127.0.0.1", 0) as collector:
        port = collector.address[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", port))
    capture = await hepcollector.capture(0.05, "127.0.0.1", port, max_messages=10)
    assert capture.messages == () and capture.counters.received == 0


async def test_a_result_during_the_window_and_after_it_adds_up():
    async with HepCollector("127.0.0.1", 0) as collector:
        send(collector.address, frames(5))
        await received(collector, 5)
        first = collector.result()
        send(collector.address, frames(7))
    final = collector.result()
    assert (len(first.messages), len(final.messages), final.counters.received) == (5, 12, 12)
    assert final.messages[:5] == first.messages
