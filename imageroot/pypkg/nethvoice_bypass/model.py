# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure model of a port forward: values, canonical rich-rule text, parsing.

firewalld compares rich rules by their canonical text, with values compared as
text (`192.0.2.10/32` is not `192.0.2.10`), so every rule this module writes goes
through one formatter fed with canonical values.
"""

import functools
import ipaddress
import shlex
from dataclasses import dataclass

from .errors import InvalidValue

FAMILIES = ("ipv4", "ipv6")
PROTOCOLS = ("udp", "tcp")
# Negative priority puts our rules in the zone's `_pre` chain, ahead of the proxy's
# behind-NAT LAN rules (priority 0, where firewalld's order is undefined).
BYPASS_PRIORITY = -10
SIP_PORT = 5060
SIPS_PORT = 5061
PROXY_LAN_PORTS = (6060, 6061)


def transport_protocol(trunk):
    """A FreePBX trunk's `transport` (`0.0.0.0-udp`) -> `udp`; UDP when unset."""
    return (trunk.get("transport") or "udp").rsplit("-", 1)[-1].lower()


def family_of(address_or_network):
    return "ipv6" if ipaddress.ip_network(address_or_network).version == 6 else "ipv4"


def parse_network(text):
    """text -> strict ip network (an address is a /32 or /128); InvalidValue format, scoped
    or host_bits_set: a network with host bits set is refused rather than silently widened."""
    if not isinstance(text, str):
        raise InvalidValue("format", f"not an IP address or network: {text!r}")
    text = text.strip()
    if "%" in text:
        raise InvalidValue("scoped", f"{text} names an interface zone: give an address without %zone")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as err:
        raise InvalidValue("format", f"not an IP address or network: {text}") from err
    if network.network_address != ipaddress.ip_interface(text).ip:
        raise InvalidValue("host_bits_set", f"{text} has host bits set; did you mean {network}?")
    return network


def canonical_source(text, family=None):
    """Canonical source address: compressed lower case, host masks dropped."""
    network = parse_network(str(text))
    actual = "ipv6" if network.version == 6 else "ipv4"
    if family and family != actual:
        raise InvalidValue("wrong_family", f"{text} is not an {family} address")
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def check_port(port):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidValue("invalid_port", f"not a port number: {port!r}")
    return port


@dataclass(frozen=True)
class ForwardRule:
    """`rule [priority] family source forward-port port protocol to-port`, no to-addr:
    firewalld then redirects to the local address the packet arrived on."""

    family: str
    protocol: str
    port: int
    to_port: int
    source: str | None = None
    priority: int = BYPASS_PRIORITY

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise InvalidValue("enum", f"unknown family {self.family!r}")
        if self.protocol not in PROTOCOLS:
            raise InvalidValue("enum", f"unknown protocol {self.protocol!r}")
        check_port(self.port)
        check_port(self.to_port)
        if self.source is not None and canonical_source(self.source, self.family) != self.source:
            raise InvalidValue("format", f"source {self.source!r} is not in canonical form")

    @property
    def key(self):
        """What identifies a forward regardless of where it points."""
        return (self.family, self.protocol, self.port, self.source)

    def to_rich_rule(self):
        """The exact text firewalld returns from getRichRules for this rule."""
        parts = ["rule"]
        if self.priority:
            parts.append(f'priority="{self.priority}"')
        parts.append(f'family="{self.family}"')
        if self.source is not None:
            parts.append(f'source address="{self.source}"')
        parts.append(
            f'forward-port port="{self.port}" protocol="{self.protocol}" to-port="{self.to_port}"'
        )
        return " ".join(parts)

    def __str__(self):
        return self.to_rich_rule()

    def overlaps(self, other):
        """Both rules can match the same packet (same family, protocol, port, and sources
        that intersect)."""
        if (self.family, self.protocol, self.port) != (other.family, other.protocol, other.port):
            return False
        if self.source is None or other.source is None:
            return True
        return ipaddress.ip_network(self.source).overlaps(ipaddress.ip_network(other.source))


def forward_id(family, protocol, port, source):
    """A stable, readable id: `udp-ipv4-5060-192.0.2.10`, `tcp-ipv6-5060-any`."""
    where = (source or "any").replace("/", "_")
    return f"{protocol}-{family}-{port}-{where}"


@functools.lru_cache(maxsize=4096)  # a rule text always parses the same; ForwardRule is frozen
def parse_rich_rule(text):
    """Parse a forward-port rich rule as firewalld lists it.

    Returns a ForwardRule, or None for anything this module does not model (other
    elements, `NOT`, destinations, `to-addr`, ports ranges): such rules are foreign.
    """
    try:
        tokens = shlex.split(text)
    except ValueError:
        return None
    if not tokens or tokens[0] != "rule":
        return None
    attrs = {}
    element = "rule"
    for token in tokens[1:]:
        if "=" not in token:
            if token not in ("source", "forward-port") or token in attrs.get("_elements", ()):
                return None
            element = token
            attrs.setdefault("_elements", []).append(token)
            continue
        name, value = token.split("=", 1)
        key = f"{element}.{name}"
        if key in attrs:
            return None
        attrs[key] = value
    allowed = {"_elements", "rule.priority", "rule.family", "source.address", "forward-port.port",
               "forward-port.protocol", "forward-port.to-port"}
    if "forward-port" not in attrs.get("_elements", ()) or set(attrs) - allowed:
        return None
    source = attrs.get("source.address")
    try:
        return ForwardRule(
            family=attrs["rule.family"],
            protocol=attrs["forward-port.protocol"],
            port=int(attrs["forward-port.port"]),
            to_port=int(attrs["forward-port.to-port"]),
            source=source and canonical_source(source),
            priority=int(attrs.get("rule.priority", "0")),
        )
    except (KeyError, ValueError):
        return None
