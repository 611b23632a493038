"""The sandbox node: a small, honest NS8 node for tests and `make sandbox`.

What runs (everything as root, nothing on the host's network or firewall):

- network namespace `node`: firewalld (default zone `public`) on a private D-Bus bus,
  eth0 192.0.2.1/24 + 2001:db8::1/64, a dummy wg0 with the VPN address 10.5.4.1, and
  SIP responders standing in for the NethVoice proxy (5060, LAN port 6060) and for
  Asterisk (the NethVoice instance's SIP ports);
- network namespace `remote`, joined by a veth pair: 192.0.2.10 ("the Mediant") and
  192.0.2.11 ("another device"), 2001:db8::10 and ::11;
- in the root namespace on 127.0.0.1: redis-server seeded like a cluster with NS8's
  ACLs, roles and grants, MariaDB with NethVoice's FreePBX tables, the module's agent,
  the nethvoice-proxy stand-in's agent (dev/proxy-standin: the proxy's route actions)
  and the api-server stand-in (ns8dev.apiserver: login, tasks, the cluster-admin page
  and the module's UI, with the UI user admin);
- files under the root dir laid out like a node: etc/nethserver/agent.env,
  var/lib/nethserver/nethvoice-bypass1 (the module, rootfull, linked to the repo's
  imageroot), home/nethvoice1/.config (a NethVoice stand-in with bin/mysql, bin/fwconsole),
  home/nethvoice-proxy1/.config (the proxy stand-in, with NethVoice's own route),
  usr/local/bin/conntrack (the real tool, run in the node namespace: actions run in
  the root namespace, but the node's connection table is the node namespace's).

`<root>/sandbox.json` records names, credentials and PIDs, so `dev/sandbox stop` from
another process can stop everything by PID and delete the namespaces and files.
"""

import contextlib
import ctypes
import functools
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from . import apiserver, procs
from .firewalld import Firewalld
from .sip_responder import PROXY_SCANNER_UA

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
# Node profiles: the agent venv the module's steps run in (first on the node's PATH).
# debian12: built from the system Python with system site packages, so Debian's
# python3-dbus is importable, as on Debian 12/13 nodes. el9: the same Python without
# them, so `import dbus` fails in the venv as on EL9 (venv Python 3.11, dbus-python
# built for 3.9 only), while /usr/bin/python3 keeps python3-dbus.
PROFILES = {"debian12": REPO / ".venv", "el9": REPO / ".venv-el9"}
DEFAULT_PROFILE = "debian12"

_counter = iter(range(1, 1_000_000))


def log(msg):
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------
# Small helpers


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


