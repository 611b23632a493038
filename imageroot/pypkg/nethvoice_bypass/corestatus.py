# SPDX-License-Identifier: GPL-3.0-or-later
"""The core's own get-status step (services, images, volumes), which ours overrides
by name: run it as a subprocess beside our reads, bounded in time. It runs in a session
of its own, so that on a timeout the programs it started (which hold its output pipe)
end with it."""

import json
import os
import signal
import subprocess

from .step import log

CORE_STEP = os.path.join("get-status", "20read")
CORE_TIMEOUT = 8


def start():
    """The core's get-status step, when this runs on a node."""
    base = os.environ.get("AGENT_BASEACTIONS_DIR") or "/usr/local/agent/actions"
    path = os.path.join(base, CORE_STEP)
    if not os.access(path, os.X_OK):
        return None
    data, feed = os.pipe()  # its task data goes in now: it runs while we gather ours
    os.write(feed, b"null")
    os.close(feed)
    try:
        return subprocess.Popen([path], stdin=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    finally:
        os.close(data)


def finish(proc):
    if proc is not None:
        try:
            out, err = proc.communicate(timeout=CORE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its children too: they would keep the pipes open
            try:
                out, err = proc.communicate(timeout=1)
            except subprocess.TimeoutExpired:  # a child that left the session: stop reading
                proc.kill()
                out = ""
            err = f"no answer within {CORE_TIMEOUT} s"
        if proc.returncode == 0:
            try:
                return json.loads(out)
            except json.JSONDecodeError:
                pass
        log(f"core get-status failed ({proc.returncode}): {err.strip()[-200:]}")
    # the equivalent where the core's step is not installed
    return {"instance": os.environ.get("MODULE_ID", ""), "ui_name": "", "node": os.environ.get("NODE_ID", ""),
            "node_ui_name": "", "services": [], "images": [], "volumes": []}
