"""Start and stop helper processes by PID, never by name."""

import os
import signal
import subprocess
import time


def start(argv, log_path=None, env=None, **kwargs):
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, **kwargs,
        )
    finally:
        if log_path:
            log.close()


def stop(proc_or_pid, timeout=10.0):
    """SIGTERM, wait, then SIGKILL. Accepts a Popen or a bare PID (from a pid file)."""
    if proc_or_pid is None:
        return
    if isinstance(proc_or_pid, subprocess.Popen):
        if proc_or_pid.poll() is not None:
            return
        proc_or_pid.terminate()
        try:
            proc_or_pid.wait(timeout)
        except subprocess.TimeoutExpired:
            proc_or_pid.kill()
            proc_or_pid.wait()
        return
    pid = int(proc_or_pid)
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone once reaped
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def wait_for(predicate, timeout=20.0, what="condition", interval=0.05):
    """Poll until predicate() is true; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
