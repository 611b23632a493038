"""Sandbox stand-in for what NethVoice's firewall scripts use of NS8's core `agent`
Python library: read_envfile(), the SD_* log prefixes and the node's rich-rule API.

On a node, add_rich_rules() / remove_rich_rules() run the node actions of the same
name (`firewall-cmd --permanent` per rule, per-rule exit codes ignored, then
`firewall-cmd --reload`, whose result is the return value) and list_rich_rules() the
node action list-rich-rules (core >= 3.22). The sandbox has no node agent: the same
firewall-cmd commands run here, against the node's firewalld (DBUS_SYSTEM_BUS_ADDRESS
comes from the node's agent.env through runagent).
"""

import subprocess

SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG = "<3>", "<4>", "<6>", "<7>"


def read_envfile(path):
    env = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                env[key] = value
    return env


def _firewall_cmd(*args):
    return subprocess.run(["firewall-cmd", *args], capture_output=True, text=True)


def _change(option, rules):
    for rule in rules:
        _firewall_cmd("--permanent", f"{option}={rule}")  # the node action ignores these codes
    return _firewall_cmd("--reload").returncode == 0


def add_rich_rules(rules):
    return _change("--add-rich-rule", rules)


def remove_rich_rules(rules):
    return _change("--remove-rich-rule", rules)


def list_rich_rules(raise_on_error=False):
    proc = _firewall_cmd("--list-rich-rules")
    if proc.returncode != 0:
        if raise_on_error:
            raise RuntimeError(f"list-rich-rules failed: {proc.stderr.strip()}")
        return []
    return [line for line in proc.stdout.splitlines() if line.startswith("rule ")]
