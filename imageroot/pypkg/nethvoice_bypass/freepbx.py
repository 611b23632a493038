"""A NethVoice instance's FreePBX database, through `runagent -m <id> mysql`.

NethVoice ships a `mysql` wrapper in its bin/ that reaches its MariaDB container;
as root, `runagent -m <id>` runs it in the instance's context. One call per read.
"""

import json
import subprocess

from .step import Failure

# Trunk keywords of the `pjsip` table (id = trunkid) that the bypass reads.
TRUNK_KEYWORDS = ("registration", "outbound_proxy", "sip_server", "sip_server_port", "transport")


def run_sql(instance, sql):
    argv = ["runagent", "-m", instance, "mysql", "asterisk", "--batch", "--skip-column-names", "--raw",
            "-e", sql]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as err:
        raise Failure("runagent is not on PATH: this action must run on an NS8 node") from err
    if proc.returncode != 0:
        raise Failure(f"FreePBX database of {instance} not readable: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def trunks_query():
    fields = ", ".join(
        f"'{k}', (SELECT p.data FROM pjsip p WHERE p.id = t.trunkid AND p.keyword = '{k}' LIMIT 1)"
        for k in TRUNK_KEYWORDS)
    return (f"SELECT JSON_ARRAYAGG(JSON_OBJECT('id', t.trunkid, 'name', t.name, 'tech', t.tech, "
            f"'disabled', t.disabled, {fields})) FROM trunks t")


def read_trunks(instance):
    out = run_sql(instance, trunks_query()).strip()
    return [] if out in ("", "NULL") else sorted(json.loads(out), key=lambda t: int(t["id"]))


def transport_protocol(trunk):
    """`0.0.0.0-udp` -> `udp`; FreePBX's default transport is UDP."""
    return (trunk.get("transport") or "udp").rsplit("-", 1)[-1].lower()
