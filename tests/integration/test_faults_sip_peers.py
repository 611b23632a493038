# SPDX-License-Identifier: GPL-3.0-or-later
"""verify-bypass against SIP peers that stall or answer garbage, started by the test on
the loopback of the namespace where actions run: the action answers within its
deadline, with an outcome for each probe, and refuses targets that are not one host."""

import contextlib
import signal
import socketserver
import threading
import time

import pytest
from nethvoice_bypass import sipprobe
from nodetools import probe_from_remote
from ns8dev.sip_responder import Responder

pytestmark = pytest.mark.integration

# On top of the probes' deadline: the step's start and its reads of Redis, firewalld and
# nftables. An upper bound for a loaded machine, not a measure of speed.
ACTION_OVERHEAD = 10.0
ASTERISK = Responder("Asterisk PBX 20.5")


def asterisk_reply(request, peer, length):
    """What a real SIP server answers, with a Content-Length it never honours."""
    reply = ASTERISK.handle(request, "tcp", peer, 5060)
    return reply.replace(b"Content-Length: 0", f"Content-Length: {length}".encode())


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        self.request.sendall(self.server.answer(data, self.client_address))
        self.server.stop.wait()  # then stall: the connection stays open, silent


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(self.server.answer(data, self.client_address), self.client_address)


@contextlib.contextmanager
def peers(**spec):
    """spec: name=(protocol, answer(request, peer) -> bytes); yields {name: port} while
    each peer answers once per request, then stalls until the end."""
    stop, servers, ports = threading.Event(), [], {}
    try:
        for name, (protocol, answer) in spec.items():
            kind = socketserver.ThreadingTCPServer if protocol == "tcp" else socketserver.ThreadingUDPServer
            server = kind(("127.0.0.1", 0), _TcpHandler if protocol == "tcp" else _UdpHandler)
            server.daemon_threads, server.answer, server.stop = True, answer, stop
            threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
            servers.append(server)
            ports[name] = server.server_address[1]
        yield ports
    finally:
        stop.set()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_verify_bypass_answers_in_time_with_stalling_and_hostile_peers(actions, clean_forwards):
    expected = {"stalled_body": "timeout", "garbage": "invalid", "bad_length": "invalid", "junk": "invalid"}
    with peers(stalled_body=("tcp", lambda req, peer: asterisk_reply(req, peer, 1000)),
               garbage=("tcp", lambda req, peer: b"HTTP/1.1 400 Bad Request\r\nContent-Length: abc\r\n\r\n<html>"),
               bad_length=("tcp", lambda req, peer: asterisk_reply(req, peer, -5)),
               junk=("udp", lambda req, peer: b"\x00\xff junk")) as ports:
        targets = [{"address": "127.0.0.1", "port": ports[name], "protocol": "udp" if name == "junk" else "tcp"}
                   for name in expected]
        started = time.monotonic()
        running = actions.start("verify-bypass", {"targets": targets})
        try:
            result = running.result(timeout=sipprobe.DEADLINE + ACTION_OVERHEAD)
        finally:
            if running.thread.is_alive():  # hung: end it, or it outlives the test
                running.signal(signal.SIGKILL)
                running.result()
        elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.error
    assert elapsed <= sipprobe.DEADLINE + ACTION_OVERHEAD
    extra = {p["port"]: p for p in result.decoded_output["probes"] if p["expect"] is None}
    assert {name: extra[ports[name]]["outcome"] for name in expected} == expected
    assert not any(extra[ports[name]]["ok"] for name in expected)
    assert "no complete SIP answer" in extra[ports["stalled_body"]]["detail"]
    assert "bad Content-Length '-5'" in extra[ports["bad_length"]]["detail"]
    local = [p for p in result.decoded_output["probes"] if p["expect"] == "asterisk"]
    assert local and all(p["ok"] for p in local)  # the other probes are not held up or lost


def test_verify_bypass_refuses_targets_that_are_not_one_host(actions):
    targets = [{"address": "255.255.255.255"}, {"address": "ff02::1", "protocol": "tcp"}, {"address": "0.0.0.0"},
               {"address": "::ffff:239.1.2.3"}, {"address": "192.0.2.1"}]
    errors = actions.run("verify-bypass", {"targets": targets}, expect=10)
    assert errors == [{"field": f"targets.{i}.address", "parameter": "targets", "value": t["address"],
                       "error": "targets_not_unicast"} for i, t in enumerate(targets[:4])]


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_a_port_the_firewall_rejects_is_a_timeout_not_an_error(sandbox, protocol):
    """firewalld rejects with an ICMP host-prohibited: the port is filtered, as when dropped."""
    answer = probe_from_remote(sandbox, sandbox.addresses["node"]["ipv4"], port=20999, protocol=protocol,
                               source_ip="192.0.2.11")
    assert answer["outcome"] == "timeout", answer
    assert "No route to host" in answer["detail"]  # what the reject looks like to the sender
