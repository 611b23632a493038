# SPDX-License-Identifier: GPL-3.0-or-later
"""What NS8 add-module, NethVoice and the proxy would have written: the modules'
environments, the firewall rules NethVoice and the proxy add, the Redis ACLs."""

import secrets
import uuid

from .node import (
    ADDRESSES,
    CLUSTER_NETWORK,
    LAN4,
    NETHVOICE_ID,
    NETHVOICE_IMAGES,
    NODE_ID,
    PORTS,
    PROXY_ID,
    PROXY_SERVER,
)


def module_environment(module_id, image_url):
    """The initial environment cluster/add-module gives every module."""
    image_id = "sha256:" + secrets.token_hex(32)
    return {
        "IMAGE_ID": image_id,
        "IMAGE_URL": image_url,
        "IMAGE_DIGEST": "sha256:" + secrets.token_hex(32),
        "IMAGE_REOPODIGEST": image_url.rsplit(":", 1)[0] + "@sha256:" + secrets.token_hex(32),
        "MODULE_ID": module_id,
        "NODE_ID": NODE_ID,
        "MODULE_UUID": str(uuid.uuid4()),
    }


def nethvoice_environment():
    """NethVoice 1.8 environment: SIP TCP and UDP on separate ports."""
    env = module_environment(NETHVOICE_ID, NETHVOICE_IMAGES["1.8"])
    env.update({
        "TCP_PORT": "20000",
        "TCP_PORTS_RANGE": "20000-20036",
        "UDP_PORT": str(PORTS["asterisk_sip_udp"]),
        "NETHVOICE_MARIADB_PORT": "",  # the sandbox's MariaDB, once it runs
        "APACHE_PORT": "20001",
        "ASTMANAGERPORT": "20002",
        "NETHCTI_TLS_PORT": "20023",
        "ASTERISK_SIP_PORT": str(PORTS["asterisk_sip_tcp"]),
        "ASTERISK_SIPS_PORT": str(PORTS["asterisk_sips"]),
        "ASTERISK_IAX_PORT": "20026",
        "ASTERISK_WS_PORT": "20031",
        "ASTERISK_WSS_PORT": "20034",
        "ASTERISK_SIP_UDP_PORT": str(PORTS["asterisk_sip_udp"]),
        # RTP blocks come from a per-module counter; these are kept clear of the
        # UDP SIP port so the sandbox starts from a healthy configuration.
        "ASTERISK_RTPSTART": "21002",
        "ASTERISK_RTPEND": "22001",
        "JANUS_RTPSTART": "22002",
        "JANUS_RTPEND": "23001",
        "SATELLITE_HTTP_PORT": "20036",
        "PROXY_IP": ADDRESSES["service_ip"],
        "PROXY_PORT": str(PORTS["proxy_sip"]),
        "NETHVOICE_PROXY_FQDN": "sip.example.org",
        "ICEENFORCE": "false",
        "NETHVOICE_HOST": "voice.example.org",
        "NETHCTI_UI_HOST": "cti.example.org",
    })
    return env


def nethvoice_layout(env, version):
    """NethVoice's environment in the layout of a version: "1.8" as the sandbox starts
    it (SIP UDP on a port of its own), "1.7" the old single-port layout
    (ASTERISK_SIP_PORT for UDP and TCP). 1.7 -> 1.8 is what update_nethvoice() does."""
    env = {k: v for k, v in env.items() if k not in ("ASTERISK_SIP_UDP_PORT", "UDP_PORT")}
    env["IMAGE_URL"] = NETHVOICE_IMAGES[version]
    if version == "1.8":  # 20allocate_ports: a UDP port from the node's pool
        env.update(ASTERISK_SIP_UDP_PORT=str(PORTS["asterisk_sip_udp"]), UDP_PORT=str(PORTS["asterisk_sip_udp"]))
    return env


def nethvoice_protection_rules(env):
    """NethVoice >= 1.8's bin/nethvoice-firewall-protection: UDP to the TCP-only SIP
    port (and the satellite's HTTP port) is dropped from outside."""
    return [f'rule priority="-100" family="{family}" port port="{env[name]}" protocol="udp" drop'
            for name in ("ASTERISK_SIP_PORT", "SATELLITE_HTTP_PORT") for family in ("ipv4", "ipv6")]


def proxy_environment():
    """nethvoice-proxy 1.7 configured behind NAT (configure-module with public_address)."""
    env = module_environment(PROXY_ID, "ghcr.io/nethesis/nethvoice-proxy:1.7.1")
    env.update({
        "PUBLIC_IP": ADDRESSES["public_ip"],
        "PRIVATE_IP": ADDRESSES["node"]["ipv4"],
        "BEHIND_NAT": "true",
        "LOCALNETWORKS": LAN4,
        "DEFAULT_CONTACT": f"{ADDRESSES['public_ip']}:{PORTS['proxy_sip']}",
        "SERVICE_IP": ADDRESSES["service_ip"],
        "SERVICE_NET": CLUSTER_NETWORK,
        "KML_SERVER_HEADER": PROXY_SERVER,
        "KML_UA_HEADER": PROXY_SERVER,
        "KML_DEFAULT_FQDN": "sip.example.org",
        "KML_SIP_URL": "127.0.0.1",
        "RTP_PORT_MIN": "10000",
        "RTP_PORT_MAX": "20000",
        "ENV": "prod",
    })
    return env


def proxy_rich_rules():
    """The proxy's behind-NAT rules (configure-module/20configure), as it writes them."""
    net = LAN4
    return [
        f"rule family=ipv4 source address={net} forward-port port=5060 protocol=udp to-port=6060",
        f"rule family=ipv4 source address={net} forward-port port=5060 protocol=tcp to-port=6060",
        f"rule family=ipv4 source address={net} forward-port port=5061 protocol=tcp to-port=6061",
    ]


# node/install-finalize.sh: everybody may read the shared keys as default, with any password
DEFAULT_USER_ACL = ("user default on nopass resetkeys ~cluster/* ~node/* ~module/* resetchannels &* nocommands "
                    "+@read +@connection +subscribe +psubscribe -@admin")


def module_acl(module_id, password):
    """cluster/add-module's ACL for a module user, plus read access to the shared keys."""
    m = module_id
    return (f"user module/{m} on >{password} resetkeys ~module/{m}/* ~task/module/{m}/* "
            "%R~cluster/* %R~node/* %R~module/* "
            f"resetchannels &progress/module/{m}/* &module/{m}/event/* "
            "+@read +@write +@transaction +@connection +publish -@admin")
