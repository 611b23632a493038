"""nftables as firewalld generated it: the redirects in a zone's NAT chains, to
check that a forward's rich rule became a rule the kernel runs."""

import json
import shutil
import subprocess


def redirects(zone):
    """(family, source, protocol, port, to_port) of the redirects in the zone's NAT chains."""
    tool = shutil.which("nft")
    if not tool:
        return None
    found = set()
    for suffix in ("pre", "allow", "post"):
        proc = subprocess.run([tool, "-j", "list", "chain", "inet", "firewalld", f"nat_PRE_{zone}_{suffix}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            continue
        for item in json.loads(proc.stdout).get("nftables", []):
            if "rule" in item:
                parsed = parse_nft_rule(item["rule"]["expr"])
                if parsed:
                    found.add(parsed)
    return found


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
