# SPDX-License-Identifier: GPL-3.0-or-later
"""firewalld over D-Bus: rich rules in runtime and permanent configuration.

The D-Bus calls themselves are in fwbus.py. They run in this process when the
agent's venv can import dbus-python (Debian), else in a helper run by the platform
Python that firewalld itself uses, which always has it (EL9). Both ways raise the
same errors here.
"""

import functools
import json
import os
import select
import subprocess
import threading
import time

from . import fwbus
from .errors import Failure, FirewalldError

# Where dbus-python always is on a node: firewalld depends on it on every distro.
PLATFORM_PYTHON_ENV = "NETHVOICE_BYPASS_PLATFORM_PYTHON"
PLATFORM_PYTHON = "/usr/bin/python3"

# Seconds the helper has to answer one request: twice the D-Bus timeout of a call
# (fwbus.CALL_TIMEOUT), so a firewalld that does not answer one call is reported by fwbus
# in its own words, and only a hung helper or bus connection waits this long. A request
# naming rules changes them one at a time: each adds HELPER_TIMEOUT_PER_RULE (a zone
# lookup and a write of the zone file took about 11 ms on the sandbox's firewalld 1.3.3).
HELPER_TIMEOUT = 2 * fwbus.CALL_TIMEOUT
HELPER_TIMEOUT_PER_RULE = 0.5

# firewalld error codes caused by the rule's content rather than by the system
INPUT_ERRORS = {"INVALID_ADDR", "INVALID_PORT", "INVALID_PROTOCOL", "INVALID_RULE",
                "INVALID_FAMILY", "MISSING_FAMILY", "INVALID_PRIORITY"}


class _Helper:
    """fwbus.py served by the platform Python: one JSON line per call. It ends when
this process does (its stdin closes). Every exchange has a deadline: a helper that
does not answer in time is killed, and this call and the next ones fail at once."""

    def __init__(self):
        python = os.environ.get(PLATFORM_PYTHON_ENV) or PLATFORM_PYTHON
        try:
            self.proc = subprocess.Popen([python, "-I", fwbus.__file__], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        except OSError as err:
            raise fwbus.BusError("no_dbus", f"dbus-python is not importable by {python} ({err.strerror})") from err
        os.set_blocking(self.proc.stdin.fileno(), False)
        self.lock, self.buffer, self.hung = threading.Lock(), b"", None
        first = self._exchange(b"", HELPER_TIMEOUT)
        if "error" in first:
            self.close()
            raise fwbus.BusError(**first["error"])

    def _exchange(self, request, timeout):
        """Write the request (if any), then read one reply line, by a deadline. An
        exchange left in the middle (a hang, an interrupt) ends the helper: its late
        reply must never be taken for the answer to the next request."""
        if self.hung:
            raise fwbus.BusError("unreachable", self.hung)
        try:
            return self._exchange_by(request, time.monotonic() + timeout, timeout)
        except BaseException:
            self.hung = self.hung or "the D-Bus helper was interrupted in the middle of a call"
            self.close(kill=True)
            raise

    def _exchange_by(self, request, deadline, timeout):
        out, into = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        while request or b"\n" not in self.buffer:
            readable, writable, _ = select.select([into], [out] if request else [], [],
                                                  max(deadline - time.monotonic(), 0))
            if not readable and not writable:
                self.hung = f"firewalld did not answer within {timeout:g} s"
                raise fwbus.BusError("unreachable", self.hung)
            if writable:
                try:
                    request = request[os.write(out, request):]
                except BrokenPipeError:
                    request = b""  # the reading says how it ended
            if readable:
                chunk = os.read(into, 65536)
                if not chunk:
                    self.proc.wait()
                    self.hung = f"the D-Bus helper ({self.proc.args[0]}) exited with code {self.proc.returncode}"
                    raise fwbus.BusError("unreachable", self.hung)
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            raise fwbus.BusError("dbus", f"the D-Bus helper answered {line[:80]!r}, not JSON") from None

    def call(self, name, *args):
        rules = sum(len(arg) for arg in args if isinstance(arg, list))
        with self.lock:
            reply = self._exchange((json.dumps({"call": name, "args": list(args)}) + "\n").encode(),
                                   HELPER_TIMEOUT + rules * HELPER_TIMEOUT_PER_RULE)
        if "error" in reply:
            raise fwbus.BusError(**reply["error"])
        return reply["result"]

    def close(self, kill=False):
        """Let the helper end (its stdin closed); killed when told, or when it does not end."""
        if self.proc.poll() is None:
            if not kill:
                self.proc.stdin.close()
                try:
                    self.proc.wait(1)
                except subprocess.TimeoutExpired:
                    pass
            self.proc.kill()
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

    def open_ports(self, zone):
        """The ports the zone opens (its own and its services'), runtime and permanent
        configuration together: [{"port": "443" | "10000-20000", "protocol", "owner":
        "port" | "service <name>"}], without duplicates."""
        return self._do(f"read the open ports of zone {zone}", "open_ports", zone)

    def change_permanent_rules(self, zone, add=(), remove=()):
        add, remove = sorted(set(add)), sorted(set(remove))
        self._do(f"write {len(add)} added and {len(remove)} removed permanent rules", "change_permanent_rules",
                 zone, add, remove)
