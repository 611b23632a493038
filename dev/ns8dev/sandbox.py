# SPDX-License-Identifier: GPL-3.0-or-later
"""The sandbox node: a small, honest NS8 node for tests and `make sandbox`.

What runs (everything as root, nothing on the host's network or firewall), one
module per service:

- network (ns8dev.network): namespace `node` with eth0 192.0.2.1/24 + 2001:db8::1/64
  and a dummy wg0 with the VPN address 10.5.4.1; namespace `remote`, joined by a veth
  pair: 192.0.2.10 ("the Mediant") and 192.0.2.11 ("another device"), 2001:db8::10
  and ::11;
- firewalld (ns8dev.firewalld) in the node namespace (default zone `public`) on a
  private D-Bus bus, with NethVoice's and the proxy's services and rules;
- redis (ns8dev.redis_server): on 127.0.0.1 of the root namespace, a leader and the
  node's replica, seeded like a cluster with NS8's ACLs, roles and grants;
- mariadb (ns8dev.mariadb): NethVoice's FreePBX tables;
- the proxy (ns8dev.proxy): Debian's Kamailio in the node namespace, configured to
  make the NethVoice proxy's routing decisions, its tables written by the proxy
  stand-in's route actions; a relay (ns8dev.loopback_relay) joins the root
  namespace's 127.0.0.1:5060 (SIP, JSON-RPC) and 127.0.0.1:5065 (HEP) to the node's;
- asterisk (ns8dev.asterisk): SIP responders on the NethVoice instance's SIP ports;
- the cluster side (ns8dev.cluster): the nethvoice-proxy stand-in's agent
  (dev/proxy-standin: the proxy's route actions) and the api-server stand-in
  (ns8dev.apiserver: login, tasks, the cluster-admin page and the module's UI, with
  the UI user admin);
- metrics (ns8dev.metrics): Prometheus and Alertmanager in the node namespace;
- modules (ns8dev.modules): files under the root dir laid out like a node:
  etc/nethserver/agent.env, var/lib/nethserver/nethvoice-bypass1 (the module,
  rootfull, linked to the repo's imageroot), home/nethvoice1/.config (a NethVoice
  stand-in with bin/mysql, bin/fwconsole), home/nethvoice-proxy1/.config (the proxy
  stand-in, with NethVoice's own route), usr/local/bin/conntrack (the real tool, run
  in the node namespace: actions run in the root namespace, but the node's
  connection table is the node namespace's); then the module's agent.

`<root>/sandbox.json` records names, credentials and PIDs, so `dev/sandbox stop` from
another process can stop everything by PID and delete the namespaces and files.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import asterisk, cluster, mariadb, modules, nethvoice, network, procs, proxy, redis_server
from .firewalld import start_on_node
from .metrics import start as start_metrics
from .network import ping  # noqa: F401  (tests use sandbox.ping)
from .node import (  # noqa: F401  (the sandbox's names, used by tests and dev/sandbox)
    ADDRESSES,
    ADMIN_PASSWORD,
    ADMIN_USER,
    AGENT_ID,
    API_ENDPOINT_ENV,
    ASTERISK_SERVER,
    DEFAULT_PROFILE,
    DEV,
    METRICS_ID,
    MODULE_ID,
    NETHVOICE_ID,
    PORTS,
    PROFILES,
    PROXY_ID,
    PROXY_SERVER,
    REPO,
    log,
    netns_list,
    read_env,
    run,
    run_in_netns,
    start_time,
    tail,
    write_env,
)
from .seeds import (  # noqa: F401
    DEFAULT_USER_ACL,
    module_acl,
    module_environment,
    nethvoice_environment,
    nethvoice_protection_rules,
    proxy_environment,
    proxy_rich_rules,
)

_counter = iter(range(1, 1_000_000))


class Sandbox:
    """A sandbox node under `root`. `up()` starts it, `down()` removes every trace.

    Useful attributes once up: addresses, ports, bus_address, netns (node/remote
    names), redis (cluster/module/default credentials and address), mariadb,
    install_dir, state_dir, env_file, nethvoice (its dirs), proxy (the proxy
    stand-in's install_dir and state_dir), api_url (the api-server stand-in, also
    NETHVOICE_BYPASS_API_ENDPOINT in the node's agent.env; the cluster-admin page at
    api_url + "/"), admin ({"username", "password"} of the UI user), firewalld (the
    Firewalld harness: firewall_cmd, nft). Commands: remote(), node(), in_netns(),
    runagent(), sql(), redis_client(), agent_env(), proxy_rpc(), proxy_routes().
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
        self._waits = []  # services started but not yet waited for
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
        self.procs = {}  # name -> Popen, for processes this object started
        self._spawned = {}  # name -> (argv, kwargs): how to start it again

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def up(self):
        started = time.monotonic()
        self._prepare_root()
        steps = self.state["startup_steps"] = {}
        try:
            for step in (self._network, self._firewalld, self._redis,
                         self._cluster,  # starts the proxy agent and the api-server, waited for last
                         self._mariadb, self._sip_responders, self._install_modules, self._services):
                began = time.monotonic()
                step()
                steps[step.__name__.lstrip("_")] = round(time.monotonic() - began, 2)
        except BaseException:
            log("start-up failed, cleaning up")
            self.down()
            raise
        self.state["startup_seconds"] = round(time.monotonic() - started, 2)
        self.save()
        return self

    def down(self):
        if self.state:
            teardown(self.state, self.procs)
        self.procs.clear()
        self.state = {}

    # -- steps: one service module each ----------------------------------------------

    def _prepare_root(self):
        if self.root in (Path("/"), REPO) or (self.root.exists() and any(self.root.iterdir())):
            raise RuntimeError(f"{self.root} must be a new or empty directory "
                               "(a running sandbox? try `dev/sandbox stop`)")
        for d in (self.run_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.state = {
            "root": str(self.root), "repo": str(REPO), "profile": self.profile,
            "module_id": MODULE_ID, "agent_id": AGENT_ID,
            "install_dir": str(self.install_dir), "state_dir": str(self.state_dir),
            "env_files": [str(self.env_file)], "base_actions": str(DEV / "base-actions"),
            "netns": {}, "addresses": self.addresses, "ports": self.ports,
            "nethvoice": self.nethvoice, "proxy": self.proxy, "admin": self.admin,
            "logs": str(self.log_dir), "pids": {}, "pid_start_times": {},
        }
        if self.foreground:
            self.state["controller"] = {"pid": os.getpid(), "start_time": start_time(os.getpid())}
        self.save()

    def _network(self):
        network.create(self)

    def _firewalld(self):
        rules = proxy_rich_rules() + nethvoice_protection_rules(self.environments[NETHVOICE_ID])
        self.firewalld, _ = start_on_node(self, self.environments[NETHVOICE_ID], rules)
        self.bus_address = self.state["bus_address"] = self.firewalld.bus_address
        self.save()
        network.check_pings(self)

    def _redis(self):
        redis_server.start(self).wait()

    def _cluster(self):
        """The node's agent.env, roles, the proxy stand-in's files; then its agent, the
        api-server and the metrics module, started here (they need only Redis) so that
        their start-up overlaps MariaDB's; _services() waits for them."""
        cluster.write_node_env(self)
        cluster.seed_roles(self)
        cluster.install_proxy_standin(self)
        self._waits = [cluster.start_proxy_agent(self), cluster.start_apiserver(self), start_metrics(self)]

    def _mariadb(self):
        mariadb.start(self).wait()
        nv = self.environments[NETHVOICE_ID]
        nv["NETHVOICE_MARIADB_PORT"] = str(self.mariadb["port"])  # NethVoice's MariaDB is this one
        mariadb.seed(self.mariadb, nv)

    def _sip_responders(self):
        """The proxy (Kamailio) and Asterisk's SIP side, started together."""
        for service in (proxy.start(self), asterisk.start(self, self.environments[NETHVOICE_ID])):
            service.wait()

    def _install_modules(self):
        modules.install(self)
        cluster.seed_redis(self)

    def _services(self):
        """Start the module's agent, then wait for it and for what _cluster() started
        (the proxy stand-in's agent, the api-server, the metrics module), then create
        the module as add-module does."""
        agent = modules.start_agent(self) if self.start_agent else None
        for service in [agent, *self._waits]:
            if service:
                service.wait()
        if agent:
            modules.create_module(self)

    # -- processes -------------------------------------------------------------------

    def save(self):
        tmp = self.root / "sandbox.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.chmod(0o600)  # it holds the sandbox's passwords
        tmp.replace(self.root / "sandbox.json")

    def track(self, name, popen):
        """Record a started process at once, so a failure later still stops it."""
        self.procs[name] = popen
        self.state["pids"][name] = popen.pid
        self.state["pid_start_times"][name] = start_time(popen.pid)
        self.save()

    def spawn(self, name, argv, **kwargs):
        """Start a process of the node, its output in log/<name>.log, and track it."""
        popen = procs.start([str(a) for a in argv], self.log_dir / f"{name}.log", **kwargs)
        self.track(name, popen)
        self._spawned[name] = (argv, kwargs)
        return popen

    @contextlib.contextmanager
    def stopped(self, name):
        """A service of the node down for a while (e.g. "redis-replica", "mariadb"):
        stopped, then started again as before and waited for."""
        procs.stop(self.procs[name])
        try:
            yield
        finally:
            argv, kwargs = self._spawned[name]
            self.spawn(name, argv, **kwargs)
            ready = {"redis-replica": lambda: redis_server.replica_linked(self.redis),
                     "mariadb": lambda: mariadb.answers(self.mariadb),
                     "kamailio": self._proxy_answers,
                     "sip-asterisk": lambda: "ready" in tail(self.log_dir / "sip-asterisk.log", 5)}.get(name)
            if ready:
                procs.wait_for(ready, 30, f"{name} to be back")

    def _proxy_answers(self):
        try:
            return bool(self.proxy_rpc("core.version"))
        except Exception:  # noqa: BLE001 - not up yet, whatever the way it says so
            return False

    @contextlib.contextmanager
    def frozen(self, name):
        """A service that hangs for a while (SIGSTOP, then SIGCONT): its clients time out."""
        os.kill(self.procs[name].pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.procs[name].pid, signal.SIGCONT)

    def sync_replica(self):
        """Wait until the replica has every write made so far on the leader (what a test
        wrote there must be what the next action reads). Not while it is stopped."""
        if self.procs["redis-replica"].poll() is not None:
            return
        r = self.redis_client("cluster")
        try:
            if r.execute_command("WAIT", 1, 2000) < 1:
                raise RuntimeError("the Redis replica did not catch up in 2 s")
        finally:
            r.close()

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

    # -- NethVoice versions ----------------------------------------------------------

    def set_nethvoice_layout(self, version):
        """NethVoice in the layout of `version` (ns8dev.nethvoice.set_layout)."""
        nethvoice.set_layout(self, version)

    def update_nethvoice(self):
        """NethVoice's update from 1.7 to 1.8 (ns8dev.nethvoice.update); the rewrite's log."""
        return nethvoice.update(self)

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

    def proxy_rpc(self, method, *params):
        """A JSON-RPC call to this sandbox's Kamailio from the node's 127.0.0.1 (the
        root namespace's 127.0.0.1:5060 may be another sandbox's): the decoded answer."""
        return proxy.rpc(self.netns["node"], method, *params, port=self.ports["proxy_sip"])

    def proxy_routes(self):
        """The proxy stand-in's routes as its tables hold them (what list-routes prints)."""
        return cluster.proxy_standin().proxy_routes.list_routes(self.proxy["state_dir"])

    def set_proxy_route(self, domain, address):
        """Write a route in the proxy's tables behind everyone's back (no reload)."""
        cluster.proxy_standin().proxy_routes.add_route(domain, address, self.proxy["state_dir"])

    def sql(self, query, database="asterisk"):
        """Rows of a query on the sandbox MariaDB, as lists of strings."""
        return mariadb.sql(self.mariadb, query, database)


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
