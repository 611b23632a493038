# SPDX-License-Identifier: GPL-3.0-or-later
"""Kamailio's db_text tables: one file per table in a directory, read and written
the way the db_text module reads them.

A file is a header line of columns, `name(type[,auto][,null])`, then one row per
line, fields separated by ':' with ':' and '\\' escaped by a backslash (as are
newline, CR and tab). An empty field reads as NULL, so a NOT NULL column needs a
value or a nullable definition (Kamailio refuses the table otherwise).

db_text with `db_mode 1` reads a file again when its mtime (whole seconds) grew
since it last read it. Two writes within one second would look like one, so every
write moves the mtime at least one second past the previous one.
"""

import contextlib
import fcntl
import os
import time
from pathlib import Path

ESCAPES = {":": "\\:", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
UNESCAPES = {":": ":", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}

# Kamailio 5.6's table layouts (table_version in `version`), the columns the proxy
# fills declared so that its rows load: attrs and description nullable.
TABLES = {
    "version": ("id(int,auto) table_name(string) table_version(int)", None),
    "domain": ("id(int,auto) domain(string) did(string,null) last_modified(int)", 2),
    "domain_attrs": ("id(int,auto) did(string) name(string) type(int) value(string) last_modified(int)", 1),
    "dialplan": ("id(int,auto) dpid(int) pr(int) match_op(int) match_exp(string) match_len(int) "
                 "subst_exp(string) repl_exp(string) attrs(string)", 2),
    "dispatcher": ("id(int,auto) setid(int) destination(string) flags(int) priority(int) "
                   "attrs(string,null) description(string,null)", 4),
    # The proxy's own table (modules/postgres/migrations/04_nethvoice-proxy.sql);
    # Kamailio never reads it.
    "nethvoice_proxy_routes": ("id(int,auto) target(string) route_type(string) setid(int)", None),
}


def escape(value):
    if value is None:
        return ""
    return "".join(ESCAPES.get(c, c) for c in str(value))


def split_row(line):
    fields, current, i = [], [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            current.append(UNESCAPES.get(line[i + 1], line[i + 1]))
            i += 2
            continue
        if c == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    fields.append("".join(current))
    return fields


def columns(header):
    """[(name, type)] of a header line."""
    out = []
    for item in header.split():
        name, _, spec = item.partition("(")
        out.append((name, spec.rstrip(")").split(",")[0]))
    return out


def read(directory, table):
    """The rows of a table as dicts (NULL as None, int columns as int)."""
    lines = (Path(directory) / table).read_text().splitlines()
    cols = columns(lines[0])
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        row = {}
        for (name, kind), value in zip(cols, split_row(line), strict=False):
            row[name] = None if value == "" else int(value) if kind == "int" else value
        rows.append(row)
    return rows


def write(directory, table, rows):
    """Replace a table's rows (ids given to rows without one), atomically."""
    path = Path(directory) / table
    header = TABLES[table][0]
    names = [name for name, _ in columns(header)]
    next_id = max([r["id"] for r in rows if r.get("id")] or [0]) + 1
    lines = [header + " "]
    for row in rows:
        if not row.get("id"):
            row = {**row, "id": next_id}
            next_id += 1
        lines.append(":".join(escape(row.get(name)) for name in names))
    previous = path.stat().st_mtime if path.exists() else 0
    tmp = path.with_name(f".{table}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    stamp = max(int(time.time()), int(previous) + 1)
    os.utime(tmp, (stamp, stamp))
    tmp.replace(path)


def create(directory):
    """The tables and their versions, unless they exist."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        if not (directory / table).exists():
            write(directory, table, [])
    if not read(directory, "version"):
        write(directory, "version", [{"table_name": name, "table_version": version}
                                     for name, (_, version) in TABLES.items() if version is not None]
              + [{"table_name": "version", "table_version": 1}])


@contextlib.contextmanager
def locked(directory):
    """One writer at a time (two route actions may run at once)."""
    with open(Path(directory) / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