@functools.cache
def proxy_standin():
    """dev/proxy-standin/standin.py, loaded by path (the directory is no package)."""
    spec = importlib.util.spec_from_file_location("ns8dev_proxy_standin",
                                                  DEV / "proxy-standin/standin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def ping(dst, timeout=2.0):
    """One ICMP echo over a raw socket (iputils-ping may not be installed)."""
    v6 = ":" in dst
    family, proto, req, rep = ((socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129) if v6
                               else (socket.AF_INET, socket.IPPROTO_ICMP, 8, 0))
    ident = os.getpid() & 0xFFFF
    packet = struct.pack("!BBHHH", req, 0, 0, ident, 1) + b"sandbox!"  # even length
    if not v6:  # the kernel fills the ICMPv6 checksum, not the ICMPv4 one
        total = sum(struct.unpack(f"!{len(packet) // 2}H", packet))
        total = (total >> 16) + (total & 0xFFFF)
        packet = packet[:2] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + packet[4:]
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        s.settimeout(timeout)
        s.sendto(packet, (dst, 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(1500)
            except TimeoutError:
                return False
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]  # v4 raw reads include the IP header
            if icmp[0] == rep and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
    return False


# ---------------------------------------------------------------------------------
# Seed data: what NS8 add-module, NethVoice and the proxy would have written


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


def asterisk_listeners(env):
    """Where Asterisk listens for SIP in a NethVoice environment."""
    udp = env.get("ASTERISK_SIP_UDP_PORT") or env["ASTERISK_SIP_PORT"]
    return [f"--listen=tcp:{env['ASTERISK_SIP_PORT']}", f"--listen=udp:{udp}"]


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


# ---------------------------------------------------------------------------------


class Sandbox:
    """A sandbox node under `root`. `up()` starts it, `down()` removes every trace.

    Useful attributes once up: addresses, ports, bus_address, netns (node/remote
    names), redis (cluster/module/default credentials and address), mariadb,
    install_dir, state_dir, env_file, nethvoice (its dirs), proxy (the proxy
    stand-in's install_dir and state_dir), api_url (the api-server stand-in, also
    NETHVOICE_BYPASS_API_ENDPOINT in the node's agent.env; the cluster-admin page at
    api_url + "/"), admin ({"username", "password"} of the UI user), firewalld (the
    Firewalld harness: firewall_cmd, nft). Commands: remote(), node(), in_netns(),
    runagent(), sql(), redis_client(), agent_env().
    """

    def __init__(self, root, start_agent=True, foreground=False, profile=DEFAULT_PROFILE):
        if profile not in PROFILES:
            raise ValueError(f"unknown node profile {profile!r}: one of {', '.join(PROFILES)}")
        if not (PROFILES[profile] / "bin/python3").exists():
            raise RuntimeError(f"the {profile} profile's venv {PROFILES[profile]} is missing: run `make venv`")
        self.profile = profile
        self.root = Path(root).resolve()
        self.start_agent = start_agent
        # A foreground owner (`dev/sandbox up`) is asked to stop by `dev/sandbox stop`,
        # so it reaps its own children; an in-process owner (pytest) never is.
        self.foreground = foreground
        tag = f"nvb{os.getpid()}-{next(_counter)}-"
        self.netns = {"node": tag + "node", "remote": tag + "remote"}
        self.addresses = ADDRESSES
        self.ports = PORTS
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "log"
        self.env_file = self.root / "etc/nethserver/agent.env"
        self.install_dir = self.root / "var/lib/nethserver" / MODULE_ID
        self.state_dir = self.install_dir / "state"
        nv = self.root / "home" / NETHVOICE_ID / ".config"
        self.nethvoice = {"module_id": NETHVOICE_ID, "install_dir": str(nv),
                          "state_dir": str(nv / "state"),
                          "fwconsole_log": str(nv / "state/fwconsole.log")}
        px = self.root / "home" / PROXY_ID / ".config"
        self.proxy = {"module_id": PROXY_ID, "install_dir": str(px),
                      "state_dir": str(px / "state")}
        self.admin = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        self.api_url = None
        self._waits = []  # readiness checks of processes started but not yet waited for
        # The modules' environments, as in their state dirs and in Redis.
        self.environments = {
            MODULE_ID: dict(module_environment(MODULE_ID, "ghcr.io/nethserver/nethvoice-bypass:latest"),
                            TCP_PORT=str(PORTS["bypass_metrics"])),
            NETHVOICE_ID: nethvoice_environment(),
            PROXY_ID: proxy_environment(),
        }
        self.firewalld = None
        self.metrics = {}
        self.bus_address = None
        self.redis = {}
        self.mariadb = {}
        self.state = {}
        self._procs = {}  # name -> Popen, for processes this object started
        self._spawned = {}  # name -> (argv, kwargs): how to start it again

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def up(self):
        started = time.monotonic()
        self._prepare_root()
        try:
            self._network()
            self._firewalld()
            self._redis()
            self._cluster()  # starts the proxy agent and the api-server, waited for last
            self._mariadb()
            self._sip_responders()
            self._install_modules()
            self._services()
        except BaseException:
            log("start-up failed, cleaning up")
            self.down()
            raise
        self.state["startup_seconds"] = round(time.monotonic() - started, 2)
        self._save()
        return self

    def down(self):
        if self.state:
            teardown(self.state, self._procs)
        self._procs.clear()
        self.state = {}

    # -- steps ----------------------------------------------------------------------

    def _prepare_root(self):
        if self.root in (Path("/"), REPO) or (self.root.exists() and any(self.root.iterdir())):
            raise RuntimeError(f"{self.root} must be a new or empty directory "
                               "(a running sandbox? try `dev/sandbox stop`)")
        for d in (self.run_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.state = {
            "root": str(self.root),
            "repo": str(REPO),
            "profile": self.profile,
            "module_id": MODULE_ID,
            "agent_id": AGENT_ID,
            "install_dir": str(self.install_dir),
            "state_dir": str(self.state_dir),
            "env_files": [str(self.env_file)],
            "base_actions": str(DEV / "base-actions"),
            "netns": {},
            "addresses": self.addresses,
            "ports": self.ports,
            "nethvoice": self.nethvoice,
            "proxy": self.proxy,
            "admin": self.admin,
            "logs": str(self.log_dir),
            "pids": {},
            "pid_start_times": {},
        }
        if self.foreground:
            self.state["controller"] = {"pid": os.getpid(), "start_time": start_time(os.getpid())}
        self._save()

    def _save(self):
        tmp = self.root / "sandbox.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.chmod(0o600)  # it holds the sandbox's passwords
        tmp.replace(self.root / "sandbox.json")

    def _track(self, name, popen):
        """Record a started process at once, so a failure later still stops it."""
        self._procs[name] = popen
        self.state["pids"][name] = popen.pid
        self.state["pid_start_times"][name] = start_time(popen.pid)
        self._save()

    def _spawn(self, name, argv, **kwargs):
        popen = procs.start([str(a) for a in argv], self.log_dir / f"{name}.log", **kwargs)
        self._track(name, popen)
        self._spawned[name] = (argv, kwargs)
        return popen

    @contextlib.contextmanager
    def stopped(self, name):
        """A service of the node down for a while (e.g. "redis-replica", "mariadb"):
        stopped, then started again as before and waited for."""
        procs.stop(self._procs[name])
        try:
            yield
        finally:
            argv, kwargs = self._spawned[name]
            self._spawn(name, argv, **kwargs)
            ready = {"redis-replica": self._replica_linked, "mariadb": self._mariadb_answers}.get(name)
            if ready:
                procs.wait_for(ready, 30, f"{name} to be back")

    @contextlib.contextmanager
    def frozen(self, name):
        """A service that hangs for a while (SIGSTOP, then SIGCONT): its clients time out."""
        os.kill(self._procs[name].pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self._procs[name].pid, signal.SIGCONT)

    def _replica_linked(self):
        import redis

        host, port = self.redis["replica_address"].split(":")
        try:
            with redis.Redis(host=host, port=int(port), username="cluster",
                             password=self.redis["cluster"]["password"]) as r:
                return r.info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def _mariadb_answers(self):
        return run("mariadb-admin", "--no-defaults", f"--socket={self.mariadb['socket']}", "-uroot",
                   f"-p{self.mariadb['password']}", "ping", check=False).returncode == 0

    def _network(self):
        node, remote = self.netns["node"], self.netns["remote"]
        for role, name in self.netns.items():
            run("ip", "netns", "add", name)
            self.state["netns"][role] = name
            self._save()
        a = self.addresses
        run("ip", "-n", node, "-batch", "-", input="\n".join([
            "link set lo up",
            f"link add eth0 type veth peer name eth0 netns {remote}",
            f"addr add {a['node']['ipv4']}/24 dev eth0",
            f"addr add {a['node']['ipv6']}/64 dev eth0 nodad",
            "link set eth0 up",
            # NS8's WireGuard interface carries the cluster VPN address. An empty
            # bridge will do (some kernels lack the dummy and wireguard drivers).
            "link add wg0 type bridge",
            f"addr add {a['service_ip']}/24 dev wg0",
            "link set wg0 up",
        ]) + "\n")
        run("ip", "-n", remote, "-batch", "-", input="\n".join([
            "link set lo up",
            f"addr add {a['mediant']['ipv4']}/24 dev eth0",
            f"addr add {a['other']['ipv4']}/24 dev eth0",
            f"addr add {a['mediant']['ipv6']}/64 dev eth0 nodad",
            f"addr add {a['other']['ipv6']}/64 dev eth0 nodad",
            "link set eth0 up",
        ]) + "\n")

    def _firewalld(self):
        self.firewalld = Firewalld(str(self.run_dir / "firewalld"), self.netns["node"])
        try:
            self.firewalld.start()
        finally:  # record whatever did start
            for name, popen in (("dbus", self.firewalld.dbus),
                                ("firewalld", self.firewalld.daemon)):
                if popen is not None:
                    self._track(name, popen)
        self.bus_address = self.state["bus_address"] = self.firewalld.bus_address
        self._save()
        # What the NS8 node actions would have done for NethVoice and its proxy:
        # add-public-service (a firewalld service in the default zone),
        # add-rich-rules (permanent, then reload), and the trusted zone for wg0.
        def fw(*args):
            res = self.firewalld.firewall_cmd(*args, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"firewall-cmd {' '.join(args)}: {res.stderr.strip()}")
        nv = self.environments[NETHVOICE_ID]
        services = {
            PROXY_ID: ["5060/tcp", "5060/udp", "5061/tcp", "10000-20000/udp",
                       "6060-6061/tcp", "6060/udp"],
            NETHVOICE_ID: [f"{nv['ASTERISK_SIP_UDP_PORT']}/udp",
                           f"{nv['NETHCTI_TLS_PORT']}/tcp",
                           f"{nv['ASTERISK_RTPSTART']}-{nv['ASTERISK_RTPEND']}/udp",
                           f"{nv['JANUS_RTPSTART']}-{nv['JANUS_RTPEND']}/udp"],
        }
        for service, ports in services.items():
            fw("--permanent", f"--new-service={service}")
            fw("--permanent", f"--service={service}", *[f"--add-port={p}" for p in ports])
        fw("--permanent", *[f"--add-service={s}" for s in services])
        fw("--permanent", *[f"--add-rich-rule={r}" for r in proxy_rich_rules() + nethvoice_protection_rules(nv)])
        fw("--permanent", "--zone=trusted", "--add-interface=wg0")
        fw("--permanent", "--zone=trusted", f"--add-source={CLUSTER_NETWORK}")
        fw("--reload")
        self._check_pings()

    def _check_pings(self):
        """Both ways, both families, through the running firewall."""
        a = self.addresses
        for src, dst in (("remote", a["node"]["ipv4"]), ("remote", a["node"]["ipv6"]),
                         ("node", a["mediant"]["ipv4"]), ("node", a["other"]["ipv6"])):
            if not self.in_netns(src, ping, dst):
                raise RuntimeError(f"ping {src} -> {dst}: no echo reply")

    def _redis(self):
        """The leader's redis-server and this node's replica of it, with NS8's users
        (node/install-finalize.sh, cluster add-node and add-module). Agents read from
        the replica (REDIS_REPLICA_ADDRESS), as on a worker node, and write to the
        leader (REDIS_ADDRESS); ACLs are not replicated, NS8 copies them to every node."""
        pw = {"cluster": secrets.token_hex(16), "node": secrets.token_hex(16),
              **{m: secrets.token_hex(16) for m in (MODULE_ID, NETHVOICE_ID, PROXY_ID, METRICS_ID)}}
        users = [
            DEFAULT_USER_ACL,
            f"user cluster on >{pw['cluster']} ~* &* +@all",
            f"user node/{NODE_ID} on >{pw['node']} resetkeys ~node/{NODE_ID}/* ~task/node/{NODE_ID}/* "
            "%R~private/nodes/* %R~private/agents/* %R~cluster/* %R~node/* %R~module/* "
            f"resetchannels &progress/node/{NODE_ID}/* &node/{NODE_ID}/event/* "
            "nocommands +@read +@write +@transaction +@connection +publish -@admin +psync +replconf",
            *[module_acl(m, pw[m]) for m in (MODULE_ID, NETHVOICE_ID, PROXY_ID, METRICS_ID)],
        ]
        leader, replica = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        for name, address, extra in (
                ("redis", leader, []),
                ("redis-replica", replica, [f"replicaof 127.0.0.1 {leader.rsplit(':', 1)[1]}",
                                            f"masteruser node/{NODE_ID}", f"masterauth {pw['node']}"])):
            redis_dir = self.run_dir / name
            redis_dir.mkdir()
            conf = redis_dir / "redis.conf"
            conf.write_text("\n".join(["bind 127.0.0.1", f"port {address.rsplit(':', 1)[1]}", f"dir {redis_dir}",
                                       'save ""', "appendonly no", "daemonize no", *extra, *users]) + "\n")
            conf.chmod(0o600)
            self._spawn(name, ["redis-server", conf])
        self.redis = {
            "address": leader,
            "replica_address": replica,
            "cluster": {"address": leader, "user": "cluster", "password": pw["cluster"]},
            "module": {"address": leader, "user": AGENT_ID, "password": pw[MODULE_ID]},
            "default": {"address": replica, "user": "default", "password": "nopass"},
            "passwords": pw,
        }
        self.state["cluster_redis"] = self.redis["cluster"]
        self.state["module_redis"] = self.redis["module"]
        self.state["redis"] = self.redis
        self._save()

        def ready():
            for name in ("redis", "redis-replica"):
                if self._procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{tail(self.log_dir / f'{name}.log')}")
            return self._replica_linked()

        procs.wait_for(ready, 10, "redis-server and its replica")

    def sync_replica(self):
        """Wait until the replica has every write made so far on the leader (what a test
        wrote there must be what the next action reads). Not while it is stopped."""
        if self._procs["redis-replica"].poll() is not None:
            return
        r = self.redis_client("cluster")
        try:
            if r.execute_command("WAIT", 1, 2000) < 1:
                raise RuntimeError("the Redis replica did not catch up in 2 s")
        finally:
            r.close()

    def _mariadb(self):
        port, password = free_port(), secrets.token_hex(16)
        base = self.run_dir / "mariadb"
        datadir, sock = base / "data", base / "mysqld.sock"
        datadir.mkdir(parents=True)
        run("mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
            "--skip-name-resolve")
        popen = self._spawn("mariadb", [
            "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
            f"--port={port}", "--bind-address=127.0.0.1", "--user=root",
            f"--pid-file={base / 'mariadbd.pid'}", "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M",
        ])
        self.mariadb = {"host": "127.0.0.1", "port": port, "user": "root",
                        "password": password, "socket": str(sock), "database": "asterisk"}
        self.state["mariadb"] = self.mariadb
        self._save()

        def ready():
            if popen.poll() is not None:
                raise RuntimeError(f"mariadbd exited:\n{tail(self.log_dir / 'mariadb.log')}")
            return run("mariadb-admin", "--no-defaults", f"--socket={sock}", "-uroot",
                       "ping", check=False).returncode == 0

        procs.wait_for(ready, 30, "mariadbd")
        nv = self.environments[NETHVOICE_ID]
        nv["NETHVOICE_MARIADB_PORT"] = str(port)  # NethVoice's MariaDB is this one
        # NethVoice's MariaDB container: root@'%' with MARIADB_ROOT_PASSWORD (the
        # more specific root@127.0.0.1 of install-db would shadow it).
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
        seed = (DEV / "ns8dev/seed/asterisk.sql").read_text()
        run("mysql", "--no-defaults", f"--socket={sock}", "-uroot", input=setup + seed)

    def _sip_responders(self):
        p = self.ports
        self._start_responders({
            "sip-proxy": [
                "--server", PROXY_SERVER,
                "--drop-user-agent", PROXY_SCANNER_UA,  # like Kamailio's REQINIT
                *[f"--listen={proto}:{port}" for proto, port in (
                    ("udp", p["proxy_sip"]), ("tcp", p["proxy_sip"]),
                    ("udp", p["proxy_lan_sip"]), ("tcp", p["proxy_lan_sip"]))],
            ],
            "sip-asterisk": ["--server", ASTERISK_SERVER, *asterisk_listeners(self.environments[NETHVOICE_ID])],
        })

    def _start_responders(self, responders):
        # The same stand-ins on the loopback of the root namespace, where actions run:
        # on a node Kamailio listens on 127.0.0.1:5060 and Asterisk on every address,
        # so probes from the node itself (verify-bypass) reach them there.
        loopback = ["--host=127.0.0.1", "--host=::1", "--shared"]
        local = {f"{name}-lo": [*args, *loopback] for name, args in responders.items()}
        env = dict(os.environ, PYTHONPATH=str(DEV))
        for name, args in responders.items():
            self._spawn(name, ["ip", "netns", "exec", self.netns["node"], sys.executable,
                               "-m", "ns8dev.sip_responder", *args], env=env)
        for name, args in local.items():
            self._spawn(name, [sys.executable, "-m", "ns8dev.sip_responder", *args], env=env)
        for name in [*responders, *local]:
            def ready(name=name):
                if self._procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{tail(self.log_dir / f'{name}.log')}")
                return "ready" in tail(self.log_dir / f"{name}.log", 5)
            procs.wait_for(ready, 10, name)

    def _node_tools(self):
        """<root>/usr/local/bin: tools that must act on the node namespace.

        Actions run in the root namespace (they reach Redis and MariaDB on 127.0.0.1),
        but the node's conntrack table is the node namespace's: the real conntrack,
        run there, is what `conntrack` means on the node's PATH.
        """
        bin_dir = self.root / "usr/local/bin"
        bin_dir.mkdir(parents=True)
        for tool in ("conntrack", "nft"):
            real = shutil.which(tool, path=SYSTEM_PATH)
            if real:  # without it the module sees what a node without the tool shows
                wrapper = bin_dir / tool
                wrapper.write_text(f"#!/bin/sh\n# Sandbox: the node's {tool} state is the one of "
                                   f"namespace {self.netns['node']}.\n"
                                   f'exec ip netns exec {self.netns["node"]} {real} "$@"\n')
                wrapper.chmod(0o755)
        return bin_dir

    def _cluster(self):
        """What the cluster side needs, then the proxy stand-in's agent and the
        api-server, started here (they need only Redis) so that their start-up overlaps
        MariaDB's; _services() waits for them."""
        node_path = f"{PROFILES[self.profile] / 'bin'}:{DEV / 'bin'}:{self._node_tools()}:{SYSTEM_PATH}"
        self.api_url = self.state["api_url"] = f"http://127.0.0.1:{free_port()}"
        self._save()
        # /etc/nethserver/agent.env of the node
        write_env(self.env_file, {
            "REDIS_ADDRESS": self.redis["address"],
            "REDIS_REPLICA_ADDRESS": self.redis["replica_address"],
            "NODE_ID": NODE_ID,
            "NS8_SANDBOX_ROOT": self.root,
            "NS8_SANDBOX_NETNS": self.netns["node"],
            "AGENT_BASEACTIONS_DIR": DEV / "base-actions",  # the core's actions, e.g. get-status
            "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address,
            "PATH": node_path,
            API_ENDPOINT_ENV: self.api_url,
            SYSTEMD_DIR_ENV: self.root / "etc/systemd/system",  # the module's units, for dev/bin/systemctl
        })
        (self.root / "etc/systemd/system").mkdir(parents=True)
        # Roles and grants (add-module, the proxy's routeadm role, the image labels)
        # and the cluster-admin UI user: before anything can log in or submit tasks.
        r = self.redis_client("cluster")
        try:
            apiserver.seed_cluster(r, admin=(self.admin["username"], self.admin["password"]))
        finally:
            r.close()
        # The nethvoice-proxy stand-in, rootless: ~nethvoice-proxy1/.config, with the
        # route NethVoice's configure-module adds for its own host name.
        envs, standin = self.environments, proxy_standin()
        proxy_state = standin.install(self.proxy["install_dir"], envs[PROXY_ID],
                                      self.redis["passwords"][PROXY_ID])
        standin.seed_route(proxy_state, **standin.nethvoice_route(envs[NETHVOICE_ID],
                                                                  envs[PROXY_ID]))
        self._waits = [self._proxy_agent(), self._apiserver(), self._metrics()]

    def _install_modules(self):
        node_path = read_env(self.env_file)["PATH"]
        pw, envs = self.redis["passwords"], self.environments
        # The core's own agents: runagent defaults to "cluster" as root.
        for agent, user in (("cluster", "cluster"), ("node", f"node/{NODE_ID}")):
            d = self.root / "var/lib/nethserver" / agent / "state"
            write_env(d / "agent.env", {"REDIS_USER": user,
                                        "REDIS_PASSWORD": pw[agent],
                                        "PATH": node_path}, 0o600)
            write_env(d / "environment", {"NODE_ID": NODE_ID})

        # The module, rootfull: /var/lib/nethserver/<id>, code linked to the repo.
        self.state_dir.mkdir(parents=True)
        for entry in sorted((REPO / "imageroot").iterdir()):
            (self.install_dir / entry.name).symlink_to(entry)
        write_env(self.state_dir / "environment", envs[MODULE_ID])
        write_env(self.state_dir / "agent.env", {
            "REDIS_USER": AGENT_ID,
            "REDIS_PASSWORD": pw[MODULE_ID],
            "PYTHONPATH": self.install_dir / "pypkg",
            "PATH": f"{self.install_dir / 'bin'}:{node_path}",
        }, 0o600)

        # The NethVoice stand-in, rootless: ~nethvoice1/.config
        nv_dir = Path(self.nethvoice["install_dir"])
        for part in ("bin", "pypkg", "update-module.d"):
            shutil.copytree(DEV / "nethvoice-standin" / part, nv_dir / part)
        nv_state = nv_dir / "state"
        write_env(nv_state / "environment", envs[NETHVOICE_ID])
        write_env(nv_state / "passwords.env", {
            "MARIADB_ROOT_PASSWORD": self.mariadb["password"],
            "AMPDBPASS": secrets.token_hex(8),
        }, 0o600)
        write_env(nv_state / "agent.env", {
            "REDIS_USER": f"module/{NETHVOICE_ID}",
            "REDIS_PASSWORD": pw[NETHVOICE_ID],
            "PYTHONPATH": nv_dir / "pypkg",
            "PATH": f"{nv_dir / 'bin'}:{node_path}",
        }, 0o600)
        self._seed_redis()

    def _seed_redis(self):
        envs = self.environments
        proxy = envs[PROXY_ID]
        images = {MODULE_ID: "nethvoice-bypass", NETHVOICE_ID: "nethvoice",
                  PROXY_ID: "nethvoice-proxy"}
        r = self.redis_client("cluster")
        p = r.pipeline()
        p.set("cluster/network", CLUSTER_NETWORK)
        p.hset(f"node/{NODE_ID}/vpn", mapping={
            "ip_address": ADDRESSES["service_ip"], "public_key": secrets.token_hex(16),
            "destinations": ADDRESSES["service_ip"] + "/32",
            "endpoint": f"{ADDRESSES['public_ip']}:55820", "listen_port": "55820"})
        for module_id, image in images.items():
            p.hset("cluster/module_node", module_id, NODE_ID)
            p.hset(f"module/{module_id}", mapping={"image": image, "image_url_override": "",
                                                   "redis_sha256": ""})
            p.hset(f"module/{module_id}/environment", mapping=envs[module_id])
            p.sadd(f"module/{module_id}/flags",
                   "rootfull" if module_id == MODULE_ID else "rootless")
            p.set(f"cluster/module_sequence/{image}", 1)
            p.set(f"cluster/default_instance/{image}", module_id)
            p.set(f"node/{NODE_ID}/default_instance/{image}", module_id)
        p.sadd(f"cluster/authorizations/module/{NETHVOICE_ID}", "traefik@any:fulladm",
               "node:fwadm,portsadm", "nethvoice-proxy@any:routeadm",
               "cluster:accountconsumer", "self:selfadm")
        p.sadd(f"cluster/authorizations/module/{PROXY_ID}", "node:fwadm",
               "traefik@any:certadm", "self:selfadm")
        for transport in ("udp", "tcp"):  # the proxy's configure-module/90srv
            p.hset(f"module/{PROXY_ID}/srv/{transport}/sip", mapping={
                "port": str(PORTS["proxy_sip"]), "host": proxy["SERVICE_IP"],
                "address": proxy["PRIVATE_IP"], "public_address": proxy["PUBLIC_IP"],
                "fqdn": proxy["KML_DEFAULT_FQDN"], "node": NODE_ID,
                "module_uuid": proxy["MODULE_UUID"]})
        p.execute()
        r.close()

    def _services(self):
        """Start the module's agent, then wait for it and for what _cluster() started
        (the proxy stand-in's agent, the api-server, the metrics module), then create
        the module as add-module does."""
        for wait in [self._agent(), *self._waits]:
            if wait:
                wait()
        if self.start_agent:
            self._create_module()

    def _create_module(self):
        """add-module's last step: create-module, run by the module's agent."""
        r = self.redis_client("cluster")
        task_id = str(uuid.uuid4())
        try:
            r.lpush(f"{AGENT_ID}/tasks", json.dumps({"id": task_id, "action": "create-module", "user": "cluster",
                                                     "data": {"images": [], "volumes": {}}}))
            prefix = f"task/{AGENT_ID}/{task_id}"
            procs.wait_for(lambda: r.exists(f"{prefix}/exit_code"), 60, "create-module")
            if r.get(f"{prefix}/exit_code") != "0":
                raise RuntimeError(f"create-module failed: {r.get(f'{prefix}/error')}")
        finally:
            r.close()

    def _metrics(self):
        """The metrics module stand-in (ns8dev.metrics): Prometheus and Alertmanager in the
        node namespace, and an agent whose event handlers provision them."""
        from . import metrics

        install = self.root / "home" / METRICS_ID / ".config"
        state = install / "state"
        state.mkdir(parents=True)
        (install / "events").symlink_to(DEV / "metrics-standin/events")
        node_path = read_env(self.env_file)["PATH"]
        write_env(state / "environment", module_environment(METRICS_ID, "ghcr.io/nethserver/metrics:latest"))
        write_env(state / "agent.env", {"REDIS_USER": f"module/{METRICS_ID}",
                                        "REDIS_PASSWORD": self.redis["passwords"][METRICS_ID],
                                        "PYTHONPATH": DEV, "PATH": node_path}, 0o600)
        p = self.ports
        metrics.prepare(state, f"127.0.0.1:{p['alertmanager']}")
        node = ["ip", "netns", "exec", self.netns["node"]]
        self._spawn("alertmanager", [*node, "prometheus-alertmanager", f"--config.file={state / 'alertmanager.yml'}",
                                     f"--storage.path={state / 'alertmanager'}", "--cluster.listen-address=",
                                     f"--web.listen-address=127.0.0.1:{p['alertmanager']}"])
        prometheus = self._spawn("prometheus", [*node, "prometheus", f"--config.file={state / 'prometheus.yml'}",
                                                f"--storage.tsdb.path={state / 'tsdb'}",
                                                f"--web.listen-address=127.0.0.1:{p['prometheus']}"])
        (state / "prometheus.pid").write_text(str(prometheus.pid))
        self._spawn("metrics-agent", [sys.executable, "-m", "ns8dev.agent", "serve", "--agent-id",
                                      f"module/{METRICS_ID}", "--install-dir", install, "--env-file", self.env_file],
                    env=self._runner_env(), cwd=state)
        self.metrics = {"state_dir": str(state), "prometheus": f"http://127.0.0.1:{p['prometheus']}",
                        "alertmanager": f"http://127.0.0.1:{p['alertmanager']}"}
        self.state["metrics"] = self.metrics
        self._save()
        return lambda: (self._wait_polling("metrics-agent", f"module/{METRICS_ID}"),
                        procs.wait_for(lambda: self.prometheus_api("/-/ready", raw=True), 30, "Prometheus"))

    def prometheus_api(self, path, raw=False):
        """GET on the sandbox's Prometheus (in the node namespace): the JSON "data", or
        with raw the body; None when it does not answer."""
        import urllib.request

        def get():
            try:
                with urllib.request.urlopen(self.metrics["prometheus"] + path, timeout=5) as resp:
                    body = resp.read().decode()
            except OSError:
                return None
            return body if raw else json.loads(body)["data"]
        return self.in_netns("node", get)

    def _runner_env(self):
        """What dev/ns8dev/agent.py needs from its own environment (the rest comes from
        the env files), like agent@.service's Environment=."""
        return {"PATH": read_env(self.env_file)["PATH"], "PYTHONPATH": str(DEV),
                "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")}

    def _wait_polling(self, name, agent_id, timeout=15):
        """Until agent_id waits on its task queue: a Redis client named agent_id (what
        the api-server's client idle check looks for) blocked in BRPOP."""
        popen = self._procs[name]
        r = self.redis_client("cluster")

        def polling():
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{tail(self.log_dir / f'{name}.log')}")
            return any(c.get("name") == agent_id and c.get("cmd") in BLOCKING_POPS
                       for c in r.client_list())
        try:
            procs.wait_for(polling, timeout, f"{name} to wait on {agent_id}/tasks")
        finally:
            r.close()

    def _agent(self):
        if not self.start_agent:
            return None
        if not (DEV / "ns8dev/agent.py").exists():
            log("dev/ns8dev/agent.py is missing: the agent is not started")
            return None
        self._spawn("agent", [
            sys.executable, "-m", "ns8dev.agent", "serve", "--agent-id", AGENT_ID,
            "--install-dir", self.install_dir, "--base-actions", DEV / "base-actions",
            "--env-file", self.env_file,
        ], env=self._runner_env(), cwd=self.state_dir)

        def wait():
            try:
                self._wait_polling("agent", AGENT_ID)
            except TimeoutError:
                log("the agent runs but does not wait on its task queue yet; see "
                    f"{self.log_dir / 'agent.log'}")
        return wait

    def _proxy_agent(self):
        """The nethvoice-proxy stand-in under the same agent runner as the module."""
        argv = proxy_standin().agent_argv(self.proxy["install_dir"], self.env_file)
        self._spawn("proxy-agent", argv, env=self._runner_env(), cwd=self.proxy["state_dir"])
        return functools.partial(self._wait_polling, "proxy-agent", f"module/{PROXY_ID}")

    def _apiserver(self):
        """The api-server stand-in: the cluster-admin page (dev/cluster-admin) at /, the
        module's UI (ui/dist) at /apps/<module_id>/; missing directories answer 404."""
        name = "api-server"
        popen = self._spawn(name, [
            sys.executable, "-m", "ns8dev.apiserver",
            "--listen", self.api_url.removeprefix("http://"),
            "--redis-address", self.redis["address"],
            "--redis-user", "cluster", "--redis-password", self.redis["cluster"]["password"],
            "--static", REPO / "dev/cluster-admin", "--app", f"{MODULE_ID}={REPO / 'ui/dist'}",
        ], env=self._runner_env())

        def listening():
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{tail(self.log_dir / f'{name}.log')}")
            return "api-server listening on http://" in tail(self.log_dir / f"{name}.log")
        return lambda: procs.wait_for(listening, 15, name)

    # -- NethVoice versions ----------------------------------------------------------

    def _nethvoice_env(self, env):
        """NethVoice's environment in its state dir and, as its agent copies it at the
        end of every task, in Redis."""
        self.environments[NETHVOICE_ID] = dict(env)
        write_env(Path(self.nethvoice["state_dir"]) / "environment", env)
        r = self.redis_client("cluster")
        try:
            with r.pipeline() as p:
                p.delete(f"module/{NETHVOICE_ID}/environment")
                p.hset(f"module/{NETHVOICE_ID}/environment", mapping=env)
                p.execute()
        finally:
            r.close()

    def _restart_asterisk(self):
        """freepbx restarted: Asterisk listens where the environment now says."""
        for name in ("sip-asterisk", "sip-asterisk-lo"):
            procs.stop(self._procs.pop(name))
        self._start_responders({"sip-asterisk": ["--server", ASTERISK_SERVER,
                                                 *asterisk_listeners(self.environments[NETHVOICE_ID])]})

    def set_nethvoice_layout(self, version):
        """Put NethVoice in the layout of `version` ("1.7": one SIP port for UDP and TCP
        and no firewall protection; "1.8": as the sandbox starts). Rules of other
        modules are left alone."""
        current = self.environments[NETHVOICE_ID]
        env = nethvoice_layout(current, version)
        protection = nethvoice_protection_rules(current)
        have = set(self.firewalld.firewall_cmd("--list-rich-rules").stdout.splitlines())
        if version == "1.7" and have & set(protection):
            self.runagent("-m", NETHVOICE_ID, "nethvoice-firewall-protection", "remove")
        self._nethvoice_env(env)
        if version == "1.8" and not have >= set(nethvoice_protection_rules(env)):
            self.runagent("-m", NETHVOICE_ID, "nethvoice-firewall-protection", "add")
        self._restart_asterisk()

    def update_nethvoice(self):
        """NethVoice's update-module from 1.7 to 1.8, the steps that touch SIP ports
        and the firewall: 20allocate_ports gives Asterisk its own UDP port, then the
        stand-ins of 25rewrite_sip_portforward and 99firewall_protection run in
        NethVoice's context, the agent copies the environment to Redis at the end of
        the task, and freepbx restarts on the new ports. Returns the rewrite's log."""
        env = nethvoice_layout(self.environments[NETHVOICE_ID], "1.8")
        write_env(Path(self.nethvoice["state_dir"]) / "environment", env)
        rewrite = self.runagent("-m", NETHVOICE_ID,
                                Path(self.nethvoice["install_dir"]) / "update-module.d/25rewrite_sip_portforward")
        self.runagent("-m", NETHVOICE_ID, "nethvoice-firewall-protection", "add")
        self._nethvoice_env(env)
        self._restart_asterisk()
        return rewrite.stderr

    # -- helpers for tests and the CLI ------------------------------------------------

    def remote(self, *argv, check=True, **kwargs):
        """Run a command in the remote namespace (where the Mediant lives)."""
        return self._in("remote", argv, check, kwargs)

    def node(self, *argv, check=True, **kwargs):
        """Run a command in the node namespace (firewalld, the SIP responders)."""
        return self._in("node", argv, check, kwargs)

    def _in(self, which, argv, check, kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.netns[which], *map(str, argv)],
                              check=check, **kwargs)

    def in_netns(self, which, fn, *args, **kwargs):
        """Call fn(*args) with its sockets in the 'remote' or 'node' namespace."""
        return run_in_netns(self.netns[which], fn, *args, **kwargs)

    def runagent(self, *argv, check=True, **kwargs):
        """dev/bin/runagent against this sandbox, e.g. runagent('-m', 'nethvoice1', 'env')."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        env = dict(kwargs.pop("env", os.environ), NS8_SANDBOX_ROOT=str(self.root))
        return subprocess.run([str(DEV / "bin/runagent"), *map(str, argv)], env=env,
                              check=check, **kwargs)

    def agent_env(self):
        """The environment of an action step of the module, as the agent builds it
        (without the per-task AGENT_TASK_* and AGENT_COMFD)."""
        env = {}
        for path in (self.env_file, self.state_dir / "agent.env",
                     self.state_dir / "environment"):
            env.update(read_env(path))
        env.update(AGENT_ID=AGENT_ID, AGENT_INSTALL_DIR=str(self.install_dir),
                   AGENT_STATE_DIR=str(self.state_dir))
        return env

    def redis_client(self, who="cluster"):
        """A redis.Redis for 'cluster', 'module' (nethvoice-bypass1) or 'default'."""
        import redis

        creds = self.redis[who]
        host, port = creds["address"].split(":")
        return redis.Redis(host=host, port=int(port), username=creds["user"],
                           password=creds["password"], decode_responses=True)

    def sql(self, query, database="asterisk"):
        """Rows of a query on the sandbox MariaDB, as lists of strings."""
        res = run("mysql", "--no-defaults", f"--socket={self.mariadb['socket']}", "-uroot",
                  f"-p{self.mariadb['password']}", "--batch", "--skip-column-names",
                  database, "-e", query)
        return [line.split("\t") for line in res.stdout.splitlines()]


# ---------------------------------------------------------------------------------
# Teardown, shared by Sandbox.down() and `dev/sandbox stop` in another process


def stop_from_outside(state, timeout=60):
    """`dev/sandbox stop`: let a foreground owner clean up, then remove what is left."""
    ctl = state.get("controller")
    if ctl and start_time(ctl["pid"]) == ctl["start_time"] and ctl["pid"] != os.getpid():
        os.kill(ctl["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while start_time(ctl["pid"]) == ctl["start_time"] and time.monotonic() < deadline:
            time.sleep(0.1)
    teardown(state)


def teardown(state, popens=None):
    """Stop the recorded processes (newest first), delete namespaces, remove files."""
    popens = popens or {}
    for name in reversed(list(state.get("pids", {}))):
        pid = state["pids"][name]
        if name in popens:
            procs.stop(popens[name])
        elif start_time(pid) is not None and start_time(pid) == \
                state.get("pid_start_times", {}).get(name):
            procs.stop(pid)
        else:
            continue  # gone already, or the PID now belongs to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # children it left behind (e.g. running steps)
    for pid_file in Path(state.get("root", "/nonexistent"), "run/systemd").glob("*.pid"):
        pid, started = pid_file.read_text().split()  # what dev/bin/systemctl started
        if start_time(int(pid)) == int(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)
    existing = netns_list()
    for name in reversed(list(state.get("netns", {}).values())):
        if name in existing:
            run("ip", "netns", "delete", name, check=False)
    root = Path(state.get("root", ""))
    if root.is_dir() and (root / "sandbox.json").exists() and root not in (Path("/"), REPO):
        shutil.rmtree(root, ignore_errors=True)


def load_state(root):
    path = Path(root) / "sandbox.json"
    return json.loads(path.read_text()) if path.exists() else None


def running_pids(state):
    return {name: pid for name, pid in state.get("pids", {}).items()
            if start_time(pid) is not None
            and start_time(pid) == state.get("pid_start_times", {}).get(name)}
