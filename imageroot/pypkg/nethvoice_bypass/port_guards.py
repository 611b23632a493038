# SPDX-License-Identifier: GPL-3.0-or-later
"""Who holds which port on this node, and whether a forward may take one (pure).

A forward of port P takes every packet for P from its source (from every source with
allow_any_source) to Asterisk: whatever listened on P no longer gets them. 5060 is the
port a forward exists to take; any other port must be one nobody on the node uses.
guards.py re-exports what is public here.
"""

from dataclasses import dataclass

from .errors import InvalidValue
from .model import PROXY_LAN_PORTS, SIP_PORT, SIPS_PORT

# The node's own ports: (protocol, port, holder, what a forward of it breaks). ns8-core and
# ns8-traefik paths; none of these is in a module's TCP_*/UDP_* environment.
NODE_PORTS = (
    # sshd: "SSH always open" (ns8-core docs/core/firewall.md)
    ("tcp", 22, "SSH", "forwarding it would lock the administrators out of the node's shell"),
    # traefik's entry points http ":80", https ":443", metrics ":8082" (ns8-traefik
    # imageroot/actions/create-module/10expandconfig); http and https opened by
    # ns8-core core/imageroot/var/lib/nethserver/node/install-core.sh
    ("tcp", 80, "traefik (HTTP)", "forwarding it would break the web applications and certificate renewal"),
    ("tcp", 443, "traefik (cluster-admin)", "forwarding it would lock the admin out"),
    ("tcp", 8082, "traefik (metrics)", "forwarding it would stop traefik's metrics"),
    # api-server.service: LISTEN_ADDRESS=:9311 (core/imageroot/etc/systemd/system/)
    ("tcp", 9311, "the api-server (cluster API)", "forwarding it would cut the cluster API off"),
    # Redis: REDIS_REPLICA_ADDRESS=127.0.0.1:6379 (core/imageroot/etc/nethserver/agent.env);
    # replicas follow the leader on 6379 (cluster/actions/join-node/30start_replication)
    ("tcp", 6379, "Redis (the cluster database)", "forwarding it would cut the cluster database off"),
    # node_exporter.service sets no listen address: its default 9100, scraped over the VPN
    ("tcp", 9100, "node_exporter (node metrics)", "forwarding it would stop the node's metrics"),
    # WireGuard wg0: ListenPort 55820 (core/imageroot/usr/local/agent/pypkg/cluster/vpn.py
    # initialize_wgconf), firewalld service ns-wireguard 55820/udp (create-cluster/60wgboot)
    ("udp", 55820, "the cluster VPN (WireGuard)", "forwarding it would cut this node off the cluster"),
)
# The proxy's fixed ports besides its SIP port (nethvoice-proxy modules/kamailio/bootstrap.sh
# listen lines): check_forward_port refuses them by their own reasons before any holder.
PROXY_PORTS = (("tcp", SIPS_PORT, "SIP over TLS"), ("udp", PROXY_LAN_PORTS[0], "SIP for the LAN behind NAT"),
               ("tcp", PROXY_LAN_PORTS[0], "SIP for the LAN behind NAT"),
               ("tcp", PROXY_LAN_PORTS[1], "SIP over TLS for the LAN behind NAT"))
VPN = ("the cluster VPN (WireGuard endpoint)", "forwarding it would cut this node off the cluster")
# Media ranges in environments, by variable names only their module uses: the proxy's
# rtpengine (create-module/10env RTP_PORT_MIN/MAX, 10000-20000) and NethVoice's Asterisk
# and Janus (create-module/05setenvs). NethVoice's single UDP ports: SIP (1.7 listens on
# ASTERISK_SIP_PORT for UDP too; 1.8 has ASTERISK_SIP_UDP_PORT) and IAX.
MEDIA_RANGES = (("RTP_PORT_MIN", "RTP_PORT_MAX", "RTP media of the proxy"),
                ("ASTERISK_RTPSTART", "ASTERISK_RTPEND", "Asterisk RTP media"),
                ("JANUS_RTPSTART", "JANUS_RTPEND", "WebRTC media"))
UDP_SINGLES = (("ASTERISK_SIP_UDP_PORT", "Asterisk SIP"), ("ASTERISK_SIP_PORT", "Asterisk SIP"),
               ("ASTERISK_IAX_PORT", "Asterisk IAX"))


@dataclass(frozen=True)
class PortHolder:
    """Ports first..last/protocol, held by `holder`; `effect` says what a forward would break."""

    protocol: str
    first: int
    last: int
    holder: str
    effect: str

    def holds(self, port, protocol):
        return self.protocol == protocol and self.first <= port <= self.last


def port_range(text):
    """`5060` or `10000-20000` -> (first, last); None when it is not a port or a range."""
    first, dash, last = str(text).strip().partition("-")
    last = last if dash else first
    if not all(part.isascii() and part.isdigit() for part in (first, last)):
        return None
    first, last = int(first), int(last)
    return (first, last) if 1 <= first <= last <= 65535 else None


