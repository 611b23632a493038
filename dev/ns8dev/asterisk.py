# SPDX-License-Identifier: GPL-3.0-or-later
"""NethVoice's Asterisk: SIP responders (ns8dev.sip_responder, `Server: Asterisk PBX`)
on the ports of the NethVoice environment, in the node namespace, and the same on
the root namespace's loopback, where the module's actions run: on a node Asterisk
listens on every address, so probes from the node itself (verify-bypass) reach it."""

import os
import sys

from . import procs
from .node import ASTERISK_SERVER, DEV, Started, alive_or_raise, tail

REJECTED_USER = "0599000403"


def listeners(env):
    """Where Asterisk listens for SIP in a NethVoice environment: TCP on ASTERISK_SIP_PORT,
    UDP on ASTERISK_SIP_UDP_PORT (NethVoice >= 1.8; ASTERISK_SIP_PORT before), where the
    proxy's route to NethVoice points (update-module.d/90repoint_sip_proxy)."""
    udp = env.get("ASTERISK_SIP_UDP_PORT") or env["ASTERISK_SIP_PORT"]
    return [f"--listen=tcp:{env['ASTERISK_SIP_PORT']}", f"--listen=udp:{udp}"]


def start(sb, env):
    """sip-asterisk in the node namespace, sip-asterisk-lo on the root's loopback."""
    # a number no trunk accepts: Asterisk refuses it (403), as it does a provider whose
    # address no trunk matches
    return start_responders(sb, {"sip-asterisk": ["--server", ASTERISK_SERVER, *listeners(env),
                                                  f"--reject={REJECTED_USER}=403"]},
                            loopback=("127.0.0.1", "::1"))


def start_responders(sb, responders, loopback=()):
    """Each responder in the node namespace and, for each loopback address given, its
    twin in the root namespace (`--shared`: an address taken by another sandbox's
    identical stand-in is answered there until it stops)."""
    env = dict(os.environ, PYTHONPATH=str(DEV))
    popens = {}
    for name, args in responders.items():
        popens[name] = sb.spawn(name, ["ip", "netns", "exec", sb.netns["node"], sys.executable,
                                       "-m", "ns8dev.sip_responder", *args], env=env)
        if loopback:
            local = [a for a in args if "@" not in a] + [f"--host={h}" for h in loopback] + ["--shared"]
            popens[f"{name}-lo"] = sb.spawn(f"{name}-lo", [sys.executable, "-m", "ns8dev.sip_responder",
                                                            *local], env=env)

    def ready():
        for name, popen in popens.items():
            procs.wait_for(lambda name=name, popen=popen: ready_one(sb, name, popen), 10, name)
    return Started(popens, ready)


def ready_one(sb, name, popen):
    log_path = sb.log_dir / f"{name}.log"
    alive_or_raise(popen, name, log_path)
    return "ready" in tail(log_path, 5)
