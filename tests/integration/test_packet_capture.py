# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel's packets, captured in a network namespace: the kernel facts the capture
relies on (in a namespace of each test's own), then what it sees on the sandbox node
when the Mediant's side of the network sends SIP, RTP and datagrams to closed ports."""

import asyncio
import os
import select
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nethvoice_bypass.bpf import CaptureSpec, program
from nethvoice_bypass.errors import Failure
from nethvoice_bypass.packetcapture import PacketCapture, attach_filter
from nethvoice_bypass.packets import decode
from ns8dev.node import run_in_netns

pytestmark = pytest.mark.integration

PYPKG = Path(__file__).resolve().parents[2] / "imageroot" / "pypkg"
def in_netns(name, fn, *args, **kwargs):
    """fn(*args, **kwargs) in a thread that joined namespace `name`: its sockets live there."""
    return run_in_netns(name, fn, *args, **kwargs)


@pytest.fixture
def netns():
    """A namespace of this test's own with lo up; deleted afterwards."""
    name = f"capture-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


FLOOD = """
import socket, sys
targets = [(host, int(port)) for host, port in (t.rsplit(":", 1) for t in sys.argv[1:])]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print("flooding", flush=True)
while True:
    for target in targets:
        s.sendto(b"x" * 160, target)
"""


@pytest.fixture
def flood(netns):
    """flood(*"host:port") sends UDP to them without pause from another process; stopped by pid."""
    started = []

    def start(*targets):
        proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", FLOOD, *targets],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "flooding"
        return proc
    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def listener(port, family=socket.AF_INET, host="127.0.0.1"):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, port))
    return sock


def send(targets, payload=b"OPTIONS sip:x SIP/2.0\r\n\r\n", source=None):
    """One datagram to each (host, port), from source when given; the family from the host."""
    for host, port in targets:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
            if source:
                s.bind((source, 0))
            s.sendto(payload, (host, port))


def at_least(cap, count):
    return lambda record: len(cap.records) >= count


