# SPDX-License-Identifier: GPL-3.0-or-later
"""Joins the root namespace's loopback and a network namespace's for the proxy's ports.

On a node Kamailio shares the host's network: the module's actions reach it at
127.0.0.1:5060 and its siptrace mirror goes to 127.0.0.1:5065. In the sandbox
Kamailio runs in the node namespace, the actions in the root namespace. This relay
holds sockets in both (a socket belongs to the namespace its thread was in when it
was created, see run_in_netns):

- SIP over UDP and TCP (and Kamailio's /RPC, HTTP on the TCP port): the root's
  127.0.0.1:<sip> to the namespace's 127.0.0.1:<sip>, each UDP peer and TCP
  connection from a socket of its own, so Kamailio sees the node's 127.0.0.1 and
  answers the RPC and the keepalive, and its replies find their way back;
- HEP: what arrives on the namespace's 127.0.0.1:<hep> is sent on to the root's
  127.0.0.1:<hep>; when nobody listens there the datagram is lost, as on a node.

With --shared, a root address taken by another sandbox's relay (or by any other
program) is waited for and taken over when it frees, so two sandboxes can run; in the
meantime the root namespace's 127.0.0.1:<sip> answers with the other sandbox's proxy.

    python -m ns8dev.loopback_relay --netns NAME --sip-port 5060 --hep-port 5065 [--shared]

Prints `ready` once the namespace side is bound; `<proto> 127.0.0.1:<port> busy` and
`... taken over` for the shared root addresses.
"""

import argparse
import asyncio
import errno
import socket
import time

from .node import run_in_netns

LOOPBACK = "127.0.0.1"
UDP_IDLE = 120.0  # seconds before a UDP peer's socket in the namespace is closed


def udp_socket(host=None, port=0, connect=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if host is not None:
        sock.bind((host, port))
    if connect:
        sock.connect(connect)
    return sock


class UdpRelay:
    """Root 127.0.0.1:<port> <-> namespace 127.0.0.1:<port>, one namespace socket per peer."""

    def __init__(self, loop, netns, port, front):
        self.loop, self.netns, self.port, self.front = loop, netns, port, front
        self.peers = {}  # root peer address -> [namespace socket, last use]
        loop.add_reader(front.fileno(), self.from_root)

    def from_root(self):
        try:
            data, peer = self.front.recvfrom(65535)
        except OSError:
            return
        entry = self.peers.get(peer)
        if entry is None:
            inner = run_in_netns(self.netns, udp_socket, LOOPBACK, 0, (LOOPBACK, self.port))
            entry = self.peers[peer] = [inner, 0.0]
            self.loop.add_reader(inner.fileno(), self.from_namespace, peer, inner)
        entry[1] = time.monotonic()
        try:
            entry[0].send(data)
        except OSError:
            pass  # nothing listens in the namespace: lost, as a datagram is

    def from_namespace(self, peer, inner):
        try:
            data = inner.recv(65535)
            self.front.sendto(data, peer)
        except OSError:
            pass

    async def expire(self):
        while True:
            await asyncio.sleep(UDP_IDLE / 4)
            now = time.monotonic()
            for peer, (inner, used) in list(self.peers.items()):
                if now - used > UDP_IDLE:
                    self.loop.remove_reader(inner.fileno())
                    inner.close()
                    del self.peers[peer]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def tcp_handler(netns, port):
    async def handle(reader, writer):
        loop = asyncio.get_running_loop()
        inner = run_in_netns(netns, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        inner.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(inner, (LOOPBACK, port)), 3)
        except (TimeoutError, OSError):
            inner.close()
            writer.close()
            return
        inner_reader, inner_writer = await asyncio.open_connection(sock=inner)
        await asyncio.gather(pipe(reader, inner_writer), pipe(inner_reader, writer))
    return handle


def front_socket(kind, port):
    """A root-namespace socket on 127.0.0.1:port. No SO_REUSEADDR on UDP: a second
    relay must find the port busy, not share it."""
    sock = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def hold(kind, port, serve, shared):
    """Bind the root address and serve it; with shared, wait while it is busy."""
    proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    announced = False
    while True:
        try:
            sock = front_socket(kind, port)
        except OSError as err:
            if not (shared and err.errno == errno.EADDRINUSE):
                raise
            if not announced:
                print(f"{proto} {LOOPBACK}:{port} busy: another program answers there for now", flush=True)
                announced = True
            await asyncio.sleep(0.5)
            continue
        await serve(sock)
        print(f"{proto} {LOOPBACK}:{port} {'taken over' if announced else 'held'}", flush=True)
        return


class HepForward(asyncio.DatagramProtocol):
    def __init__(self, out, port):
        self.out, self.port = out, port

    def datagram_received(self, data, addr):
        try:
            self.out.sendto(data, (LOOPBACK, self.port))
        except OSError:
            pass  # nobody listens (ICMP refused on a later send): lost


async def serve(netns, sip_port, hep_port, shared):
    loop = asyncio.get_running_loop()
    hep_in = run_in_netns(netns, udp_socket, LOOPBACK, hep_port)
    await loop.create_datagram_endpoint(lambda: HepForward(udp_socket(), hep_port), sock=hep_in)
    relays = []

    async def serve_udp(sock):
        relay = UdpRelay(loop, netns, sip_port, sock)
        relays.append(asyncio.ensure_future(relay.expire()))

    async def serve_tcp(sock):
        await asyncio.start_server(tcp_handler(netns, sip_port), sock=sock)

    holders = [asyncio.ensure_future(hold(socket.SOCK_DGRAM, sip_port, serve_udp, shared)),
               asyncio.ensure_future(hold(socket.SOCK_STREAM, sip_port, serve_tcp, shared))]
    await asyncio.sleep(0.05)  # let a free port be held before saying ready
    print("ready", flush=True)
    await asyncio.gather(*holders)
    await asyncio.Event().wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns", required=True)
    parser.add_argument("--sip-port", type=int, default=5060)
    parser.add_argument("--hep-port", type=int, default=5065)
    parser.add_argument("--shared", action="store_true")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.netns, args.sip_port, args.hep_port, args.shared))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
