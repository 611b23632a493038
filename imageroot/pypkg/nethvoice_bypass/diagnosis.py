# SPDX-License-Identifier: GPL-3.0-or-later
"""What the proxy did with each SIP request of a window, and why a trunk fails through it
(pure): the proxy's HEP mirror and a kernel capture in, sources, outcomes, causes and fixes out.

The proxy (Kamailio) answers the commonest failure with silence: an INVITE or REGISTER
whose Request-URI domain it does not know is dropped with no reply and no log line
(proxy-diagnosis.md §2). Its mirror shows each message it receives and sends, so a
request received from outside is followed, by Call-ID and CSeq (its topology hiding
rewrites Via), to what came after it: relayed to an instance, answered (by the proxy or
relayed back from Asterisk), or nothing. A fix is an input of an existing action, ready
for a dry run.
"""

import ipaddress
import re
from dataclasses import dataclass, field, replace

from .errors import InvalidValue
from .guards import check_domain
from .sipmsg import masked_user

SILENCE_AFTER = 4.0  # s: a UDP request unanswered this long (Timer E has fired 3 times) got nothing
RELAYED = ("INVITE", "REGISTER", "SUBSCRIBE", "PUBLISH", "NOTIFY", "UPDATE", "OPTIONS", "PRACK")
IN_DIALOG = ("ACK", "BYE", "CANCEL")
SCANNERS = re.compile(r"friendly|sundayddr|scanner|sip-scan|SIPScan|sipsak|sipcli|sipv|VaxSIPUserAgent"
                      r"|VaxIPUserAgent|SIVuS|smap")  # the proxy's REQINIT drop list


@dataclass(frozen=True)
class Context:
    """What the diagnosis knows of the node: the proxy's addresses and SIP ports, its
    known domains (domain.dump, the routes), the cluster network, each instance's
    Asterisk SIP ports, the module's forwards and each instance's owned aliases."""

    proxy_addresses: frozenset
    proxy_ports: frozenset = frozenset({5060, 6060})
    proxy_domains: frozenset = frozenset()
    cluster_network: object = None                    # ipaddress network
    instances: dict = field(default_factory=dict)     # id -> {"ports": {port}, "aliases": [domains]}
    forwards: tuple = ()                               # ForwardEntry-like: id, source, protocol, instance


@dataclass(frozen=True)
class Exchange:
    """One request from outside and what followed it."""

    time: float
    source: tuple
    transport: str
    method: str
    host: str
    user: str                  # masked
    user_agent: str
    outcome: str               # relayed_answered | answered_by_proxy | dropped | relay_unanswered | pending
    code: int | None = None
    instance: str | None = None
    ladder: tuple = ()

    def to_json(self):
        return {"time": self.time, "source": f"{self.source[0]}:{self.source[1]}", "transport": self.transport,
                "method": self.method, "host": self.host, "user": self.user, "outcome": self.outcome,
                "code": self.code, "instance": self.instance, "ladder": [dict(s) for s in self.ladder]}


def _is_proxy(addr, ctx):
    return addr[0] in ctx.proxy_addresses and addr[1] in ctx.proxy_ports


def internal(ip, ctx):
    address = ipaddress.ip_address(ip)
    return address.is_loopback or (ctx.cluster_network is not None and address in ctx.cluster_network)


def _instance_of(addr, ctx):
    for name, info in ctx.instances.items():
        if addr[1] in info.get("ports", ()):
            return name
    return None


def exchanges(messages, ctx, window_end):
    """[Captured(hep, sip)] in time order -> [Exchange]: one per request received from
    outside (retransmissions folded), with what the proxy did after it."""
    by_key, order = {}, []
    for m in messages:
        key = m.sip.transaction_key if m.sip else None
        if key is None:
            continue
        if key not in by_key:
            by_key[key] = []
            order.append(key)
        by_key[key].append(m)
    found = []
    for key in order:
        exchange = _follow(by_key[key], ctx, window_end)
        if exchange is not None:
            found.append(exchange)
    return found


def _follow(messages, ctx, window_end):
    first = next((m for m in messages if m.sip.is_request and m.sip.method not in ("ACK",)
                  and not _is_proxy(m.hep.src, ctx) and not internal(m.hep.src[0], ctx)), None)
    if first is None:
        return None
    source, sip = first.hep.src, first.sip
    ladder, relayed_to, final_to_source, instance_answer = [], None, None, None
    for m in messages:
        step = _step(m, source, ctx)
        if step is None:
            continue
        if not ladder or ladder[-1] != step:
            ladder.append(step)
        if m.sip.is_request and _is_proxy(m.hep.src, ctx) and m.hep.dst[0] != source[0] and relayed_to is None:
            relayed_to = m.hep.dst
        elif not m.sip.is_request and m.sip.status >= 200:
            # the device by address only: over TCP the mirror shows the Via port, not the connection's
            if m.hep.dst[0] == source[0] and _is_proxy(m.hep.src, ctx) and final_to_source is None:
                final_to_source = m
            elif relayed_to is not None and m.hep.src == relayed_to and instance_answer is None:
                instance_answer = m.sip.status
    uri = sip.request_uri
    common = {"time": first.hep.time, "source": source, "transport": first.hep.transport, "method": sip.method,
              "host": uri.host if uri else "", "user": masked_user(uri.user if uri else ""),
              "user_agent": sip.user_agent, "instance": _instance_of(relayed_to, ctx) if relayed_to else None}
    if final_to_source is not None:
        code = final_to_source.sip.status
        outcome = "relayed_answered" if relayed_to is not None and instance_answer == code else "answered_by_proxy"
        return Exchange(outcome=outcome, code=code, ladder=tuple(ladder), **common)
    if relayed_to is not None:
        outcome = "relay_unanswered" if instance_answer is None else "relayed_answered"
        return Exchange(outcome=outcome, code=instance_answer, ladder=tuple(ladder), **common)
    waited = window_end - first.hep.time
    outcome = "dropped" if waited >= SILENCE_AFTER or first.hep.transport != "udp" else "pending"
    ladder.append({"from": "proxy", "to": "device", "what": "silence" if outcome == "dropped" else "…"})
    return Exchange(outcome=outcome, ladder=tuple(ladder), **common)


