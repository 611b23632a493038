# SPDX-License-Identifier: GPL-3.0-or-later
"""The proxy's trace switch, given back even when the diagnosis is killed or cancelled.

The proxy's siptrace (its HEP mirror) is shared: a support session switches it on and
off too. A diagnosis switches it on only when it was off, and then it must be off again
at the end whatever happens to the step. Before switching it on, the step writes a
marker in the state dir (siptrace.json: which task, its pid, the proxy's RPC port, the
latest end) and starts this guard in a session of its own, so the agent's SIGTERM or
SIGKILL to the step's process group does not reach it. The guard waits until the step
is gone or the end has passed, and, if the marker is still there, switches the trace
off and removes it. A step that ends normally does the same itself first. The
self-check finishes the job if the guard was killed too.

Run as: python3 -m nethvoice_bypass.siptrace_guard <state dir>
"""

import json
import os
import subprocess
import sys
import time

MARKER = "siptrace.json"
POLL = 0.2


def marker_path(state_dir):
    return os.path.join(state_dir, MARKER)


def read_marker(state_dir):
    try:
        with open(marker_path(state_dir)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def write_marker(state_dir, port, until):
    from .store import write_atomically

    write_atomically(marker_path(state_dir), json.dumps({
        "task": os.environ.get("AGENT_TASK_ID", ""), "pid": os.getpid(), "port": port, "until": until}) + "\n")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def give_back(state_dir):
    """Switch the trace off if the marker says this module switched it on; True when it did."""
    from . import kamailio
    from .errors import Failure

    marker = read_marker(state_dir)
    if marker is None:
        return False
    try:
        kamailio.siptrace(marker["port"], "off")
    except Failure:
        return False  # the proxy is down: its trace is off with it, or the next try does it
    try:
        os.remove(marker_path(state_dir))
    except FileNotFoundError:
        pass
    return True


def start(state_dir):
    """The guard, detached from the step's process group and pipes."""
    pypkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=pypkg)
    return subprocess.Popen([sys.executable, "-m", "nethvoice_bypass.siptrace_guard", state_dir], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def watch(state_dir):
    while True:
        marker = read_marker(state_dir)
        if marker is None:
            return 0
        if not alive(int(marker.get("pid", 0))) or time.time() > float(marker.get("until", 0)):
            give_back(state_dir)
            return 0
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(watch(sys.argv[1]))
