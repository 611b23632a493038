# SPDX-License-Identifier: GPL-3.0-or-later
"""The sandbox's network: namespace `node` (eth0 192.0.2.1/24 + 2001:db8::1/64, wg0
with the VPN address 10.5.4.1) and namespace `remote` ("the Mediant" 192.0.2.10 and
"another device" 192.0.2.11, with their IPv6 twins), joined by a veth pair."""

import os
import socket
import struct
import time

from .node import run


def create(sb):
    """Both namespaces, recorded in sandbox.json one by one (so a failure removes them)."""
    node, remote = sb.netns["node"], sb.netns["remote"]
    for role, name in sb.netns.items():
        run("ip", "netns", "add", name)
        sb.state["netns"][role] = name
        sb.save()
    a = sb.addresses
    run("ip", "-n", node, "-batch", "-", input="\n".join([
        "link set lo up",
        f"link add eth0 type veth peer name eth0 netns {remote}",
        f"addr add {a['node']['ipv4']}/24 dev eth0",
        f"addr add {a['node']['ipv6']}/64 dev eth0 nodad",
        "link set eth0 up",
        # NS8's WireGuard interface carries the cluster VPN address. An empty
        # bridge will do (some kernels lack the dummy and wireguard drivers).
        "link add wg0 type bridge",
        f"addr add {a['service_ip']}/24 dev wg0",
        "link set wg0 up",
    ]) + "\n")
    run("ip", "-n", remote, "-batch", "-", input="\n".join([
        "link set lo up",
        f"addr add {a['mediant']['ipv4']}/24 dev eth0",
        f"addr add {a['other']['ipv4']}/24 dev eth0",
        f"addr add {a['mediant']['ipv6']}/64 dev eth0 nodad",
        f"addr add {a['other']['ipv6']}/64 dev eth0 nodad",
        "link set eth0 up",
    ]) + "\n")


def check_pings(sb):
    """Both ways, both families, through the running firewall."""
    a = sb.addresses
    for src, dst in (("remote", a["node"]["ipv4"]), ("remote", a["node"]["ipv6"]),
                     ("node", a["mediant"]["ipv4"]), ("node", a["other"]["ipv6"])):
        if not sb.in_netns(src, ping, dst):
            raise RuntimeError(f"ping {src} -> {dst}: no echo reply")


def ping(dst, timeout=2.0):
    """One ICMP echo over a raw socket (iputils-ping may not be installed)."""
    v6 = ":" in dst
    family, proto, req, rep = ((socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129) if v6
                               else (socket.AF_INET, socket.IPPROTO_ICMP, 8, 0))
    ident = os.getpid() & 0xFFFF
    packet = struct.pack("!BBHHH", req, 0, 0, ident, 1) + b"sandbox!"  # even length
    if not v6:  # the kernel fills the ICMPv6 checksum, not the ICMPv4 one
        total = sum(struct.unpack(f"!{len(packet) // 2}H", packet))
        total = (total >> 16) + (total & 0xFFFF)
        packet = packet[:2] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + packet[4:]
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        s.settimeout(timeout)
        s.sendto(packet, (dst, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(1500)
            except TimeoutError:
                return False
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]  # v4 raw reads include the IP header
            if icmp[0] == rep and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
    return False
