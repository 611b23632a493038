"""The module on both kinds of node: Debian (the agent venv imports dbus-python) and EL9
(it cannot; the D-Bus calls go through the platform Python). make test runs this
directory under both sandbox profiles (NODE_PROFILE)."""

import os
import subprocess
from pathlib import Path

import pytest
from nodetools import AGENT_ID, REPO, firewall_state
from ns8dev import agent

pytestmark = pytest.mark.integration

EL9_PYTHON = REPO / ".venv-el9/bin/python3"


def step_python(sandbox, code, **extra_env):
    """Run python3 as a step of the module would find it (the node's PATH)."""
    env = dict(sandbox.agent_env(), **extra_env)
    return subprocess.run(["python3", "-c", code], env=env, capture_output=True, text=True,
                          cwd=sandbox.state_dir)


def test_the_agent_venv_imports_dbus_only_on_debian(sandbox):
    in_venv = step_python(sandbox, "import dbus")
    assert (in_venv.returncode == 0) == (sandbox.profile == "debian12"), in_venv.stderr
    platform = subprocess.run(["/usr/bin/python3", "-c", "import dbus"], capture_output=True)
    assert platform.returncode == 0  # firewalld's own Python always has it


def test_firewalld_calls_run_in_process_on_debian_and_in_the_platform_python_on_el9(sandbox):
    code = ("from nethvoice_bypass import firewalld; fw = firewalld.Firewalld(); "
            "print(type(fw.backend).__name__, fw.default_zone(), len(fw.rich_rules('public', 'permanent')))")
    out = step_python(sandbox, code)
    assert out.returncode == 0, out.stderr
    backend, zone, count = out.stdout.split()
    assert backend == ("_InProcess" if sandbox.profile == "debian12" else "_Helper")
    assert (zone, int(count)) == ("public", len(firewall_state(sandbox)["permanent"]))


def test_the_dbus_helper_ends_with_the_step(sandbox, actions):
    actions.run("list-port-forwards")
    helpers = subprocess.run(["pgrep", "-f", "nethvoice_bypass/fwbus.py"], capture_output=True, text=True)
    # another sandbox's steps (another worktree's tests) may run one right now
    assert [pid for pid in helpers.stdout.split() if of_sandbox(sandbox, pid)] == []


def of_sandbox(sandbox, pid):
    """Whether a process runs under this sandbox's root (its cwd or its command line)."""
    try:
        where = os.readlink(f"/proc/{pid}/cwd") + Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False  # gone already
    return str(sandbox.root) in where


def test_no_dbus_anywhere_is_one_clear_error_and_changes_nothing(sandbox, actions, clean_forwards):
    """A venv without dbus-python and a platform Python without it either."""
    env = agent.build_agent_env(AGENT_ID, str(sandbox.install_dir), [str(sandbox.env_file)])
    env["PATH"] = f"{EL9_PYTHON.parent}:{env['PATH']}"
    env["NETHVOICE_BYPASS_PLATFORM_PYTHON"] = str(EL9_PYTHON)
    runner = agent.Agent(AGENT_ID, str(sandbox.install_dir), str(REPO / "dev/base-actions"), env=env)
    before = actions.state_files()
    result = runner.run("add-port-forward", {"source": "192.0.2.10"})
    assert result.exit_code == 1
    lines = result.error.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.error
    assert "cannot talk to firewalld: dbus-python is not importable by" in lines[0]
    assert "install python3-dbus" in lines[0]
    assert actions.state_files() == before
    assert firewall_state(sandbox) == clean_forwards
