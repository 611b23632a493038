"""Helpers for tests on the sandbox node: the module's actions run as its agent runs
them, firewalld's rules, SIP from the remote namespace, events published on Redis.
(A module of its own: `conftest` is a name every test directory has.)"""

import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from ns8dev import agent

REPO = Path(__file__).resolve().parents[2]
PYPKG = REPO / "imageroot" / "pypkg"
AGENT_ID = "module/nethvoice-bypass1"


class Running:
    """An action running in the background on the runner, as a task the agent is
    running: its step can be signalled the way the agent's cancel-task does."""

    def __init__(self, runner, action, data):
        self.runner, self.task_id, self.outcome = runner, str(uuid.uuid4()), {}
        self.thread = threading.Thread(target=self._run, args=(action, data))
        self.thread.start()

    def _run(self, action, data):
        self.outcome["result"] = self.runner.run(action, data, user="test", task_id=self.task_id)

    def step_pid(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.runner._running_lock:
                child = self.runner._running.get(self.task_id)
            if child is not None:
                return child.pid
            assert self.thread.is_alive(), self.outcome
            time.sleep(0.005)
        raise AssertionError("the step did not start")

    def wait_stopped(self, timeout=20):
        """Until the step stopped itself at its checkpoint (NETHVOICE_BYPASS_STOP_AT)."""
        pid = self.step_pid()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return pid
            time.sleep(0.005)
        raise AssertionError("the step did not reach its checkpoint")

    def signal(self, sig):
        """To the step's process group, as cancel-task does; a stopped step resumes."""
        self.runner.cancel(sig, task_id=self.task_id)
        if sig != signal.SIGKILL:
            self.runner.cancel(signal.SIGCONT, task_id=self.task_id)

    def result(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the action did not finish"
        return self.outcome["result"]


class Actions:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        env = agent.build_agent_env(AGENT_ID, str(sandbox.install_dir), [str(sandbox.env_file)])
        self.agent = agent.Agent(AGENT_ID, str(sandbox.install_dir), str(REPO / "dev" / "base-actions"), env=env)

    def start(self, action, data=None, **env):
        """Run an action in the background (see Running), env added to the agent's."""
        self.sandbox.sync_replica()
        runner = agent.Agent(AGENT_ID, str(self.sandbox.install_dir), str(REPO / "dev" / "base-actions"),
                             env={**self.agent.env, **env}, log=open(os.devnull, "w"))  # noqa: SIM115
        return Running(runner, action, data)

    def run(self, action, data=None, expect=0):
        self.sandbox.sync_replica()  # what the test wrote on the leader is what the action reads
        result = self.agent.run(action, data, user="test")
        assert result.exit_code == expect, f"{action} exited {result.exit_code}: {result.error}\n{result.output}"
        return result.decoded_output

    def state_files(self):
        """Intent and audit as bytes: proves that refused input changed nothing."""
        return {name: (self.sandbox.state_dir / name).read_bytes() if (self.sandbox.state_dir / name).exists()
                else None for name in ("bypass.json", "audit.jsonl")}


def rich_rules(sandbox, permanent=False):
    args = ["--list-rich-rules"] + (["--permanent"] if permanent else [])
    lines = sandbox.firewalld.firewall_cmd(*args).stdout.splitlines()
    return {line for line in lines if line.startswith("rule ")}  # firewall-cmd also prints notes


def firewall_state(sandbox):
    return {"runtime": rich_rules(sandbox), "permanent": rich_rules(sandbox, permanent=True)}


def probe_from_remote(sandbox, target, port=5060, protocol="udp", source_ip=None, source_port=0):
    """A SIP OPTIONS from the remote namespace (the Mediant's side of the network)."""
    argv = [sys.executable, "-m", "nethvoice_bypass.sipprobe", target, "--port", str(port),
            "--protocol", protocol, "--source-port", str(source_port)]
    if source_ip:
        argv += ["--source-ip", source_ip]
    proc = sandbox.remote(*argv, check=False, env=dict(os.environ, PYTHONPATH=str(PYPKG)))
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def publish_event(sandbox, source, name, payload, timeout=30):
    """Publish an event as its source would (`<source>/event/<name>` on the leader's
    Redis) and wait for the module's agent to finish its handler; returns the handler's
    exit code from the agent's log line."""
    log = sandbox.log_dir / "agent.log"
    start = log.stat().st_size
    sandbox.sync_replica()  # the handler reads the cluster from the replica
    rdb = sandbox.redis_client("cluster")
    try:
        rdb.publish(f"{source}/event/{name}", json.dumps(payload))  # replicated to where the agent listens
    finally:
        rdb.close()
    pattern = re.compile(rf'Handler of {re.escape(source)}/event/{re.escape(name)} exited with status "\w+" \((\d+)\)')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(start)
            found = pattern.search(f.read().decode(errors="replace"))
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError(f"no handler of {source}/event/{name} finished within {timeout} s")
