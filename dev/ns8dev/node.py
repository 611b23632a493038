# SPDX-License-Identifier: GPL-3.0-or-later
"""What the sandbox node is (names, addresses, ports, node profiles) and the small
tools every one of its services uses: commands, env files, PIDs, namespaces.

A service module (network, redis_server, mariadb, proxy, asterisk, ...) starts its
processes through the sandbox's spawn(), which records each PID in sandbox.json at
once, and returns a Started: wait() until it serves, stop() by PID.
"""

import ctypes
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from . import procs

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "dev"

NODE_ID = "1"
MODULE_ID = "nethvoice-bypass1"
AGENT_ID = f"module/{MODULE_ID}"
NETHVOICE_ID = "nethvoice1"
PROXY_ID = "nethvoice-proxy1"
METRICS_ID = "metrics1"

LAN4, LAN6 = "192.0.2.0/24", "2001:db8::/64"
CLUSTER_NETWORK = "10.5.4.0/24"
ADDRESSES = {
    "node": {"ipv4": "192.0.2.1", "ipv6": "2001:db8::1"},
    "mediant": {"ipv4": "192.0.2.10", "ipv6": "2001:db8::10"},
    "other": {"ipv4": "192.0.2.11", "ipv6": "2001:db8::11"},
    "service_ip": "10.5.4.1",  # the node's VPN address (wg0): proxy SERVICE_IP, PROXY_IP
    "public_ip": "203.0.113.5",  # the proxy's PUBLIC_IP (the node is behind NAT)
}
PORTS = {
    "proxy_sip": 5060,
    "proxy_sips": 5061,
    "proxy_lan_sip": 6060,  # behind NAT the proxy's rich rules send the LAN here
    "proxy_lan_sips": 6061,
    "proxy_hep": 5065,  # siptrace's duplicate_uri: HEP mirror on the node's loopback
    "asterisk_sip_tcp": 20024,  # ASTERISK_SIP_PORT: TCP only on NethVoice 1.8 (fix_ports)
    "asterisk_sip_udp": 20040,  # ASTERISK_SIP_UDP_PORT
    "asterisk_sips": 20025,
    "bypass_metrics": 20200,  # the module's TCP_PORT (tcp-ports-demand=1): its exporter
    "prometheus": 9090,  # the metrics module's, in the node namespace
    "alertmanager": 9093,
}
PROXY_SERVER = f"NethServer 8 {PROXY_ID}"  # KML_SERVER_HEADER
NETHVOICE_IMAGES = {"1.7": "ghcr.io/nethesis/nethvoice:1.7.4", "1.8": "ghcr.io/nethesis/nethvoice:1.8.0"}
ASTERISK_SERVER = "Asterisk PBX"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ADMIN_USER, ADMIN_PASSWORD = "admin", "Nethesis,1234"  # the cluster-admin UI user
# In the node's agent.env: the module's steps reach the api-server stand-in there
# instead of http://cluster-leader:9311 (nethvoice_bypass.clusterapi.ENDPOINT_ENV).
API_ENDPOINT_ENV = "NETHVOICE_BYPASS_API_ENDPOINT"
BLOCKING_POPS = ("brpop", "blpop", "blmove", "brpoplpush")
SYSTEMD_DIR_ENV = "NETHVOICE_BYPASS_SYSTEMD_DIR"  # nethvoice_bypass.systemd.UNIT_DIR_ENV
# The node's packets are the node namespace's: diagnose-sip's kernel capture opens its
# socket there (nethvoice_bypass.diagnose_actions.CAPTURE_NETNS_ENV), as conntrack does.
CAPTURE_NETNS_ENV = "NETHVOICE_BYPASS_CAPTURE_NETNS"
# Node profiles: the agent venv the module's steps run in (first on the node's PATH).
# debian12: built from the system Python with system site packages, so Debian's
# python3-dbus is importable, as on Debian 12/13 nodes. el9: the same Python without
# them, so `import dbus` fails in the venv as on EL9 (venv Python 3.11, dbus-python
# built for 3.9 only), while /usr/bin/python3 keeps python3-dbus.
PROFILES = {"debian12": REPO / ".venv", "el9": REPO / ".venv-el9"}
DEFAULT_PROFILE = "debian12"


def log(msg):
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


class Started:
    """A service that was started: its processes by name, and how to know it serves."""

    def __init__(self, popens, ready=None):
        self.popens = dict(popens)
        self._ready = ready

    def wait(self):
        """Until the service serves (raises when it died or took too long)."""
        if self._ready:
            self._ready()
        return self

    def stop(self):
        """Its processes, newest first, by PID."""
        for popen in reversed(list(self.popens.values())):
            procs.stop(popen)


def run(*argv, input=None, check=True):
    res = subprocess.run([str(a) for a in argv], input=input, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({res.returncode}): "
                           f"{res.stderr.strip() or res.stdout.strip()}")
    return res


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_env(path, values, mode=0o644):
    """KEY=VALUE lines, no quoting: what agent.write_envfile and runagent expect."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(mode)


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def start_time(pid):
    """The kernel start time of a live PID (None once gone or a zombie): tells our
    process from a later one that got the same PID."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def alive_or_raise(popen, name, log_path):
    """For readiness checks: a service that exited says why, from its log."""
    if popen.poll() is not None:
        raise RuntimeError(f"{name} exited:\n{tail(log_path)}")


def netns_list():
    return {line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line}


_libc = ctypes.CDLL("libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000


def run_in_netns(netns, fn, *args, **kwargs):
    """Call fn in a fresh thread that has joined the named network namespace.

    setns(2) with CLONE_NEWNET changes only the calling thread, so sockets created
    by fn live in that namespace while the rest of the process stays where it is.
    """
    result = {}

    def target():
        try:
            with open(f"/run/netns/{netns}") as f:
                if _libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({netns}) failed")
            result["value"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def runner_env(env_file):
    """What dev/ns8dev/agent.py needs from its own environment (the rest comes from
    the env files), like agent@.service's Environment=."""
    return {"PATH": read_env(env_file)["PATH"], "PYTHONPATH": str(DEV),
            "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")}
