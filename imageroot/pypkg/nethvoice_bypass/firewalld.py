"""firewalld over D-Bus: rich rules in runtime and permanent configuration.

The D-Bus calls themselves are in fwbus.py. They run in this process when the
agent's venv can import dbus-python (Debian), else in a helper run by the platform
Python that firewalld itself uses, which always has it (EL9). Both ways raise the
same errors here.
"""

import functools
import json
import os
import subprocess
import threading

from . import fwbus
from .errors import Failure, FirewalldError

# Where dbus-python always is on a node: firewalld depends on it on every distro.
PLATFORM_PYTHON_ENV = "NETHVOICE_BYPASS_PLATFORM_PYTHON"
PLATFORM_PYTHON = "/usr/bin/python3"

# firewalld error codes caused by the rule's content rather than by the system
INPUT_ERRORS = {"INVALID_ADDR", "INVALID_PORT", "INVALID_PROTOCOL", "INVALID_RULE",
                "INVALID_FAMILY", "MISSING_FAMILY", "INVALID_PRIORITY"}


class _Helper:
    """fwbus.py served by the platform Python: one JSON line per call. It ends when
this process does (its stdin closes)."""

    def __init__(self):
        python = os.environ.get(PLATFORM_PYTHON_ENV) or PLATFORM_PYTHON
        try:
            self.proc = subprocess.Popen([python, "-I", fwbus.__file__], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        except OSError as err:
            raise fwbus.BusError("no_dbus", f"dbus-python is not importable by {python} ({err.strerror})") from err
        self.lock = threading.Lock()
        first = self._read()
        if "error" in first:
            self.close()
            raise fwbus.BusError(**first["error"])

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise fwbus.BusError("unreachable", f"the D-Bus helper ({self.proc.args[0]}) exited with code "
                                                f"{self.proc.returncode}")
        return json.loads(line)

    def call(self, name, *args):
        with self.lock:
            try:
                self.proc.stdin.write(json.dumps({"call": name, "args": list(args)}) + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass  # _read says how it ended
            reply = self._read()
        if "error" in reply:
            raise fwbus.BusError(**reply["error"])
        return reply["result"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


class _InProcess:
    def __init__(self):
        self.bus = fwbus.FirewalldBus()

    def call(self, name, *args):
        return getattr(self.bus, name)(*args)


def _failure(err, operation, name):
    if err.kind == "firewalld":
        return FirewalldError(err.code, err.detail, operation)
    if err.kind == "unreachable":
        return Failure(err.message)
    if err.kind == "no_dbus":
        return Failure(f"cannot talk to firewalld: {err.message}, nor by the agent's Python; install "
                       "python3-dbus (firewalld's own dependency)")
    return Failure(f"firewalld D-Bus call {name} failed: {err.message}")


@functools.cache
def _backend():
    """One connection (or helper) per process; a failed connect is not cached."""
    return _InProcess() if fwbus.dbus is not None else _Helper()


class Firewalld:
    def __init__(self):
        try:
            self.backend = _backend()
        except fwbus.BusError as err:
            raise _failure(err, "connect", "connect") from err

    def _do(self, operation, name, *args):
        try:
            return self.backend.call(name, *args)
        except fwbus.BusError as err:
            raise _failure(err, operation, name) from err

    def config_properties(self):
        return self._do("read its configuration", "config_properties")

    def default_zone(self):
        return self._do("read the default zone", "default_zone")

    def rich_rules(self, zone, config):
        """The zone's rich rules in one configuration, as a set of canonical strings."""
        return set(self._do(f"list {config} rich rules", "rich_rules", zone, config))

    def add_rich_rule(self, zone, rule, config):
        self._do(f"add the {config} rule '{rule}'", "change_rule", zone, rule, config, True)

    def remove_rich_rule(self, zone, rule, config):
        self._do(f"remove the {config} rule '{rule}'", "change_rule", zone, rule, config, False)

    def change_permanent_rules(self, zone, add=(), remove=()):
        add, remove = sorted(set(add)), sorted(set(remove))
        self._do(f"write {len(add)} added and {len(remove)} removed permanent rules", "change_permanent_rules",
                 zone, add, remove)
