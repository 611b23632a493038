# SPDX-License-Identifier: GPL-3.0-or-later
"""nftables as firewalld generated it: the redirects in a zone's NAT chains, to
check that a forward's rich rule became a rule the kernel runs."""

import json
import shutil
import subprocess

from .errors import Failure

TIMEOUT = 5.0  # seconds: listing firewalld's table takes milliseconds; more is a hung tool


def redirects(zone):
    """(family, source, protocol, port, to_port) of the redirects in the zone's NAT
    chains, from one listing of firewalld's table."""
    tool = shutil.which("nft")
    if not tool:
        return None
    try:
        proc = subprocess.run([tool, "-j", "list", "table", "inet", "firewalld"], capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Failure(f"nft did not list firewalld's rules within {TIMEOUT:g} s") from None
    if proc.returncode != 0:
        return set()
    chains = {f"nat_PRE_{zone}_{suffix}" for suffix in ("pre", "allow", "post")}
    try:
        listing = json.loads(proc.stdout)
    except ValueError:
        raise Failure(f"nft's listing of firewalld's rules is not JSON: {proc.stdout[:80]!r}") from None
    rules = (item["rule"] for item in listing.get("nftables", []) if "rule" in item)
    return {parsed for rule in rules if rule.get("chain") in chains and (parsed := parse_nft_rule(rule["expr"]))}


def parse_nft_rule(expr):
    family = source = protocol = port = to_port = None
    for e in expr:
        match = e.get("match", {})
        left, right = match.get("left", {}), match.get("right")
        payload = left.get("payload", {})
        if payload.get("field") == "saddr":
            family = "ipv6" if payload.get("protocol") == "ip6" else "ipv4"
            source = f"{right['prefix']['addr']}/{right['prefix']['len']}" if isinstance(right, dict) else right
        elif payload.get("field") == "dport" and payload.get("protocol") in ("udp", "tcp"):
            protocol, port = payload["protocol"], right
        elif left.get("meta", {}).get("key") == "nfproto":
            family = right
        elif "redirect" in e:
            to_port = e["redirect"].get("port")
    if None in (family, protocol, port, to_port):
        return None
    return family, source, protocol, port, to_port
