"""A NethVoice instance's FreePBX database, through `runagent -m <id> mysql`.

NethVoice ships a `mysql` wrapper in its bin/ that reaches its MariaDB container;
as root, `runagent -m <id>` runs it in the instance's context. One call per read.
"""

import ipaddress
import json
import os
import subprocess

from .step import Failure

# Trunk keywords of the `pjsip` table (id = trunkid) that the bypass reads.
TRUNK_KEYWORDS = ("registration", "outbound_proxy", "sip_server", "sip_server_port", "transport")


# Seconds to wait for the database: a change (one transaction), a read for a status.
SQL_TIMEOUT = float(os.environ.get("NETHVOICE_BYPASS_SQL_TIMEOUT") or 60)
READ_TIMEOUT = 5.0
RELOAD_TIMEOUT = 600


def run_command(instance, argv, timeout, what):
    """A command in the instance's context. Its own session: a cancel (SIGTERM to the
    step's process group) lets it finish instead of tearing it in the middle."""
    try:
        proc = subprocess.run(["runagent", "-m", instance, *argv], capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except FileNotFoundError:
        raise Failure("runagent is not on PATH: this action must run on an NS8 node") from None
    except subprocess.TimeoutExpired:
        raise Failure(f"{what} of {instance} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["no error output"]
        raise Failure(f"{what} of {instance} failed: {lines[-1][-300:]}")
    return proc.stdout


def run_sql(instance, sql, timeout=None):
    return run_command(instance, ["mysql", "asterisk", "--batch", "--skip-column-names", "--raw", "-e", sql],
                       timeout or SQL_TIMEOUT, "the FreePBX database")


def trunks_query():
    fields = ", ".join(
        f"'{k}', (SELECT p.data FROM pjsip p WHERE p.id = t.trunkid AND p.keyword = '{k}' LIMIT 1)"
        for k in TRUNK_KEYWORDS)
    return (f"SELECT JSON_ARRAYAGG(JSON_OBJECT('id', t.trunkid, 'name', t.name, 'tech', t.tech, "
            f"'disabled', t.disabled, {fields})) FROM trunks t")


def read_trunks(instance, timeout=None):
    out = run_sql(instance, trunks_query(), timeout).strip()
    return [] if out in ("", "NULL") else sorted(json.loads(out), key=lambda t: int(t["id"]))


def _setting(key):
    return f"(SELECT s.val FROM kvstore_Sipsettings s WHERE s.`key` = '{key}' AND s.id = 'noid' LIMIT 1)"


def read_site(instance, timeout=None):
    """Trunks and NAT settings in one call: {"trunks": [...], "externip", "localnets"}."""
    sql = (f"SELECT JSON_OBJECT('trunks', ({trunks_query()}), "
           f"'externip', {_setting('externip')}, 'localnets', {_setting('localnets')})")
    site = json.loads(run_sql(instance, sql, timeout))
    site["trunks"] = sorted(site["trunks"] or [], key=lambda t: int(t["id"]))
    site["localnets"] = parse_localnets(site["localnets"])
    site["externip"] = site["externip"] or ""
    return site


# FreePBX keeps `localnets` in kvstore_Sipsettings through BMO setConfig(): a PHP array
# json_encode'd with type 'json-arr', items {"net": "<address>", "mask": "<prefix length>"}
# (FreePBX/sipsettings: Sipsettings.class.php doGeneralPost, install.php migration
# converting dotted masks with mask2cidr). `externip` is a plain string (type NULL).

def parse_localnets(value):
    """FreePBX's stored localnets -> ["192.0.2.0/24", ...] (dotted masks accepted)."""
    try:
        items = json.loads(value) if value else []
    except json.JSONDecodeError:
        return []
    if isinstance(items, dict):  # a PHP array with non-sequential keys encodes as an object
        items = list(items.values())
    networks = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(f"{item['net']}/{item['mask']}", strict=False)))
        except (KeyError, TypeError, ValueError):
            continue
    return networks


def format_localnets(networks):
    items = []
    for network in networks:
        net = ipaddress.ip_network(network)
        items.append({"net": str(net.network_address), "mask": str(net.prefixlen)})
    return json.dumps(items, separators=(",", ":"))


def sql_literal(value):
    """A MariaDB string literal (default sql_mode: backslash escapes are active)."""
    if value is None:
        return "NULL"
    escaped = str(value)
    for raw, esc in (("\\", "\\\\"), ("'", "\\'"), ("\0", "\\0"), ("\n", "\\n"),
                     ("\r", "\\r"), ("\x1a", "\\Z")):
        escaped = escaped.replace(raw, esc)
    return f"'{escaped}'"


def changes_sql(changes):
    """The FreePBX database changes of a plan as one transaction.

    mysql stops at the first failing statement and the connection closes without
    COMMIT, so a failure leaves the database as it was."""
    statements = ["SET autocommit=0", "START TRANSACTION"]
    for change in changes:
        if change["op"] in ("bypass_trunk", "restore_trunk"):
            trunk = int(change["trunk"])
            statements.append(
                "INSERT INTO pjsip (id, keyword, data, flags) VALUES "
                f"({sql_literal(trunk)}, 'outbound_proxy', {sql_literal(change['after'])}, 0) "
                "ON DUPLICATE KEY UPDATE data = VALUES(data)")
        elif change["op"] in ("set_externip", "set_localnets"):
            key = "externip" if change["op"] == "set_externip" else "localnets"
            value = change["after"] if key == "externip" else format_localnets(change["after"])
            kind = "NULL" if key == "externip" else "'json-arr'"
            statements.append(f"DELETE FROM kvstore_Sipsettings WHERE `key` = '{key}' AND id = 'noid'")
            if key == "externip" or change["after"]:
                statements.append("INSERT INTO kvstore_Sipsettings (`key`, val, type, id) VALUES "
                                  f"('{key}', {sql_literal(value)}, {kind}, 'noid')")
    statements.append("COMMIT")
    return ";\n".join(statements) + ";\n"


def apply_changes(instance, changes):
    run_sql(instance, changes_sql(changes))


def reload(instance):
    """Regenerate Asterisk's configuration from the database (once per apply)."""
    run_command(instance, ["fwconsole", "reload"], RELOAD_TIMEOUT, "fwconsole reload")
