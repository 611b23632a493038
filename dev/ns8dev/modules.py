# SPDX-License-Identifier: GPL-3.0-or-later
"""The node's modules on disk and the module's own agent: the core's cluster and node
agents, nethvoice-bypass1 (rootfull, linked to the repo's imageroot), the NethVoice
stand-in (rootless, with bin/mysql and bin/fwconsole), then the module's agent and
add-module's last step, create-module."""

import json
import secrets
import shutil
import sys
import uuid
from pathlib import Path

from . import procs
from .cluster import wait_polling
from .node import (
    AGENT_ID,
    DEV,
    MODULE_ID,
    NETHVOICE_ID,
    NODE_ID,
    PROXY_ID,
    REPO,
    Started,
    log,
    read_env,
    runner_env,
    write_env,
)

IMAGES = {MODULE_ID: "nethvoice-bypass", NETHVOICE_ID: "nethvoice", PROXY_ID: "nethvoice-proxy"}


def install(sb):
    node_path = read_env(sb.env_file)["PATH"]
    pw, envs = sb.redis["passwords"], sb.environments
    # The core's own agents: runagent defaults to "cluster" as root.
    for agent, user in (("cluster", "cluster"), ("node", f"node/{NODE_ID}")):
        d = sb.root / "var/lib/nethserver" / agent / "state"
        write_env(d / "agent.env", {"REDIS_USER": user, "REDIS_PASSWORD": pw[agent], "PATH": node_path}, 0o600)
        write_env(d / "environment", {"NODE_ID": NODE_ID})
    # The module, rootfull: /var/lib/nethserver/<id>, code linked to the repo.
    sb.state_dir.mkdir(parents=True)
    for entry in sorted((REPO / "imageroot").iterdir()):
        (sb.install_dir / entry.name).symlink_to(entry)
    write_env(sb.state_dir / "environment", envs[MODULE_ID])
    write_env(sb.state_dir / "agent.env", {
        "REDIS_USER": AGENT_ID, "REDIS_PASSWORD": pw[MODULE_ID],
        "PYTHONPATH": sb.install_dir / "pypkg", "PATH": f"{sb.install_dir / 'bin'}:{node_path}",
    }, 0o600)
    install_nethvoice(sb, node_path)


def install_nethvoice(sb, node_path):
    """The NethVoice stand-in, rootless: ~nethvoice1/.config"""
    nv_dir = Path(sb.nethvoice["install_dir"])
    for part in ("bin", "pypkg", "update-module.d"):
        shutil.copytree(DEV / "nethvoice-standin" / part, nv_dir / part)
    nv_state = nv_dir / "state"
    write_env(nv_state / "environment", sb.environments[NETHVOICE_ID])
    write_env(nv_state / "passwords.env", {"MARIADB_ROOT_PASSWORD": sb.mariadb["password"],
                                           "AMPDBPASS": secrets.token_hex(8)}, 0o600)
    write_env(nv_state / "agent.env", {
        "REDIS_USER": f"module/{NETHVOICE_ID}", "REDIS_PASSWORD": sb.redis["passwords"][NETHVOICE_ID],
        "PYTHONPATH": nv_dir / "pypkg", "PATH": f"{nv_dir / 'bin'}:{node_path}",
    }, 0o600)


def start_agent(sb):
    """The module's agent (dev/ns8dev/agent.py) on its task queue; None without it."""
    if not (DEV / "ns8dev/agent.py").exists():
        log("dev/ns8dev/agent.py is missing: the agent is not started")
        return None
    popen = sb.spawn("agent", [
        sys.executable, "-m", "ns8dev.agent", "serve", "--agent-id", AGENT_ID,
        "--install-dir", sb.install_dir, "--base-actions", DEV / "base-actions",
        "--env-file", sb.env_file,
    ], env=runner_env(sb.env_file), cwd=sb.state_dir)

    def wait():
        try:
            wait_polling(sb, "agent", AGENT_ID)
        except TimeoutError:
            log(f"the agent runs but does not wait on its task queue yet; see {sb.log_dir / 'agent.log'}")
    return Started({"agent": popen}, wait)


def create_module(sb):
    """add-module's last step: create-module, run by the module's agent."""
    r = sb.redis_client("cluster")
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