def read_until(cap, condition, seconds=10):
    """Read in short slices until condition() holds (what `until` cannot see: the
    packets past the bounds are counted, not kept)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        cap.read(0.05)
    raise AssertionError("the capture never got there")


def about(decoded):
    """The datagram a record is about: itself, or the one its ICMP error quotes."""
    return decoded.icmp.quoted if decoded.icmp else decoded


# -- kernel facts, in a namespace of the test's own -----------------------------------

def test_a_socket_hooked_before_its_filter_queues_what_the_filter_would_refuse(netns, flood):
    """Why the capture opens with protocol 0: a socket opened for ETH_P_ALL is hooked
    at once, and what it queued before SO_ATTACH_FILTER stays queued after it."""
    flood("127.0.0.1:12000")
    sock = in_netns(netns, socket.socket, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
    with sock:
        assert select.select([sock], [], [], 10)[0], "the flood never reached the socket"
        attach_filter(sock, program(CaptureSpec.of({5060})))
        queued = sock.recv(2048)
    assert about(decode(queued)).dport == 12000  # RTP-like (or the ICMP error about it): the filter refuses it


def test_a_packet_socket_of_protocol_0_queues_nothing(netns, flood):
    flood("127.0.0.1:12000", "127.0.0.1:5060")
    sock = in_netns(netns, socket.socket, socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    with sock:
        assert not select.select([sock], [], [], 0.5)[0]


def test_nothing_outside_the_spec_is_returned_under_a_flood_started_first(netns, flood):
    flood(*["127.0.0.1:12000"] * 20, "127.0.0.1:5060", "127.0.0.1:10000")
    spec = CaptureSpec.of({5060})
    seen = 0
    for _ in range(40):
        cap = in_netns(netns, PacketCapture(spec, max_packets=20).open)
        with cap:
            cap.read(10, until=at_least(cap, 5))
        result = cap.result()
        assert result.drained == 0
        for _, decoded in result.decoded():
            assert (about(decoded).protocol, about(decoded).dport) == ("udp", 5060), decoded
            seen += 1
    assert seen >= 40 * 5


def test_lo_shows_each_packet_twice_and_the_filter_keeps_one(netns):
    def capture(spec):
        server = listener(5060)
        with server, PacketCapture(spec, max_packets=50) as cap:
            send([("127.0.0.1", 5060)] * 3)
            cap.read(10, until=at_least(cap, 3 if not spec.loopback_outgoing else 6))
        return cap.result()
    once = in_netns(netns, capture, CaptureSpec.of({5060}))
    assert [r.pkttype for r in once.records] == ["host"] * 3 and once.skipped_outgoing == 0
    assert {(r.ifname, r.ifindex) for r in once.records} == {("lo", 1)}
    twice = in_netns(netns, capture, CaptureSpec.of({5060}, loopback_outgoing=True))
    assert [r.pkttype for r in twice.records] == ["outgoing", "host"] * 3
    assert twice.records[0].packet == twice.records[1].packet


def test_packet_statistics_count_what_the_queue_could_not_hold(netns):
    """PACKET_STATISTICS: tp_packets counts what passed the filter, the drops included."""
    def overflow():
        server = listener(5060)
        with server, PacketCapture(CaptureSpec.of({5060}), max_packets=3, rcvbuf=4096) as cap:
            send([("127.0.0.1", 5060)] * 400 + [("127.0.0.1", 12000)] * 400)
            cap.read(0.2)  # not reading while sending: the small queue overflows
            first = cap.result()
            send([("127.0.0.1", 5060)] * 5)
            read_until(cap, lambda: cap.dropped == first.dropped + 5)
        return first, cap.result()
    first, final = in_netns(netns, overflow)
    assert first.kernel_drops > 0 and first.dropped > 0
    assert first.kernel_packets == len(first.records) + first.dropped + first.kernel_drops <= 400
    assert final.kernel_packets == first.kernel_packets + 5  # reading the counters reset them: summed
    assert len(final.records) == 3 and final.kernel_drops == first.kernel_drops


def test_the_bounds_keep_the_start_of_the_window(netns):
    def capture(**bounds):
        server = listener(5060)
        with server, PacketCapture(CaptureSpec.of({5060}), **bounds) as cap:
            send([("127.0.0.1", 5060)] * 20)
            read_until(cap, lambda: cap.dropped + len(cap.records) >= 20)
        return cap.result()
    by_count = in_netns(netns, capture, max_packets=5)
    assert (len(by_count.records), by_count.dropped) == (5, 15)
    size = len(by_count.records[0].packet)
    by_bytes = in_netns(netns, capture, max_bytes=3 * size + 1)
    assert (len(by_bytes.records), by_bytes.kept_bytes, by_bytes.dropped, by_bytes.dropped_bytes) == \
        (3, 3 * size, 17, 17 * size)


def test_what_is_queued_after_an_until_is_read_too(netns):
    def capture():
        server = listener(5060)
        with server, PacketCapture(CaptureSpec.of({5060})) as cap:
            send([("127.0.0.1", 5060)] * 2)
            assert cap.read(10, until=at_least(cap, 1))
            send([("127.0.0.1", 5060)] * 3)
            for _ in range(200):
                if len(cap.records) == 5:
                    break
                cap.read_ready()
                time.sleep(0.05)
        return cap.result()
    assert len(in_netns(netns, capture).records) == 5


def test_a_capture_opened_in_a_namespace_stays_there(netns):
    cap = in_netns(netns, PacketCapture(CaptureSpec.of({5999}, unreachable="none")).open)
    with cap:  # opened already: not again in this thread's namespace
        send([("127.0.0.1", 5999)])  # from the test's own namespace
        in_netns(netns, send, [("::1", 5999)])
        cap.read(10, until=at_least(cap, 1))
        cap.read(0.2)
    assert [(r.decoded().family, r.decoded().dport) for r in cap.records] == [(6, 5999)]


def test_one_interface_only(netns):
    def capture(interface):
        with PacketCapture(CaptureSpec.of({5060}), interface=interface) as cap:
            send([("127.0.0.1", 5060)])
            cap.read(1.0, until=at_least(cap, 1))
        return cap.result()
    assert [r.ifname for r in in_netns(netns, capture, "lo").records][:1] == ["lo"]
    with pytest.raises(Failure, match="no network interface nope0 to capture on"):
        in_netns(netns, capture, "nope0")


def test_without_cap_net_raw_one_line_says_so():
    code = ("from nethvoice_bypass.bpf import CaptureSpec\n"
            "from nethvoice_bypass.errors import Failure\n"
            "from nethvoice_bypass.packetcapture import PacketCapture\n"
            "try:\n    PacketCapture(CaptureSpec.of({5060})).open()\n"
            "except Failure as e:\n    print(e)\n")
    proc = subprocess.run(["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", sys.executable, "-c", code],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(PYPKG)))
    assert proc.stdout == "a packet capture needs root (CAP_NET_RAW): run it as root\n", proc.stderr


def test_read_async_shares_the_loop_with_a_listener(netns):
    """The diagnosis listens for the proxy's HEP mirror in the same event loop."""
    async def both(cap, hep):
        loop = asyncio.get_running_loop()
        mirrored = []

        class Hep(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                mirrored.append(data)
        transport, _ = await loop.create_datagram_endpoint(Hep, sock=hep)
        loop.call_later(0.05, in_netns, netns, send, [("127.0.0.1", 5060), ("127.0.0.1", 5065)] * 3)
        done = await cap.read_async(10, until=at_least(cap, 3))
        for _ in range(200):
            if len(mirrored) == 3:
                break
            await asyncio.sleep(0.05)
        transport.close()
        return done, mirrored
    cap = in_netns(netns, PacketCapture(CaptureSpec.of({5060}, unreachable="none")).open)
    hep = in_netns(netns, listener, 5065)
    with cap:
        done, mirrored = asyncio.run(both(cap, hep))
    assert done and len(cap.records) == 3 and len(mirrored) == 3
    assert all(r.decoded().dport == 5060 for r in cap.records)


# -- on the sandbox node: the Mediant's side sends, the node captures -----------------

MEDIANT, MEDIANT6, OTHER, NODE, NODE6 = "192.0.2.10", "2001:db8::10", "192.0.2.11", "192.0.2.1", "2001:db8::1"


def options(target, port, source, timeout=5.0):
    """A SIP OPTIONS over UDP from source; the reply's text, or None."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    host = f"[{target}]" if ":" in target else target
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        branch, local_port = uuid.uuid4().hex[:12], s.getsockname()[1]
        local = f"[{source}]" if ":" in source else source
        s.sendto((f"OPTIONS sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP {local}:{local_port};branch=z9hG4bK{branch};rport\r\n"
                  f"From: <sip:capture@{local}>;tag=1\r\nTo: <sip:{host}>\r\nCall-ID: {branch}@capture\r\n"
                  "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(), (target, port))
        try:
            return s.recv(65535).decode(errors="replace")
        except TimeoutError:
            return None


def on_node(sandbox, spec, **bounds):
    """A capture opened in the node's namespace: its socket stays there."""
    return sandbox.in_netns("node", PacketCapture(spec, **bounds).open)


def server_header(payload):
    return next((line for line in payload.decode(errors="replace").split("\r\n") if line.startswith("Server:")), None)


def test_sip_to_5060_keeps_its_port_in_the_capture_while_firewalld_redirects_it(sandbox, actions, clean_forwards):
    """The proxy's LAN rule redirects 5060 to 6060, the bypass forward to Asterisk's
    port: the capture sees 5060 both times, and the answer says who answered."""
    cap = on_node(sandbox, CaptureSpec.of({5060}, direction="either", peers=[MEDIANT]))
    with cap:
        before = sandbox.in_netns("remote", options, NODE, 5060, MEDIANT)
        actions.run("add-port-forward", {"source": MEDIANT})
        after = sandbox.in_netns("remote", options, NODE, 5060, MEDIANT)
        cap.read(10, until=at_least(cap, 4))
    assert before and after and "Asterisk" not in before and "Asterisk PBX" in after
    seen = [(r.ifname, r.pkttype, d.src, d.dst, d.dport if d.dst == NODE else d.sport)
            for r, d in cap.result().decoded()]
    assert seen == [("eth0", "host", MEDIANT, NODE, 5060), ("eth0", "outgoing", NODE, MEDIANT, 5060)] * 2
    replies = [server_header(d.payload) for r, d in cap.result().decoded() if r.pkttype == "outgoing"]
    assert "Asterisk" not in replies[0] and replies[1] == "Server: Asterisk PBX"


def test_a_closed_port_and_a_refused_port_come_back_as_icmp(sandbox):
    """15000/udp is open in the zone (the proxy's RTP range) with nothing on it: port
    unreachable; 5061/udp is not open: firewalld's reject, administratively prohibited.
    Sent from the other LAN address: the kernel rate-limits ICMP errors per peer, and
    other tests send the Mediant's address many."""
    cap = on_node(sandbox, CaptureSpec.of({5061, 15000}, protocols=["udp"], peers=[OTHER]))

    def errors():
        return {d.icmp.quoted.dport: (d.icmp.reason, d.dst, r.pkttype, d.icmp.quoted.src)
                for r, d in cap.result().decoded() if d.icmp}
    with cap:
        for _ in range(5):  # a peer's token bucket refills one error a second
            sandbox.in_netns("remote", send, [(NODE, 15000), (NODE, 5061)], source=OTHER)
            cap.read(1.5, until=lambda r: len(errors()) == 2)
            if len(errors()) == 2:
                break
    assert errors() == {15000: ("port", OTHER, "outgoing", OTHER), 5061: ("prohibited", OTHER, "outgoing", OTHER)}
    datagrams = {(d.dport, r.pkttype, r.ifname) for r, d in cap.result().decoded() if not d.icmp}
    assert datagrams == {(5061, "host", "eth0"), (15000, "host", "eth0")}


def test_a_tcp_syn_to_5060_and_the_answer(sandbox):
    cap = on_node(sandbox, CaptureSpec.of({5060}, protocols=["tcp"], direction="either", peers=[MEDIANT]))

    def connect():
        with socket.create_connection((NODE, 5060), timeout=5, source_address=(MEDIANT, 0)):
            pass
    with cap:
        sandbox.in_netns("remote", connect)
        cap.read(10, until=at_least(cap, 2))
    first, second = (d for _, d in cap.result().decoded()[:2])
    assert (first.src, first.dport, first.tcp_flags) == (MEDIANT, 5060, ("SYN",))
    assert (second.src, second.sport, second.tcp_flags) == (NODE, 5060, ("SYN", "ACK"))


def test_rtp_never_leaves_the_kernel(sandbox):
    """The filter, not Python, drops the media: what passed it is what was kept."""
    cap = on_node(sandbox, CaptureSpec.of({5060, 5061, 6060}, direction="either", peers=[MEDIANT]))
    with cap:
        rtp = [(NODE, port) for port in range(10000, 20000, 20)]
        sandbox.in_netns("remote", send, rtp, b"\x80" + bytes(171), MEDIANT)
        assert sandbox.in_netns("remote", options, NODE, 5060, MEDIANT)
        cap.read(10, until=at_least(cap, 2))
        cap.read(0.2)
    result = cap.result()
    assert {about(d).protocol for _, d in result.decoded()} == {"udp"}
    assert all(5060 in (about(d).sport, about(d).dport) for _, d in result.decoded())
    assert result.kernel_packets == len(result.records) == 2 and result.kernel_drops == 0


def test_sip_over_ipv6(sandbox):
    """The proxy listens on IPv4 only, as the real one does: an IPv6 request to 5060 is
    captured, and so is the node's ICMPv6 port unreachable that quotes it."""
    cap = on_node(sandbox, CaptureSpec.of({5060}, direction="either", peers=[MEDIANT6]))
    with cap:
        reply = sandbox.in_netns("remote", options, NODE6, 5060, MEDIANT6)
        cap.read(10, until=at_least(cap, 2))
    assert reply is None
    request, answer = (d for _, d in cap.result().decoded()[:2])
    assert (request.family, request.src, request.dst, request.dport) == (6, MEDIANT6, NODE6, 5060)
    assert (answer.family, answer.src, answer.dst, answer.protocol) == (6, NODE6, MEDIANT6, "icmpv6")
    assert answer.icmp.reason == "port" and answer.icmp.quoted.dport == 5060


# -- the kernel runs the program as the unit tests' interpreter does ------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the unit tests' packet kit
from bpfkit import frames, run  # noqa: E402

SPECS = [CaptureSpec.of({5060, 5061, 6060}, direction="either"),
         CaptureSpec.of({5060, 6060}, direction="either", peers=["192.0.2.0/24", "2001:db8::/64"]),
         CaptureSpec.of({5060, (10000, 20000)}, protocols=["udp"], unreachable="port", peers=["192.0.2.10"])]


def sentinel(index):
    """An IPv4 UDP datagram from 192.0.2.10 to 5060: every spec above keeps it."""
    payload = b"sentinel %d" % index
    udp = struct.pack("!HHHH", 40000, 5060, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([192, 0, 2, 10]),
                       bytes([192, 0, 2, 1])) + udp


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SPECS), st.lists(frames(), min_size=30, max_size=60))
def test_the_kernel_keeps_what_the_interpreter_keeps(netns, spec, batch):
    """Packets written on lo with a packet socket (skb->protocol as given), each followed
    by a sentinel: what the capture holds between sentinels is what the kernel kept."""
    def capture():
        out = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
        with out, PacketCapture(spec, max_packets=10_000) as cap:
            for index, (packet, protocol, _, _) in enumerate(batch):  # to lo's own (all-zero) address
                out.sendto(packet, ("lo", protocol, 0, 0, bytes(6)))
                out.sendto(sentinel(index), ("lo", 0x0800, 0, 0, bytes(6)))
            read_until(cap, lambda: any(r.packet == sentinel(len(batch) - 1) for r in cap.records))
        return cap.result()
    records = in_netns(netns, capture).records
    kept, index = set(), 0
    for record in records:
        if record.packet == sentinel(index):
            index += 1
        else:
            assert record.pkttype == "host" and record.ifname == "lo"
            kept.add(index)
    code = program(spec)
    expected = {i for i, (packet, protocol, _, _) in enumerate(batch)
                if run(code, packet, protocol=protocol, pkttype=0, ifindex=1)}
    assert kept == expected, [(i, batch[i][0].hex(), hex(batch[i][1])) for i in kept ^ expected]
