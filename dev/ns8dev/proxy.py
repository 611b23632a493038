# SPDX-License-Identifier: GPL-3.0-or-later
"""The NethVoice proxy's SIP side: responders that answer for it on 5060 and the LAN
port 6060 in the node namespace, and on the root namespace's loopback."""

from . import asterisk
from .node import PROXY_SERVER
from .sip_responder import PROXY_SCANNER_UA


def start(sb):
    p = sb.ports
    return asterisk.start_responders(sb, {"sip-proxy": [
        "--server", PROXY_SERVER,
        "--drop-user-agent", PROXY_SCANNER_UA,  # like Kamailio's REQINIT
        *[f"--listen={proto}:{port}" for proto, port in (
            ("udp", p["proxy_sip"]), ("tcp", p["proxy_sip"]),
            ("udp", p["proxy_lan_sip"]), ("tcp", p["proxy_lan_sip"]))],
    ]}, loopback=("127.0.0.1", "::1"))
