# SPDX-License-Identifier: GPL-3.0-or-later
"""firewalld's D-Bus API, through dbus-python: every call this module makes.

It runs where dbus-python can be imported, one of two ways:
- in the action's own process, when the agent's venv sees the distro's python3-dbus
  (Debian 12/13: the venv is built from the system Python with system site packages);
- as `/usr/bin/python3 -I fwbus.py`, a helper that answers one JSON request per line
  on stdin, when it does not (EL9: the venv is Python 3.11 and EL9 builds dbus-python
  for its system Python 3.9 only, the Python firewalld itself runs on).
So it imports nothing but dbus and the standard library, and keeps to Python 3.9.

Runtime and permanent rules change together, with no reload and no
runtime-to-permanent (which would also save other tools' runtime-only state);
ALREADY_ENABLED / NOT_ENABLED mean the change is already there: success.
Every failure is a BusError with a kind: "no_dbus" (dbus-python missing),
"unreachable" (no firewalld on the bus), "firewalld" (firewalld refused: code and
detail), "dbus" (anything else).
"""

import json
import signal
import sys

try:
    import dbus
except ImportError:  # the caller then runs this file with the platform Python
    dbus = None

BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
CONFIG_PATH = "/org/fedoraproject/FirewallD1/config"
IFACE = "org.fedoraproject.FirewallD1"
IFACE_ZONE = "org.fedoraproject.FirewallD1.zone"
IFACE_CONFIG = "org.fedoraproject.FirewallD1.config"
IFACE_CONFIG_ZONE = "org.fedoraproject.FirewallD1.config.zone"
IFACE_CONFIG_SERVICE = "org.fedoraproject.FirewallD1.config.service"
FIREWALLD_ERROR = "org.fedoraproject.FirewallD1.Exception"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
RUNTIME, PERMANENT = "runtime", "permanent"
IDEMPOTENT = ("ALREADY_ENABLED", "NOT_ENABLED")
CALL_TIMEOUT = 5.0  # seconds per D-Bus call (dbus-python's default is 25)
NOT_RUNNING = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")
NO_BUS = ("org.freedesktop.DBus.Error.FileNotFound", "org.freedesktop.DBus.Error.NoServer",
          "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Disconnected",
          "org.freedesktop.DBus.Error.TimedOut")


class BusError(Exception):
    def __init__(self, kind, message, code="", detail=""):
        super().__init__(message)
        self.kind, self.message, self.code, self.detail = kind, message, code, detail

    def to_json(self):
        return {"kind": self.kind, "message": self.message, "code": self.code, "detail": self.detail}


def _bus_error(err):
    name = err.get_dbus_name() or ""
    text = err.get_dbus_message() or str(err)
    if name in NOT_RUNNING:
        return BusError("unreachable", "firewalld is not running (no owner of org.fedoraproject.FirewallD1 on "
                                       "the system bus); start it with 'systemctl start firewalld'")
    if name in NO_BUS:
        return BusError("unreachable", "cannot reach firewalld on the system D-Bus: " + text)
    if name == FIREWALLD_ERROR:
        code, _, detail = text.partition(":")
        return BusError("firewalld", text, code.strip(), detail.strip())
    return BusError("dbus", text)


