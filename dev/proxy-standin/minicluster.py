"""A throw-away cluster for tests: redis-server with NS8's ACLs and grants, the
nethvoice-proxy stand-in under the agent runner, and the api-server stand-in.

    with MiniCluster(tmp_path) as mc:
        mc.api_endpoint            # http://127.0.0.1:PORT
        mc.module_env("nethvoice-bypass1")   # REDIS_USER/REDIS_PASSWORD/... of a module
        mc.admin                   # ("admin", password)

Every process is started by PID and stopped by PID (ns8dev.procs); nothing outlives
stop(). The sandbox does the same with its own redis (see standin.py for the pieces).
"""

import secrets
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV = HERE.parent
sys.path.insert(0, str(DEV))
sys.path.insert(0, str(HERE))

import standin  # noqa: E402
from ns8dev import apiserver, procs  # noqa: E402
from ns8dev.sandbox import DEFAULT_USER_ACL, module_acl  # noqa: E402

NODE_ID = "1"
BYPASS_ID = "nethvoice-bypass1"
NETHVOICE_ID = "nethvoice1"
PROXY_ID = standin.PROXY_ID
INTRUDER_ID = "intruder1"  # a module with no authorizations at all
SERVICE_IP = "10.5.4.1"
NETHVOICE_ENV = {"MODULE_ID": NETHVOICE_ID, "NODE_ID": NODE_ID,
                 "IMAGE_URL": "ghcr.io/nethesis/nethvoice:1.8.0",
                 "NETHVOICE_HOST": "voice.example.org", "ASTERISK_SIP_PORT": "20024"}
PROXY_ENV = {"MODULE_ID": PROXY_ID, "NODE_ID": NODE_ID,
             "IMAGE_URL": "ghcr.io/nethesis/nethvoice-proxy:1.7.1", "SERVICE_IP": SERVICE_IP}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MiniCluster:
    def __init__(self, root, api_args=()):
        self.root = Path(root)
        self.api_args = [str(a) for a in api_args]  # e.g. --static DIR, --app ID=DIR
        self.passwords = {m: secrets.token_hex(12)
                          for m in ("cluster", BYPASS_ID, NETHVOICE_ID, PROXY_ID, INTRUDER_ID)}
        self.admin = ("admin", secrets.token_hex(8))
        self.redis_address = f"127.0.0.1:{free_port()}"
        self.api_port = free_port()
        self.api_endpoint = f"http://127.0.0.1:{self.api_port}"
        self.proxy_install = self.root / "home" / PROXY_ID / ".config"
        self.proxy_state = self.proxy_install / "state"
        self.logs = self.root / "log"
        self.procs = {}

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def redis(self, user="cluster"):
        import redis

        host, _, port = self.redis_address.rpartition(":")
        return redis.Redis(host=host, port=int(port), username=user,
                           password=self.passwords[user] if user == "cluster" else "nopass",
                           decode_responses=True)

    def module_env(self, module_id, **extra):
        """The environment an action step of module_id runs with (for the client)."""
        return {"AGENT_ID": f"module/{module_id}", "MODULE_ID": module_id, "NODE_ID": NODE_ID,
                "REDIS_ADDRESS": self.redis_address, "REDIS_USER": f"module/{module_id}",
                "REDIS_PASSWORD": self.passwords[module_id], **extra}

    def start(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        self._redis()
        self._seed()
        self._proxy()
        self._apiserver()

    def stop(self):
        for name in reversed(list(self.procs)):
            procs.stop(self.procs.pop(name))

    def _spawn(self, name, argv, **kwargs):
        self.procs[name] = procs.start([str(a) for a in argv], self.logs / f"{name}.log", **kwargs)
        return self.procs[name]

    def _alive(self, name):
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited:\n{(self.logs / f'{name}.log').read_text()[-2000:]}")

    def _redis(self):
        d = self.root / "redis"
        d.mkdir()
        conf = d / "redis.conf"
        conf.write_text("\n".join([
            "bind 127.0.0.1", f"port {self.redis_address.rpartition(':')[2]}", f"dir {d}",
            'save ""', "appendonly no",
            DEFAULT_USER_ACL,
            f"user cluster on >{self.passwords['cluster']} ~* &* +@all",
            *[module_acl(m, self.passwords[m])
              for m in (BYPASS_ID, NETHVOICE_ID, PROXY_ID, INTRUDER_ID)],
        ]) + "\n")
        self._spawn("redis", ["redis-server", conf])

        def ready():
            self._alive("redis")
            try:
                return self.redis().ping()
            except Exception:  # noqa: BLE001 - not up yet
                return False
        procs.wait_for(ready, 10, "redis-server")

    def _seed(self):
        r = self.redis()
        for module_id, env in ((NETHVOICE_ID, NETHVOICE_ENV), (PROXY_ID, PROXY_ENV)):
            r.hset("cluster/module_node", module_id, NODE_ID)
            r.hset(f"module/{module_id}/environment", mapping=env)
        r.set(f"node/{NODE_ID}/default_instance/nethvoice-proxy", PROXY_ID)
        apiserver.seed_cluster(r, module_ids=(BYPASS_ID, NETHVOICE_ID, PROXY_ID, INTRUDER_ID),
                               admin=self.admin)
        r.close()

    def _proxy(self):
        env_file = self.root / "etc/nethserver/agent.env"
        standin.write_env(env_file, {"REDIS_ADDRESS": self.redis_address, "NODE_ID": NODE_ID,
                                     "PATH": standin.agent_env()["PATH"]})
        standin.install(self.proxy_install, PROXY_ENV, self.passwords[PROXY_ID])
        standin.seed_route(self.proxy_state, **standin.nethvoice_route(NETHVOICE_ENV, PROXY_ENV))
        self._spawn("proxy-agent", standin.agent_argv(self.proxy_install, env_file),
                    env=standin.agent_env(), cwd=self.proxy_state)
        r = self.redis()

        def polling():
            self._alive("proxy-agent")
            return any(c.get("name") == f"module/{PROXY_ID}" and c.get("cmd") == "brpop"
                       for c in r.client_list())
        try:
            procs.wait_for(polling, 15, "the proxy stand-in agent")
        finally:
            r.close()

    def _apiserver(self):
        self._spawn("api-server", [
            sys.executable, "-m", "ns8dev.apiserver", "--listen", f"127.0.0.1:{self.api_port}",
            "--redis-address", self.redis_address, "--redis-user", "cluster",
            "--redis-password", self.passwords["cluster"], *self.api_args],
            env={**standin.agent_env(), "PYTHONPATH": str(DEV)})

        def listening():
            self._alive("api-server")
            return "listening" in (self.logs / "api-server.log").read_text()
        procs.wait_for(listening, 15, "the api-server")
