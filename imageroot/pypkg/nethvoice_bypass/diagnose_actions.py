# SPDX-License-Identifier: GPL-3.0-or-later
"""diagnose-sip: listen for a window, then say what the proxy did with each SIP request
from outside, why a trunk fails through it, and the fix as an existing action's input.

Two sources, side by side in one asyncio loop: the proxy's HEP mirror (its siptrace:
everything it receives and sends, dropped requests and decrypted TLS included) and a
short kernel capture of what never reaches the proxy (forwarded past it, closed
ports). The mirror's switch is shared: when it is already on (a support session owns
it) the diagnosis only listens and never switches it off; when something else holds
the mirror's port it says "capture busy" and switches nothing; when it switches the
mirror on itself, siptrace_guard switches it off again even if the step is killed.
Raw messages stay in memory; the result keeps only derived fields, and the packets
leave as a pcap only when asked (`include_packets`).
"""

import asyncio
import base64
import ipaddress
import json
import os
import time
from dataclasses import dataclass

from . import diagnosis, diagnosis_sources, kamailio, keeper, siptrace_guard
from .cluster import read_cluster
from .errors import CaptureBusy, Failure, InvalidValue, Refused, problem
from .forward_plan import target_port
from .guards import check_source
from .hepcollector import HepCollector
from .step import log, set_progress
from .store import Store, now

DEFAULT_DURATION, MAX_DURATION = 60, 300
RESULT_FILE = "diagnosis.json"  # the last diagnosis's counts, for the self-check's gauge
MAX_EXCHANGES = 200             # in the result: the problems carry their own examples


def checked_input(data):
    data = data or {}
    duration = data.get("duration", DEFAULT_DURATION)
    problems, sources = [], []
    if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION:
        problems.append(problem("duration", "out_of_range", duration, f"1 to {MAX_DURATION} seconds"))
    for i, text in enumerate(data.get("sources") or []):
        try:
            sources.append(ipaddress.ip_network(check_source(text)))
        except (InvalidValue, TypeError, ValueError) as err:
            problems.append(problem(f"sources.{i}", getattr(err, "reason", "format"), text, str(err)))
    if problems:
        raise Refused(problems)
    return duration, sources, bool(data.get("include_packets"))


def context(cluster, record, port):
    """diagnosis.Context from the cluster view, the record and the proxy's live domains."""
    proxy = cluster.proxy or {}
    addresses = {"127.0.0.1", *(proxy.get(k, "") for k in ("PUBLIC_IP", "PRIVATE_IP", "SERVICE_IP"))} - {""}
    domains = {e.get("NETHVOICE_HOST", "").lower() for e in cluster.nethvoice.values()} - {""}
    try:
        domains |= {d.lower() for d in kamailio.live_domains(port)}
    except Failure as err:
        log(f"the proxy's live domains are not readable: {err}")
        domains |= {a for m in record.instances.values() for a in m.aliases}
    network = proxy.get("SERVICE_NET") or cluster.cluster_network
    instances = {name: {"ports": {p for p in (target_port(env, "udp"), target_port(env, "tcp")) if p},
                        "aliases": sorted(record.instance(name).aliases)} for name, env in cluster.nethvoice.items()}
    return diagnosis.Context(frozenset(addresses), frozenset({port, 6060}), frozenset(domains),
                             ipaddress.ip_network(network, strict=False) if network else None, instances,
                             tuple(record.forwards.values()))


async def listen(duration, port, state_dir, packet_ports, include_packets):
    """Both sources for `duration` seconds -> (mirror {state, message, capture}, packets)."""
    mirror = {"state": "unavailable", "message": "", "capture": None}
    try:
        trace_on = kamailio.siptrace(port, "check")
    except Failure as err:
        trace_on, mirror["message"] = None, f"the proxy's RPC does not answer: {err}"
    collector = None
    if trace_on is not None:
        collector = HepCollector()
        try:
            collector.open()
        except Failure as err:  # CaptureBusy: something else listens there
            collector, mirror["message"] = None, str(err)
            mirror["state"] = "busy" if isinstance(err, CaptureBusy) else "unavailable"
    switched = collector is not None and not trace_on
    try:
        if switched:
            siptrace_guard.write_marker(state_dir, port, time.time() + duration + 30)
            siptrace_guard.start(state_dir)
            kamailio.siptrace(port, "on")
        if collector is not None:
            mirror["state"] = "ours" if switched else "shared"
        packets = await run_window(duration, packet_ports, include_packets)
        if collector is not None and not _still_on(port):
            mirror["message"] = ("the proxy's trace was switched off during the window (a support session "
                                 "ended?): what came after it is not in this diagnosis")
    finally:
        if switched:
            siptrace_guard.give_back(state_dir)
        if collector is not None:
            collector.close()
    if collector is not None:
        mirror["capture"] = collector.result()
    return mirror, packets


def _still_on(port):
    try:
        return kamailio.siptrace(port, "check")
    except Failure:
        return False


CAPTURE_NETNS_ENV = "NETHVOICE_BYPASS_CAPTURE_NETNS"  # the sandbox's node namespace; unset on a node
MAX_PACKETS, MAX_PACKET_BYTES = 20_000, 16 << 20


@dataclass(frozen=True)
class Packets:
    """What the kernel capture gave: `seen` for the analysis, the pcap when asked."""

    state: str
    message: str
    counters: dict | None
    seen: tuple = ()
    pcap: bytes = b""