class FirewalldBus:
    """One connection per action; permanent zone objects are looked up per call
    because a firewalld reload renumbers their paths."""

    def __init__(self):
        if dbus is None:
            raise BusError("no_dbus", "dbus-python is not importable by " + sys.executable)
        try:
            # BUS_SYSTEM honours DBUS_SYSTEM_BUS_ADDRESS, the system bus otherwise
            self.bus = dbus.bus.BusConnection(dbus.bus.BUS_SYSTEM)
        except dbus.exceptions.DBusException as err:
            raise _bus_error(err) from err

    def _call(self, path, interface, method, *args):
        try:
            proxy = self.bus.get_object(BUS_NAME, path, introspect=False)
            return getattr(proxy, method)(*args, dbus_interface=interface, timeout=CALL_TIMEOUT)
        except dbus.exceptions.DBusException as err:
            raise _bus_error(err) from err

    def _zone_path(self, zone):
        return self._call(CONFIG_PATH, IFACE_CONFIG, "getZoneByName", zone)

    def default_zone(self):
        return str(self._call(PATH, IFACE, "getDefaultZone"))

    def config_properties(self):
        """firewalld.conf as firewalld sees it (e.g. StrictForwardPorts on 2.3+)."""
        props = self._call(CONFIG_PATH, PROPERTIES_IFACE, "GetAll", IFACE_CONFIG)
        return {str(k): bool(v) if isinstance(v, dbus.Boolean) else str(v) for k, v in props.items()}

    def rich_rules(self, zone, config):
        """The zone's rich rules in one configuration, canonical strings."""
        if config == RUNTIME:
            rules = self._call(PATH, IFACE_ZONE, "getRichRules", zone)
        else:
            rules = self._call(self._zone_path(zone), IFACE_CONFIG_ZONE, "getRichRules")
        return sorted(str(rule) for rule in rules)

    def change_rule(self, zone, rule, config, add):
        try:
            if config == RUNTIME and add:
                self._call(PATH, IFACE_ZONE, "addRichRule", zone, rule, 0)
            elif config == RUNTIME:
                self._call(PATH, IFACE_ZONE, "removeRichRule", zone, rule)
            else:
                self._call(self._zone_path(zone), IFACE_CONFIG_ZONE, "addRichRule" if add else "removeRichRule",
                           rule)
        except BusError as err:
            if err.code not in IDEMPOTENT:
                raise

    def change_permanent_rules(self, zone, add, remove):
        """Several permanent changes, one rule at a time (removals first), each
        idempotent like change_rule. Only the given rules are touched: a read-modify-
        write of the zone's settings (update2) would put back the rules it read and
        lose one another tool wrote in between. Each call rewrites the zone file
        (6-9 ms on firewalld 1.3.3)."""
        for rule in sorted(set(remove)):
            self.change_rule(zone, rule, PERMANENT, False)
        for rule in sorted(set(add)):
            self.change_rule(zone, rule, PERMANENT, True)


    def open_ports(self, zone):
        """What the zone opens, in runtime and permanent configuration together:
        [{"port": "443" | "10000-20000", "protocol", "owner": "port" | "service <name>"}],
        without duplicates. A service's ports include those of the services it includes.
        Dict settings (getZoneSettings2, getServiceSettings2, config getSettings2) exist
        from firewalld 0.9 on."""
        zones = {RUNTIME: self._call(PATH, IFACE_ZONE, "getZoneSettings2", zone),
                 PERMANENT: self._call(self._zone_path(zone), IFACE_CONFIG_ZONE, "getSettings2")}
        found = set()
        for config, settings in zones.items():
            found |= {(str(port), str(protocol), "port") for port, protocol in settings.get("ports", [])}
            for service in settings.get("services", []):
                found |= {(port, protocol, "service " + str(service))
                          for port, protocol in self._service_ports(str(service), config, set())}
        return [{"port": port, "protocol": protocol, "owner": owner} for port, protocol, owner in sorted(found)]

    def _service_ports(self, service, config, seen):
        """{(port, protocol)} of a service and of those it includes; a service firewalld
        no longer knows has none."""
        seen.add(service)
        try:
            if config == RUNTIME:
                settings = self._call(PATH, IFACE, "getServiceSettings2", service)
            else:
                path = self._call(CONFIG_PATH, IFACE_CONFIG, "getServiceByName", service)
                settings = self._call(path, IFACE_CONFIG_SERVICE, "getSettings2")
        except BusError as err:
            if err.code == "INVALID_SERVICE":
                return set()
            raise
        ports = {(str(port), str(protocol)) for port, protocol in settings.get("ports", [])}
        for included in settings.get("includes", []):
            if str(included) not in seen:
                ports |= self._service_ports(str(included), config, seen)
        return ports


CALLS = ("default_zone", "config_properties", "rich_rules", "change_rule", "change_permanent_rules", "open_ports")


def serve(requests, replies):
    """The helper: a first line says whether the bus is there ({"ready": true} or
    {"error": ...}), then one reply per request {"call", "args"}, until EOF."""
    def reply(document):
        replies.write(json.dumps(document) + "\n")
        replies.flush()

    try:
        bus = FirewalldBus()
    except BusError as err:
        reply({"error": err.to_json()})
        return
    reply({"ready": True})
    for line in requests:
        try:
            request = json.loads(line)
            if request.get("call") not in CALLS:
                raise BusError("dbus", "unknown call " + repr(request.get("call")))
            reply({"result": getattr(bus, request["call"])(*request.get("args", []))})
        except BusError as err:
            reply({"error": err.to_json()})
        except Exception as err:  # noqa: BLE001 - the caller shows it as one line
            reply({"error": BusError("dbus", f"{type(err).__name__}: {err}").to_json()})


if __name__ == "__main__":
    # The agent's SIGTERM goes to the whole process group: the action decides when to
    # stop, and this helper ends when its stdin closes.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin, sys.stdout)