def _role(addr, source, ctx):
    if addr[0] == source[0]:
        return "device"
    if _is_proxy(addr, ctx):
        return "proxy"
    return "instance" if _instance_of(addr, ctx) else "other"


def _step(m, source, ctx):
    what = m.sip.method if m.sip.is_request else f"{m.sip.status} {m.sip.reason}".strip()
    return {"from": _role(m.hep.src, source, ctx), "to": _role(m.hep.dst, source, ctx), "what": what}


# --- causes and fixes -------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """A cause, named in plain words, for one source, with the fixes that would make the
    same request work: each an existing action's input, ready for a dry run."""

    cause: str
    source: str
    message: str
    fixes: tuple = ()
    example: Exchange | None = None
    count: int = 1

    def to_json(self):
        return {"cause": self.cause, "source": self.source, "message": self.message, "count": self.count,
                "fixes": [dict(f) for f in self.fixes], "example": self.example.to_json() if self.example else None}


def _forward_fix(source, transport, why):
    protocol = "tcp" if transport in ("tcp", "tls") else "udp"
    return {"action": "add-port-forward", "data": {"source": source, "protocol": protocol,
                                                    "description": "from diagnose-sip"}, "why": why}


def _alias_fixes(host, ctx):
    try:
        domain = check_domain(host)
    except InvalidValue:
        return []
    return [{"action": "configure-bypass", "why": f"the proxy routes {domain} to {name}",
             "data": {"instance": name, "domain_aliases": sorted(set(info.get("aliases", ())) | {domain})}}
            for name, info in sorted(ctx.instances.items())]


def _known_host(host, ctx):
    return host.lower() in ctx.proxy_domains or host in ctx.proxy_addresses


def cause_of(ex, ctx):
    """(cause, message, fixes) for one exchange, or None when it worked."""
    who, via = ex.source[0], f"{ex.method} to {ex.host or '?'} from {ex.source[0]}"
    device = [_forward_fix(who, ex.transport, "the device reaches Asterisk directly, past the proxy")]
    if ex.outcome == "dropped":
        if SCANNERS.search(ex.user_agent or ""):
            return ("scanner_user_agent", f"{via}: the proxy drops its User-Agent '{ex.user_agent}' as a scanner",
                    device)
        if ex.method not in RELAYED:
            return ("method_not_relayed", f"{via}: the proxy drops {ex.method} from outside in silence", device)
        if not _known_host(ex.host, ctx):
            return ("unknown_domain", f"{via}: the proxy does not know the domain {ex.host} and drops the "
                    "request in silence (no reply, no log line)", _alias_fixes(ex.host, ctx) + device)
        return ("dropped", f"{via}: the proxy sent nothing back", device)
    if ex.outcome == "answered_by_proxy" and ex.code == 404:
        if not _known_host(ex.host, ctx):
            return ("unknown_domain", f"{via}: the proxy answers 404, it does not know the domain {ex.host}",
                    _alias_fixes(ex.host, ctx) + device)
        return ("no_route", f"{via}: the proxy answers 404: no domain route or trunk rule matches "
                f"{ex.user or 'the number'}@{ex.host}", device)
    if ex.outcome == "answered_by_proxy" and ex.code == 484:
        return ("no_user_part", f"{via}: the proxy answers 484, the Request-URI has no number", device)
    if ex.outcome in ("relay_unanswered",) or (ex.outcome == "answered_by_proxy" and ex.code in (408, 503)):
        return ("instance_down", f"{via}: relayed to {ex.instance or 'an instance'}, which did not answer",
                [{"action": "get-status", "data": None, "why": f"check that {ex.instance or 'the instance'} runs"}])
    if ex.outcome == "relayed_answered" and ex.code in (401, 403, 404):
        meaning = {401: "asks for credentials", 403: "refuses it", 404: "has no route for it"}[ex.code]
        return ("asterisk_rejected", f"{via}: the proxy relayed it to {ex.instance}, and Asterisk {meaning} "
                f"({ex.code})", [{"action": None, "data": None, "why": _trunk_fix(ex, who)}])
    return None


def _trunk_fix(ex, who):
    if ex.code == 404:
        return (f"in FreePBX of {ex.instance}, an inbound route for {ex.user or 'the number'} (or a trunk routing "
                "rule in the proxy for its prefix)")
    return (f"in FreePBX of {ex.instance}, the trunk of this provider must match {who} (the proxy tells Asterisk "
            "the source in X-Forwarded-For), or its credentials must be right")


def problems(found, ctx):
    """[Exchange] -> [Problem], one per (source, cause), the first exchange as its example."""
    grouped = {}
    for ex in found:
        named = cause_of(ex, ctx)
        if named is None:
            continue
        cause, message, fixes = named
        key = (ex.source[0], cause)
        if key in grouped:
            grouped[key] = replace(grouped[key], count=grouped[key].count + 1)
        else:
            grouped[key] = Problem(cause, ex.source[0], message, tuple(fixes), ex)
    return list(grouped.values())