def open_capture(packet_ports):
    """The capture's socket, opened in the node's network namespace (in the sandbox, the
    namespace CAPTURE_NETNS_ENV names): the socket keeps its namespace for its life."""
    from .bpf import CaptureSpec
    from .packetcapture import PacketCapture

    # both ways: the node's answers (SIP replies, SYN-ACKs, resets, ICMP errors) explain its requests
    capture = PacketCapture(CaptureSpec.of(ports=packet_ports, direction="either"), max_packets=MAX_PACKETS,
                            max_bytes=MAX_PACKET_BYTES)
    netns = os.environ.get(CAPTURE_NETNS_ENV)
    if not netns:
        return capture.open()
    from concurrent.futures import ThreadPoolExecutor

    def inside():
        _setns(f"/run/netns/{netns}")
        return capture.open()
    with ThreadPoolExecutor(max_workers=1) as pool:  # the thread is thrown away with its namespace
        return pool.submit(inside).result()


def _setns(path):
    import ctypes

    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


async def run_window(duration, packet_ports, include_packets):
    """The kernel capture on the event loop while the window runs, with the agent's progress."""
    try:
        capture = open_capture(packet_ports)
    except (Failure, OSError) as err:
        capture, message = None, f"no kernel capture: {err}"
    reading = asyncio.ensure_future(capture.read_async(duration)) if capture else None
    try:
        for second in range(duration):
            await asyncio.sleep(1)
            set_progress(5 + 85 * (second + 1) // duration)
        if reading:
            await reading
    finally:
        if capture:
            capture.close()
    if capture is None:
        return Packets("unavailable", message, None)
    return packets_of(capture.result(), include_packets)


def packets_of(result, include_packets):
    from . import pcap

    seen = []
    for record, packet in result.decoded():
        if packet is None:
            continue
        inbound = record.pkttype != "outgoing"
        icmp = packet.icmp if packet.icmp and packet.icmp.reason in ("port", "prohibited") else None
        seen.append(diagnosis_sources.Seen(record.time, packet.src, packet.sport or 0, packet.dst,
                                           packet.dport or 0, packet.protocol, inbound,
                                           icmp.quoted.dport if icmp and icmp.quoted else None,
                                           icmp.reason if icmp else None))
    counters = {k: getattr(result, k) for k in ("kept_bytes", "dropped", "kernel_packets", "kernel_drops")}
    data = pcap.pcap_file(result.records, linktype="sll2").data if include_packets else b""
    return Packets("ok", "", dict(counters, packets=len(result.records)), tuple(seen), data)


def diagnose_sip(data):
    duration, wanted, include_packets = checked_input(data)
    store = Store()
    cluster = read_cluster()
    record = keeper.load_for_view(store).record
    port = kamailio.srv_port(cluster.proxy_srv)
    ctx = context(cluster, record, port)
    started = now()
    mirror, packets = asyncio.run(listen(duration, port, store.dir, sorted(ctx.proxy_ports | {5061}),
                                         include_packets))
    set_progress(95)
    result = analyze(mirror, packets, ctx, wanted, time.time())
    result["window"] = {"started": started, "ended": now(), "duration": duration}
    if include_packets:
        result["pcap"] = base64.b64encode(packets.pcap).decode() if packets.pcap else ""
    store.write_file(RESULT_FILE, json.dumps({"at": result["window"]["ended"], "problems": len(result["problems"]),
                                              "causes": sorted({p["cause"] for p in result["problems"]})}) + "\n")
    return result


def analyze(mirror, packets, ctx, wanted, window_end):
    """The result document from what both sources saw (only the sources asked for, if any)."""
    def asked(ip):
        return not wanted or any(ipaddress.ip_address(ip) in net for net in wanted)
    messages = mirror["capture"].messages if mirror["capture"] else ()
    found = [ex for ex in diagnosis.exchanges(messages, ctx, window_end) if asked(ex.source[0])]
    seen = [s for s in packets.seen if asked(s.source if s.inbound else s.dest)]
    at_proxy = diagnosis.problems(found, ctx)
    failing = {p.source: p.example.transport if p.example else "udp" for p in at_proxy}
    from_capture, notes = diagnosis_sources.capture_problems(seen, found, failing, ctx)
    if mirror["state"] in ("unavailable", "busy"):
        notes.append({"id": f"mirror_{mirror['state']}", "source": "", "message": mirror["message"]})
    elif mirror["message"]:
        notes.append({"id": "mirror_interrupted", "source": "", "message": mirror["message"]})
    if packets.state != "ok":
        notes.append({"id": "capture_unavailable", "source": "", "message": packets.message})
    return {"mirror": {"state": mirror["state"], "message": mirror["message"],
                       "counters": mirror["capture"].counters.to_json() if mirror["capture"] else None},
            "capture": {"state": packets.state, "message": packets.message, "counters": packets.counters},
            "sources": diagnosis_sources.sources(found, seen, ctx),
            "problems": [p.to_json() for p in at_proxy + from_capture],
            "exchanges": [ex.to_json() for ex in found[:MAX_EXCHANGES]],
            "notes": notes}


def last_diagnosis(state_dir=None):
    """The last diagnosis's counts, for the self-check's gauge; None before the first."""
    return Store(state_dir).read_json(RESULT_FILE) if state_dir or os.environ.get("AGENT_STATE_DIR") else \
        Store().read_json(RESULT_FILE)