def merged(ranges):
    """[(first, last)] -> the same ports as sorted ranges that neither touch nor overlap."""
    out = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(last, out[-1][1]))
        else:
            out.append((first, last))
    return out


def module_ports(env):
    """A module's environment -> {protocol: [(first, last)]} from what node add-module wrote.

    add-module (core/imageroot/var/lib/nethserver/node/actions/add-module/50update) sets
    TCP_PORT (the first port), TCP_PORTS_RANGE `a-b` (more than one port) and TCP_PORTS
    `a,b,...` (up to 8); the same for UDP_*. A value that does not parse is skipped.
    """
    found = {"tcp": [], "udp": []}
    for protocol in found:
        prefix = protocol.upper()
        texts = [env.get(f"{prefix}_PORT"), env.get(f"{prefix}_PORTS_RANGE"),
                 *str(env.get(f"{prefix}_PORTS") or "").split(",")]
        found[protocol] = merged(r for r in map(port_range, filter(None, texts)) if r)
    return found


def _module_holders(mid, env):
    """A module's ports as PortHolders: its allocated ports, its single ports, then its media
    ranges (NethVoice 1.7's RTP range can hold its own SIP port: the SIP port is named)."""
    holders = [PortHolder(protocol, first, last, f"{mid} (its {protocol.upper()} ports)",
                          f"forwarding it would take it away from {mid}")
               for protocol, ranges in module_ports(env).items() for first, last in ranges]
    for name, what in UDP_SINGLES:
        span = port_range(env.get(name, ""))
        if span:
            holders.append(PortHolder("udp", *span, f"{mid} ({what})", f"forwarding it would take it away from {mid}"))
    for low, high, what in MEDIA_RANGES:
        span = port_range(f"{env.get(low)}-{env.get(high)}")
        if span:
            holders.append(PortHolder("udp", *span, f"{mid} ({what})", "forwarding it would cut the audio of calls"))
    return holders


def port_holders(*, open_ports=(), modules=None, proxy_id=None, proxy_srv=None, vpn_ports=()):
    """Who holds which ports on this node -> [PortHolder], the most telling first.

    The node's own services (NODE_PORTS, and vpn_ports: the WireGuard ports read from
    the node, cluster.vpn_endpoint_port), the proxy's SIP ports (its srv keys, then
    PROXY_PORTS when proxy_id names it), every
    module of this node (modules: {id: environment}, ClusterView.modules, the proxy's
    RTP range among them), then what firewalld opens: open_ports
    [{"port": "443" | "10000-20000", "protocol": "tcp" | "udp", "owner": "service https" | "port"}].
    """
    holders = [PortHolder(protocol, port, port, holder, effect) for protocol, port, holder, effect in NODE_PORTS]
    holders += [PortHolder("udp", port, port, *VPN) for port in vpn_ports if port]
    for protocol, srv in sorted((proxy_srv or {}).items()):
        span = port_range((srv or {}).get("port", ""))
        if span:
            holders.append(PortHolder(protocol, *span, f"{proxy_id or 'the proxy'} (the proxy's SIP)",
                                      "forwarding it would take SIP away from the proxy"))
    if proxy_id:
        holders += [PortHolder(protocol, port, port, f"{proxy_id} ({what})", "forwarding it would take it away "
                                                                               "from the proxy")
                    for protocol, port, what in PROXY_PORTS]
    for mid, env in sorted((modules or {}).items()):
        holders += _module_holders(mid, env or {})
    for opened in open_ports:
        span, owner = port_range(opened.get("port", "")), opened.get("owner") or "port"
        if span and opened.get("protocol") in ("tcp", "udp"):
            holder = "a port open in the firewall" if owner == "port" else f"the firewall's {owner}"
            holders.append(PortHolder(opened["protocol"], *span, holder, "forwarding it would take it away from "
                                                                          "what listens there"))
    return holders


def check_forward_port(port, protocol, holders):
    """(port, protocol, [PortHolder]) -> None when a forward may take it; InvalidValue otherwise.

    Reasons: invalid_port, sips_not_supported (5061), reserved_by_proxy (6060, 6061: the
    proxy's LAN ports), in_use (the message names the first holder). 5060 is always
    allowed: it is the port a forward exists to take, for its source.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidValue("invalid_port", f"not a port number: {port!r}")
    if port == SIP_PORT:
        return
    if port == SIPS_PORT:
        raise InvalidValue("sips_not_supported", f"port {port} is SIP over TLS: it stays with the proxy")
    if port in PROXY_LAN_PORTS:
        raise InvalidValue("reserved_by_proxy", f"port {port} is the proxy's port for the LAN behind NAT")
    for holder in holders:
        if holder.holds(port, protocol):
            raise InvalidValue("in_use", f"port {port}/{protocol} is used by {holder.holder}: {holder.effect}")
