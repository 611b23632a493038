# SPDX-License-Identifier: GPL-3.0-or-later
"""NethVoice's versions on the sandbox node: its environment (state dir and Redis),
the 1.7 and 1.8 layouts of its SIP ports, and its update from 1.7 to 1.8."""

from pathlib import Path

from . import asterisk, procs
from .node import NETHVOICE_ID, write_env
from .seeds import nethvoice_layout, nethvoice_protection_rules


def set_environment(sb, env):
    """NethVoice's environment in its state dir and, as its agent copies it at the end
    of every task, in Redis."""
    sb.environments[NETHVOICE_ID] = dict(env)
    write_env(Path(sb.nethvoice["state_dir"]) / "environment", env)
    r = sb.redis_client("cluster")
    try:
        with r.pipeline() as p:
            p.delete(f"module/{NETHVOICE_ID}/environment")
            p.hset(f"module/{NETHVOICE_ID}/environment", mapping=env)
            p.execute()
    finally:
        r.close()


def restart_asterisk(sb):
    """freepbx restarted: Asterisk listens where the environment now says."""
    for name in ("sip-asterisk", "sip-asterisk-lo"):
        procs.stop(sb.procs.pop(name))
    asterisk.start(sb, sb.environments[NETHVOICE_ID]).wait()


def set_layout(sb, version):
    """Put NethVoice in the layout of `version` ("1.7": one SIP port for UDP and TCP
    and no firewall protection; "1.8": as the sandbox starts). Rules of other
    modules are left alone."""
    current = sb.environments[NETHVOICE_ID]
    env = nethvoice_layout(current, version)
    protection = nethvoice_protection_rules(current)
    have = set(sb.firewalld.firewall_cmd("--list-rich-rules").stdout.splitlines())
    if version == "1.7" and have & set(protection):
        sb.runagent("-m", NETHVOICE_ID, "nethvoice-firewall-protection", "remove")
    set_environment(sb, env)
    if version == "1.8" and not have >= set(nethvoice_protection_rules(env)):
        sb.runagent("-m", NETHVOICE_ID, "nethvoice-firewall-protection", "add")
    restart_asterisk(sb)


def update(sb):
    """NethVoice's update-module from 1.7 to 1.8, the steps that touch SIP ports and
    the firewall: 20allocate_ports gives Asterisk its own UDP port, then the stand-ins
    of 25rewrite_sip_portforward and 99firewall_protection run in NethVoice's context,
    the agent copies the environment to Redis at the end of the task, and freepbx
    restarts on the new ports. Returns the rewrite's log."""
    env = nethvoice_layout(sb.environments[NETHVOICE_ID], "1.8")
    write_env(Path(sb.nethvoice["state_dir"]) / "environment", env)
    rewrite = sb.runagent("-m", NETHVOICE_ID,
                          Path(sb.nethvoice["install_dir"]) / "update-module.d/25rewrite_sip_portforward")
    sb.runagent("-m", NETHVOICE_ID, "nethvoice-firewall-protection", "add")
    set_environment(sb, env)
    restart_asterisk(sb)
    return rewrite.stderr
