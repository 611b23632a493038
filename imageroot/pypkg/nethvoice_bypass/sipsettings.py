# SPDX-License-Identifier: GPL-3.0-or-later
"""FreePBX's stored forms of the NAT settings the module manages (pure).

FreePBX keeps `localnets` in kvstore_Sipsettings through BMO setConfig(): a PHP array
json_encode'd with type 'json-arr', items {"net": "<address>", "mask": "<prefix length>"}
(FreePBX/sipsettings: Sipsettings.class.php doGeneralPost, install.php migration
converting dotted masks with mask2cidr). `externip` is a plain string (type NULL).
The module compares what it means (an address, networks) and gives back the exact
stored text it found.
"""

import ipaddress
import json

TYPES = {"externip": None, "localnets": "json-arr"}  # kvstore_Sipsettings.type of each


def parse_localnets(value):
    """FreePBX's stored localnets -> ("192.0.2.0/24", ...) (dotted masks accepted)."""
    try:
        items = json.loads(value) if value else []
    except json.JSONDecodeError:
        return ()
    if isinstance(items, dict):  # a PHP array with non-sequential keys encodes as an object
        items = list(items.values())
    networks = []
    for item in items if isinstance(items, list) else []:
        try:
            networks.append(str(ipaddress.ip_network(f"{item['net']}/{item['mask']}", strict=False)))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(networks)


def format_localnets(networks):
    items = []
    for network in networks:
        net = ipaddress.ip_network(network)
        items.append({"net": str(net.network_address), "mask": str(net.prefixlen)})
    return json.dumps(items, separators=(",", ":"))


def meaning(setting, stored):
    """What a stored value means: the address (or ""), or the networks."""
    if setting == "localnets":
        return parse_localnets(stored)
    return stored or ""


def stored_form(setting, value):
    return format_localnets(value) if setting == "localnets" else value
