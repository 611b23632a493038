# SPDX-License-Identifier: GPL-3.0-or-later
"""Guards on what the module may take: sources, forwarded ports, domain aliases, NAT values.

Pure: plain values in, a canonical value out, or InvalidValue(reason, message) where
`reason` is the suffix of the error key (`<parameter>_<reason>`). The special address
ranges are tables here, not ipaddress's is_* properties: those changed between the
agent's Pythons (3.11, 3.13), and what the module records must not.
"""

import ipaddress
import re

import idna  # in the agent venv: ns8-core pyreq3_11.txt idna==3.10, pyreq3_13.txt idna==3.11

from .errors import InvalidValue
from .model import parse_network
from .port_guards import PortHolder, check_forward_port, port_holders  # noqa: F401 - one import for the guards

# --- addresses ------------------------------------------------------------------------

def _ranges(*pairs):
    return tuple((ipaddress.ip_network(net), reason) for net, reason in pairs)


# "Reserved by IETF" in the IANA IPv6 Address Space registry (RFC 4291); ::/8 holds the
# deprecated IPv4-compatible ::/96
RESERVED6 = ("::/8", "100::/8", "200::/7", "400::/6", "800::/5", "1000::/4", "4000::/3", "6000::/3",
             "8000::/3", "a000::/3", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fe00::/9")
# Ranges no device sends from, by the IANA special-purpose and address-space registries.
# The most specific range holding a network decides; None marks a hole that is allowed.
SPECIAL = {
    4: _ranges(("0.0.0.0/32", "unspecified"), ("0.0.0.0/8", "reserved"),  # "this network": RFC 1122 3.2.1.3
               ("127.0.0.0/8", "loopback"), ("224.0.0.0/4", "multicast"),
               ("240.0.0.0/4", "reserved"),  # RFC 1112 4
               ("255.255.255.255/32", "broadcast")),  # limited broadcast, RFC 919 7
    6: _ranges(("::/128", "unspecified"), ("::1/128", "loopback"), ("::ffff:0:0/96", "ipv4_mapped"),
               ("64:ff9b::/96", None), ("64:ff9b:1::/48", None),  # NAT64 (RFC 6052, 8215): IPv4 hosts
               ("ff00::/8", "multicast"), ("fec0::/10", "reserved"),  # site-local, deprecated: RFC 3879
               *((net, "reserved") for net in RESERVED6)),
}
# What providers can never see as Asterisk's address (today's bypass_plan.NOT_EXTERNAL, less
# 0.0.0.0/8, now answered by SPECIAL): RFC 1918, CGNAT, loopback, link-local. Documentation
# ranges stay allowed: examples and tests use them.
PRIVATE4 = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16"))
RANGES = {"unspecified": "the unspecified address", "loopback": "the loopback range",
          "multicast": "the multicast range", "broadcast": "the limited broadcast address",
          "reserved": "a reserved range"}


def special_range(network):
    """ip network -> (reason, range) when it lies in, or includes, a range of SPECIAL; else None.

    Inside a range: that range's reason. Including one (0.0.0.0/1 holds 127.0.0.0/8):
    `includes_special`, since no device network holds addresses nobody sends from, and
    a few wide networks would otherwise make "every source" without allow_any_source.
    """
    table = SPECIAL[network.version]
    holding = [(net, reason) for net, reason in table if network.subnet_of(net)]
    if holding:
        net, reason = max(holding, key=lambda pair: pair[0].prefixlen)
        if reason:
            return reason, net
    included = [net for net, reason in table if reason and net != network and net.subnet_of(network)]
    if included:
        return "includes_special", min(included, key=lambda net: net.prefixlen)
    return None


def _refuse_special(network, text, prefix="", why="no device sends from there"):
    found = special_range(network)
    if found is None:
        return
    reason, net = found
    if reason == "ipv4_mapped":
        ipv4 = network.network_address.ipv4_mapped
        raise InvalidValue(prefix + reason, f"{text} is the IPv4 address {ipv4} written as IPv6: give {ipv4}")
    if reason == "includes_special":
        raise InvalidValue(prefix + reason, f"{text} includes {net}: {why}; narrow it")
    raise InvalidValue(prefix + reason, f"{text} lies in {net}, {RANGES[reason]}: {why}")


def check_source(text, family=None, allow_any_source=False):
    """text -> canonical source (`192.0.2.10`, `2001:db8::/32`), None for a /0 with allow_any_source.

    Compressed lower case, host masks dropped, as model.canonical_source. Reasons: format,
    scoped, host_bits_set, wrong_family, all_addresses (a /0), unspecified, loopback,
    multicast, broadcast, reserved, ipv4_mapped, includes_special. A /0 allowed by
    allow_any_source is no source at all: the sourceless rule, one record for one meaning
    (its family is the text's: model.family_of).
    """
    network = parse_network(text)
    text = text.strip()
    actual = "ipv6" if network.version == 6 else "ipv4"
    if family and family != actual:
        raise InvalidValue("wrong_family", f"{text} is not an {family} address")
    if network.prefixlen == 0:
        if allow_any_source:
            return None
        raise InvalidValue("all_addresses", f"{text} is every address: leave the source out and set "
                                            "allow_any_source, which says what it takes from the proxy")
    _refuse_special(network, text)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def duplicate_sources(keys):
    """[key or None] in request order -> [(index, index of its first occurrence)] for repeats.

    A key is what makes a forward one: (family, protocol, port, canonical source). One
    request may name a source twice for UDP and TCP (the add-port-forward schema's own
    example); the same key twice is refused with reason `duplicate`. None is skipped.
    """
    first, repeats = {}, []
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            repeats.append((index, first[key]))
        else:
            first[key] = index
    return repeats


# --- NAT --------------------------------------------------------------------------------

def check_external_address(text):
    """text -> canonical public IPv4 address (`203.0.113.5`); InvalidValue `external_address_<reason>`.

    Reasons: format, network (a network instead of an address), not_ipv4, private
    (RFC 1918, CGNAT, loopback, link-local: never what providers see), unspecified,
    reserved, multicast, broadcast.
    """
    prefix = "external_address_"
    if not isinstance(text, str):
        raise InvalidValue(prefix + "format", f"not an IPv4 address: {text!r}")
    address = text.strip()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as err:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise InvalidValue(prefix + "format", f"not an IPv4 address: {text!r}") from err
        raise InvalidValue(prefix + "network", f"{address} is a network: give the one address "
                                               "providers reach") from err
    if ip.version != 4:
        raise InvalidValue(prefix + "not_ipv4", f"{address} is not IPv4: FreePBX needs an IPv4 address")
    if any(ip in net for net in PRIVATE4):
        raise InvalidValue(prefix + "private", f"{address} is not a public address")
    _refuse_special(ipaddress.ip_network(ip), address, prefix, "providers cannot reach it")
    return str(ip)


def check_local_network(text):
    """text -> canonical IPv4 network (`192.168.1.0/24`); InvalidValue `local_networks_<reason>`.

    Reasons: format, host_bits_set, not_ipv4, all_addresses (a /0: nothing would be
    external), unspecified, loopback, multicast, broadcast, reserved, includes_special.
    """
    prefix = "local_networks_"
    try:
        network = parse_network(text)
    except InvalidValue as err:
        reason = "format" if err.reason == "scoped" else err.reason
        raise InvalidValue(prefix + reason, str(err)) from None
    text = text.strip()
    if network.version != 4:
        raise InvalidValue(prefix + "not_ipv4", f"{text} is not IPv4: FreePBX's local networks are IPv4")
    if network.prefixlen == 0:
        raise InvalidValue(prefix + "all_addresses", f"{text} is every address: Asterisk would treat "
                                                     "every peer as local and announce no external address")
    _refuse_special(network, text, prefix, "no peer of Asterisk is there")
    return str(network)


# --- domain aliases ---------------------------------------------------------------------

# gojsonschema 1.2.0's `hostname` format (format_checkers.go rxHostname, and len < 256) in
# lower case. The proxy's add-route writes the domain unescaped into SQL string literals
# (imageroot/actions/add-route/20writeroute) and Kamailio compares the Request-URI host
# with it as text (dialplan 1, match_op 0): a name is kept as lower-case punycode.
HOSTNAME = re.compile(r"([a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9])(\.([a-z0-9]|[a-z0-9][a-z0-9-]{0,61}[a-z0-9]))*")
MAX_NAME, MAX_LABEL = 253, 63  # RFC 1035 2.3.4, counted without the trailing dot


def check_domain(text):
    """text -> canonical domain alias (`xn--bcher-kva.example`, `198.51.100.20`), or InvalidValue.

    Unicode names become punycode (IDNA 2008 with the UTS 46 mapping, by the `idna`
    package), then lower case without the trailing dot. Reasons: format, ipv6_literal,
    invalid_character, empty_label, label_hyphen, label_too_long, too_long, idn. An IPv6
    literal cannot be an alias: Kamailio's Request-URI host keeps its brackets and the
    peer's spelling (parse_uri.c), and gojsonschema's hostname refuses it.
    """
    if not isinstance(text, str):
        raise InvalidValue("format", f"not a domain name: {text!r}")
    name = text.strip()
    literal = _ipv4_literal(name[:-1] if name.endswith(".") else name)
    if literal:
        return literal
    bad = next((c for c in name if c.isascii() and not (c.isalnum() or c in ".-")), None)
    if bad is not None:
        raise InvalidValue("invalid_character", f"{text!r} has {bad!r}: a name has letters, digits, hyphens, dots")
    if not name.isascii():
        try:
            name = idna.uts46_remap(name, std3_rules=True, transitional=False)
        except UnicodeError as err:  # idna.IDNAError is one
            raise InvalidValue("idn", f"{text!r} is not a valid international name: {err}") from None
    name = name[:-1] if name.endswith(".") else name
    if not name:
        raise InvalidValue("format", "an empty name")
    name = ".".join(_label(label, text) for label in name.lower().split("."))
    if len(name) > MAX_NAME:
        raise InvalidValue("too_long", f"{text!r} is {len(name)} characters as punycode: at most {MAX_NAME}")
    if name.rsplit(".", 1)[-1].isdigit():
        raise InvalidValue("format", f"{text!r} looks like an IPv4 address and is not one")
    if not HOSTNAME.fullmatch(name):  # unreachable: each part above keeps to it
        raise InvalidValue("format", f"{text!r} is not a host name")
    return name


def _ipv4_literal(name):
    """An IPv4 literal in canonical form, None for a name; an IPv6 literal is refused."""
    try:
        ip = ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    except ValueError:
        return None
    if ip.version == 6:
        raise InvalidValue("ipv6_literal", f"{name}: the proxy cannot route an IPv6 address as a domain")
    return str(ip) if ip.compressed == name else None


def _label(label, text):
    """One label -> its ASCII form (punycode for Unicode), or InvalidValue."""
    if not label:
        raise InvalidValue("empty_label", f"{text!r} has an empty label (two dots, or a dot first)")
    if label.startswith("-") or label.endswith("-"):
        raise InvalidValue("label_hyphen", f"{text!r}: a label cannot start or end with a hyphen")
    try:
        if not label.isascii():
            idna.check_label(label)
            label = "xn--" + label.encode("punycode").decode("ascii")
        elif label.startswith("xn--") and "xn--" + idna.ulabel(label).encode("punycode").decode() != label:
            raise idna.IDNAError("not the canonical punycode of its name")
    except UnicodeError as err:
        raise InvalidValue("idn", f"{text!r} is not a valid international name: {err}") from None
    if len(label) > MAX_LABEL:
        raise InvalidValue("label_too_long", f"{text!r}: the label {label} is longer than {MAX_LABEL}")
    return label
