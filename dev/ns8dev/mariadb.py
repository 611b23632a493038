# SPDX-License-Identifier: GPL-3.0-or-later
"""NethVoice's MariaDB: a real mariadbd on 127.0.0.1 with the FreePBX tables the
module touches (seed/asterisk.sql), root@'%' as NethVoice's container has it."""

import secrets

from . import procs
from .node import DEV, Started, alive_or_raise, free_port, run


def start(sb):
    """mariadbd on a free port; sb.mariadb gets how to reach it."""
    port, password = free_port(), secrets.token_hex(16)
    base = sb.run_dir / "mariadb"
    datadir, sock = base / "data", base / "mysqld.sock"
    datadir.mkdir(parents=True)
    run("mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
        "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve")
    popen = sb.spawn("mariadb", [
        "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
        f"--port={port}", "--bind-address=127.0.0.1", "--user=root",
        f"--pid-file={base / 'mariadbd.pid'}", "--skip-name-resolve",
        "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M",
    ])
    sb.mariadb = {"host": "127.0.0.1", "port": port, "user": "root",
                  "password": password, "socket": str(sock), "database": "asterisk"}
    sb.state["mariadb"] = sb.mariadb
    sb.save()

    def ready():
        alive_or_raise(popen, "mariadbd", sb.log_dir / "mariadb.log")
        return run("mariadb-admin", "--no-defaults", f"--socket={sock}", "-uroot",
                   "ping", check=False).returncode == 0

    return Started({"mariadb": popen}, lambda: procs.wait_for(ready, 30, "mariadbd"))


def answers(mariadb):
    return run("mariadb-admin", "--no-defaults", f"--socket={mariadb['socket']}", "-uroot",
               f"-p{mariadb['password']}", "ping", check=False).returncode == 0


def seed(mariadb, nv):
    """NethVoice's MariaDB container: root@'%' with MARIADB_ROOT_PASSWORD (the more
    specific root@127.0.0.1 of install-db would shadow it), then FreePBX's tables."""
    password = mariadb["password"]
    setup = f"""
ALTER USER root@localhost IDENTIFIED BY '{password}';
DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
CREATE USER root@'%' IDENTIFIED BY '{password}';
GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;
SET @asterisk_sip_port = '{nv['ASTERISK_SIP_PORT']}';
SET @asterisk_sip_udp_port = '{nv['ASTERISK_SIP_UDP_PORT']}';
SET @asterisk_sips_port = '{nv['ASTERISK_SIPS_PORT']}';
SET @proxy_ip = '{nv['PROXY_IP']}';
SET @proxy_port = '{nv['PROXY_PORT']}';
"""
    seed_sql = (DEV / "ns8dev/seed/asterisk.sql").read_text()
    run("mysql", "--no-defaults", f"--socket={mariadb['socket']}", "-uroot", input=setup + seed_sql)


def sql(mariadb, query, database="asterisk"):
    """Rows of a query, as lists of strings."""
    res = run("mysql", "--no-defaults", f"--socket={mariadb['socket']}", "-uroot",
              f"-p{mariadb['password']}", "--batch", "--skip-column-names", database, "-e", query)
    return [line.split("\t") for line in res.stdout.splitlines()]
