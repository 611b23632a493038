# SPDX-License-Identifier: GPL-3.0-or-later
"""A NethVoice instance's FreePBX database, through `runagent -m <id> mysql`.

NethVoice ships a `mysql` wrapper in its bin/ that reaches its MariaDB container
(`podman exec -i mariadb mysql ...`); as root, `runagent -m <id>` runs it in the
instance's context. SQL goes on its stdin, one call per read or per transaction, with
literals that mean the same under any sql_mode.
"""

import json
import os
import re
import subprocess

from .changes import BYPASS_TRUNK, RESTORE_TRUNK, NatChange, TrunkChange
from .errors import Failure
from .sipsettings import TYPES

# Trunk keywords of the `pjsip` table (id = trunkid) that the bypass reads.
TRUNK_KEYWORDS = ("registration", "outbound_proxy", "sip_server", "sip_server_port", "transport")


# Seconds to wait for the database: a change (one transaction), a read for a status.
SQL_TIMEOUT = float(os.environ.get("NETHVOICE_BYPASS_SQL_TIMEOUT") or 60)
READ_TIMEOUT = 5.0
RELOAD_TIMEOUT = 600


def run_command(instance, argv, timeout, what, stdin=None):
    """A command in the instance's context. Its own session: a cancel (SIGTERM to the
    step's process group) lets it finish instead of tearing it in the middle."""
    try:
        proc = subprocess.run(["runagent", "-m", instance, *argv], capture_output=True, text=True,
                              input=stdin, timeout=timeout, start_new_session=True)
    except FileNotFoundError:
        raise Failure("runagent is not on PATH: this action must run on an NS8 node") from None
    except subprocess.TimeoutExpired:
        raise Failure(f"{what} of {instance} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["no error output"]
        raise Failure(f"{what} of {instance} failed: {lines[-1][-300:]}")
    return proc.stdout


def run_sql(instance, sql, timeout=None):
    return run_command(instance, ["mysql", "asterisk", "--batch", "--skip-column-names", "--raw"],
                       timeout or SQL_TIMEOUT, "the FreePBX database", stdin=sql)


def trunks_query():
    """Every trunk with its pjsip keywords; a keyword without a row reads as null."""
    fields = ", ".join(
        f"'{k}', (SELECT p.data FROM pjsip p WHERE p.id = t.trunkid AND p.keyword = '{k}' LIMIT 1)"
        for k in TRUNK_KEYWORDS)
    return (f"SELECT JSON_ARRAYAGG(JSON_OBJECT('id', t.trunkid, 'name', t.name, 'tech', t.tech, "
            f"'disabled', t.disabled, {fields})) FROM trunks t")


def _trunks(value):
    trunks = [dict(t, id=str(t["id"])) for t in value or []]
    return sorted(trunks, key=lambda t: int(t["id"]))


def read_trunks(instance, timeout=None):
    out = run_sql(instance, trunks_query() + ";\n", timeout).strip()
    return [] if out in ("", "NULL") else _trunks(json.loads(out))


def _setting(key):
    return f"(SELECT s.val FROM kvstore_Sipsettings s WHERE s.`key` = '{key}' AND s.id = 'noid' LIMIT 1)"


def read_site(instance, timeout=None):
    """Trunks and NAT settings in one call: {"trunks": [...], "nat": {setting: stored
    text or None}}."""
    nat = ", ".join(f"'{k}', {_setting(k)}" for k in TYPES)
    sql = f"SELECT JSON_OBJECT('trunks', ({trunks_query()}), 'nat', JSON_OBJECT({nat}));\n"
    site = json.loads(run_sql(instance, sql, timeout))
    return {"trunks": _trunks(site["trunks"]), "nat": site["nat"]}


# Literals: a value made only of these characters means the same between single quotes
# under any sql_mode; anything else goes as a hex string converted to utf8mb4, which has
# no escape to misread (NO_BACKSLASH_ESCAPES on or off, ANSI_QUOTES on or off).
PLAIN = re.compile(r"[A-Za-z0-9 .:;,@/_+=()\[\]{}\"-]*")


def sql_literal(value):
    if value is None:
        return "NULL"
    text = str(value)
    if PLAIN.fullmatch(text):
        return f"'{text}'"
    return f"CONVERT(X'{text.encode().hex()}' USING utf8mb4)"


def _statement(change):
    if isinstance(change, TrunkChange) and change.op in (BYPASS_TRUNK, RESTORE_TRUNK):
        where = f"id = {sql_literal(change.trunk)} AND keyword = 'outbound_proxy'"
        if change.after is None:  # no row before the module: none after
            return f"DELETE FROM pjsip WHERE {where}"
        return ("INSERT INTO pjsip (id, keyword, data, flags) VALUES "
                f"({sql_literal(change.trunk)}, 'outbound_proxy', {sql_literal(change.after)}, 0) "
                "ON DUPLICATE KEY UPDATE data = VALUES(data)")
    if isinstance(change, NatChange):
        if change.stored is None:
            return f"DELETE FROM kvstore_Sipsettings WHERE `key` = {sql_literal(change.setting)} AND id = 'noid'"
        return ("INSERT INTO kvstore_Sipsettings (`key`, val, type, id) VALUES "
                f"({sql_literal(change.setting)}, {sql_literal(change.stored)}, "
                f"{sql_literal(TYPES[change.setting])}, 'noid') ON DUPLICATE KEY UPDATE val = VALUES(val)")
    return None


def changes_sql(changes):
    """The FreePBX database changes of a plan as one transaction.

    mysql stops at the first failing statement and the connection closes without
    COMMIT, so a failure leaves the database as it was."""
    statements = ["SET autocommit=0", "START TRANSACTION"]
    statements += [s for s in map(_statement, changes) if s]
    statements.append("COMMIT")
    return ";\n".join(statements) + ";\n"


def apply_changes(instance, changes):
    run_sql(instance, changes_sql(changes))


def reload(instance):
    """Regenerate Asterisk's configuration from the database (once per apply)."""
    run_command(instance, ["fwconsole", "reload"], RELOAD_TIMEOUT, "fwconsole reload")
