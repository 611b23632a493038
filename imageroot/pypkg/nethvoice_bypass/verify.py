# SPDX-License-Identifier: GPL-3.0-or-later
"""verify-bypass: check the path, not the configuration.

SIP OPTIONS probes to the instance's Asterisk ports and to the proxy, from the node,
and the nftables rules firewalld generated for each forward. A probe sent from the
node itself never crosses a forward (firewalld forward ports hook PREROUTING only),
so the result says how to test from the device's network too.
"""

import asyncio
import ipaddress

from . import keeper, nft, sipprobe
from .cluster import read_cluster
from .errors import Failure, Refused, problem
from .firewalld import Firewalld
from .forward_plan import target_port
from .forward_requests import select_instance
from .model import parse_rich_rule
from .step import log
from .store import Store

LOOPBACK = {"ipv4": "127.0.0.1", "ipv6": "::1"}


def answered_by(server):
    if not server:
        return None
    if server.startswith("NethServer 8"):
        return "proxy"
    if "asterisk" in server.lower() or server.startswith("FPBX"):
        return "asterisk"
    return "other"


def probe_plan(env, proxy_srv, families, extra):
    plan = []
    for family in families:
        for protocol in ("udp", "tcp"):
            port = target_port(env, protocol)
            if port:
                plan.append({"target": LOOPBACK[family], "port": port, "protocol": protocol, "family": family,
                             "expect": "asterisk"})
            proxy_port = (proxy_srv or {}).get(protocol, {}).get("port")
            if str(proxy_port or "").isdigit():
                plan.append({"target": LOOPBACK[family], "port": int(proxy_port), "protocol": protocol,
                             "family": family, "expect": "proxy"})
    for item in extra:
        family = "ipv6" if ipaddress.ip_address(item["address"]).version == 6 else "ipv4"
        plan.append({"target": item["address"], "port": item.get("port", 5060),
                     "protocol": item.get("protocol", "udp"), "family": family, "expect": None})
    return plan


def instance_probe_plan(cluster, record, instance, extra=()):
    """The local probes of one instance: IPv6 too when one of its forwards is IPv6."""
    families = ["ipv4"] + (["ipv6"] if any(f.family == "ipv6" and f.instance == instance
                                           for f in record.forwards.values()) else [])
    return [dict(item, instance=instance)
            for item in probe_plan(cluster.nethvoice[instance], cluster.proxy_srv, families, extra)]


def local_probes(cluster, record):
    """Every instance's local probes, side by side."""
    plan = [item for instance in cluster.nethvoice for item in instance_probe_plan(cluster, record, instance)]
    return asyncio.run(run_probes(plan))


async def run_probes(plan):
    async def one(item):
        out = await sipprobe.probe(item["target"], item["port"], item["protocol"])
        out.update(family=item["family"], expect=item["expect"], answered_by=answered_by(out.get("server")),
                   instance=item.get("instance", ""))
        out["ok"] = out["outcome"] == "reply" and (item["expect"] is None or out["answered_by"] == item["expect"])
        return out
    return await asyncio.gather(*(one(item) for item in plan))


def verify_bypass(data):
    data = data or {}
    cluster = read_cluster()
    instance = select_instance(cluster.nethvoice, data.get("instance"))
    extra = data.get("targets", [])
    errors = []
    for i, item in enumerate(extra):
        try:  # one host: a probe is never sent to broadcast, multicast or unspecified addresses
            reason = "not_unicast" if sipprobe.not_unicast(item["address"]) else None
        except ValueError:
            reason = "format"
        if reason:
            errors.append(problem(f"targets.{i}.address", reason, item["address"]))
    if errors:
        raise Refused(errors)
    record = keeper.load_for_view(Store()).record
    forwards = [f for f in record.forwards.values() if f.instance == instance]
    probes = asyncio.run(run_probes(instance_probe_plan(cluster, record, instance, extra)))
    try:
        zone = Firewalld().default_zone()
        generated = nft.redirects(zone)
    except Failure as err:
        log(str(err))
        generated = None
    checked = []
    for fwd in forwards:
        key = (fwd.family, fwd.source, fwd.protocol, fwd.port, parse_rich_rule(fwd.rule).to_port)
        checked.append({"forward": fwd.id, "present": None if generated is None else key in generated})
    node_ip = (cluster.proxy or {}).get("PRIVATE_IP") or (cluster.proxy or {}).get("PUBLIC_IP") or "<node address>"
    notes = [
        "Probes sent from the node itself do not cross the 5060 forward: firewalld forward ports apply only "
        "to packets arriving from the network.",
        "To test the path a device sees, send an OPTIONS from the device's network, e.g. "
        f"'python3 -m nethvoice_bypass.sipprobe {node_ip} --port 5060 --protocol udp' (copy the "
        "sipprobe.py file from the module); the Server header names who answered: Asterisk means the "
        "bypass is in effect, 'NethServer 8 ...' means the proxy still takes the traffic.",
        "Do not test with sipsak: the proxy silently drops its User-Agent.",
    ]
    if generated is None:
        notes.append("The nft tool is not available: generated rules were not checked.")
    return {"instance": instance, "probes": probes, "nft": checked, "notes": notes}
