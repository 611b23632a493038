# SPDX-License-Identifier: GPL-3.0-or-later
"""What the kernel capture adds to a diagnosis (pure): traffic that never reaches the proxy
(forwarded past it by one of our forwards, sent to a closed port, TLS it cannot show), a
forward whose source sent nothing while another source fails, and one summary per source."""

import ipaddress
from dataclasses import dataclass

from .diagnosis import Problem


@dataclass(frozen=True)
class Seen:
    """One packet the kernel capture kept: into the node from a device (`inbound`) or out
    of it; `unreachable_port` is the port an ICMP port unreachable quotes."""

    time: float
    source: str
    sport: int
    dest: str
    dport: int
    protocol: str
    inbound: bool = True
    unreachable_port: int | None = None
    unreachable: str | None = None   # "port": nothing listens; "prohibited": the firewall refused it


def _covers(forward, ip):
    if forward.source is None:
        return ipaddress.ip_address(ip).version == (6 if forward.family == "ipv6" else 4)
    return ipaddress.ip_address(ip) in ipaddress.ip_network(forward.source)


def forward_of(ip, protocol, ctx):
    return next((f for f in ctx.forwards if f.protocol == protocol and _covers(f, ip)), None)


def capture_problems(seen, found, failing, ctx):
    """(problems, notes): seen [Seen]; found [Exchange] from the mirror; failing {source: protocol}
    of the sources with a problem at the proxy (candidates for a forward that moved)."""
    problems, notes = [], []
    mirrored = {ex.source[0] for ex in found}
    sip_in = [s for s in seen if s.inbound and s.protocol in ("udp", "tcp") and s.dport in ctx.proxy_ports]
    for source in sorted({s.source for s in sip_in}):
        protocol = next(s.protocol for s in sip_in if s.source == source)
        forward = forward_of(source, protocol, ctx)
        if forward is not None and source in mirrored:
            problems.append(Problem("forward_not_in_effect", source, f"{source} is forwarded by {forward.id}, but "
                                    "its requests still reach the proxy", (
                                        {"action": "reconcile-bypass", "data": {}, "why": "put the forward's rule "
                                         "back if firewalld lost it"},
                                        {"action": "verify-bypass", "data": {}, "why": "check the rules firewalld "
                                         "generated"})))
        elif forward is None and source not in mirrored:
            problems.append(Problem("not_reaching_proxy", source, f"{source} sends SIP to port {sip_in[0].dport} "
                                    "but the proxy never sees it (the firewall, or the proxy not listening there)"))
    for s in seen:
        if not s.inbound and s.unreachable == "prohibited":
            problems.append(Problem("refused_by_firewall", s.dest, f"the node's firewall refused what {s.dest} sent "
                                    f"to port {s.unreachable_port} (ICMP administratively prohibited)"))
        elif not s.inbound and s.unreachable_port is not None:
            problems.append(Problem("closed_port", s.dest, f"{s.dest} sent to port {s.unreachable_port} of the node,"
                                    " where nothing listens (the node answered ICMP port unreachable)"))
    tls = {s.source for s in seen if s.inbound and s.protocol == "tcp" and s.dport == 5061}
    for source in sorted(tls - mirrored):
        notes.append({"id": "tls_unreadable", "source": source,
                      "message": f"{source} uses TLS on 5061: seen, not readable (the proxy's mirror decrypts it "
                                 "only while its own trace is on)"})
    problems += moved_forwards(seen, failing, ctx)
    return _dedupe(problems), notes


def moved_forwards(seen, failing, ctx):
    """A forward whose source sent nothing while another source fails at the proxy on the
    same protocol: the provider moved; the fix moves the forward."""
    out = []
    for forward in ctx.forwards:
        if forward.source is None or any(_covers(forward, s.source) for s in seen if s.inbound):
            continue
        candidates = sorted(src for src, protocol in failing.items() if protocol == forward.protocol
                            and forward_of(src, protocol, ctx) is None)
        if len(candidates) == 1:
            new = candidates[0]
            out.append(Problem("provider_moved", new, f"the forward {forward.id} is for {forward.source}, which sent "
                               f"nothing, while {new} fails at the proxy: the provider now sends from {new}", (
                                   {"action": "add-port-forward", "why": f"forward {new} instead",
                                    "data": {"source": new, "protocol": forward.protocol,
                                             "instance": forward.instance, "description": forward.description}},
                                   {"action": "remove-port-forward", "data": {"id": forward.id},
                                    "why": f"{forward.source} sent nothing"})))
    return out


def _dedupe(problems):
    seen, out = set(), []
    for p in problems:
        if (p.cause, p.source) not in seen:
            seen.add((p.cause, p.source))
            out.append(p)
    return out


def sources(found, seen, ctx):
    """One summary per external source: transports, methods, Request-URI hosts, outcomes."""
    summary = {}

    def entry(ip):
        return summary.setdefault(ip, {"source": ip, "transports": set(), "methods": set(), "hosts": set(),
                                       "outcomes": {}, "forwarded": 0})
    for ex in found:
        e = entry(ex.source[0])
        e["transports"].add(ex.transport)
        e["methods"].add(ex.method)
        if ex.host:
            e["hosts"].add(ex.host)
        name = ex.outcome if ex.code is None else f"{ex.outcome}:{ex.code}"
        e["outcomes"][name] = e["outcomes"].get(name, 0) + 1
    for s in seen:
        if s.inbound and s.protocol in ("udp", "tcp") and forward_of(s.source, s.protocol, ctx):
            e = entry(s.source)
            e["transports"].add(s.protocol)
            e["forwarded"] += 1
    return [{**e, "transports": sorted(e["transports"]), "methods": sorted(e["methods"]),
             "hosts": sorted(e["hosts"])} for _, e in sorted(summary.items())]
