"""firewalld over D-Bus: rich rules in runtime and permanent configuration.

Both configurations are changed together, with no reload and no
runtime-to-permanent (which would also save other tools' runtime-only state).
ALREADY_ENABLED / NOT_ENABLED mean the change is already there: success.
"""

import dbus

from .forwards import PERMANENT, RUNTIME
from .step import Failure

BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
CONFIG_PATH = "/org/fedoraproject/FirewallD1/config"
IFACE = "org.fedoraproject.FirewallD1"
IFACE_ZONE = "org.fedoraproject.FirewallD1.zone"
IFACE_CONFIG = "org.fedoraproject.FirewallD1.config"
IFACE_CONFIG_ZONE = "org.fedoraproject.FirewallD1.config.zone"
FIREWALLD_ERROR = "org.fedoraproject.FirewallD1.Exception"

IDEMPOTENT = {"ALREADY_ENABLED", "NOT_ENABLED"}

# firewalld error codes caused by the rule's content rather than by the system
INPUT_ERRORS = {"INVALID_ADDR", "INVALID_PORT", "INVALID_PROTOCOL", "INVALID_RULE",
                "INVALID_FAMILY", "MISSING_FAMILY", "INVALID_PRIORITY"}


class FirewalldError(Failure):
    def __init__(self, code, detail, operation):
        self.code = code
        self.detail = detail
        super().__init__(f"firewalld refused to {operation}: {code}" + (f" ({detail})" if detail else ""))


def _unreachable(err):
    name = err.get_dbus_name() or ""
    if name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
        return Failure("firewalld is not running (no owner of org.fedoraproject.FirewallD1 on the "
                       "system bus); start it with 'systemctl start firewalld'")
    if name in ("org.freedesktop.DBus.Error.FileNotFound", "org.freedesktop.DBus.Error.NoServer",
                "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Disconnected"):
        return Failure(f"cannot reach firewalld on the system D-Bus: {err.get_dbus_message()}")
    return None


class Firewalld:
    """One connection per action; permanent zone objects are looked up per call because
    a firewalld reload renumbers their paths."""

    def __init__(self, bus=None):
        try:
            # BUS_SYSTEM honours DBUS_SYSTEM_BUS_ADDRESS, the system bus otherwise
            self.bus = bus or dbus.bus.BusConnection(dbus.bus.BUS_SYSTEM)
        except dbus.exceptions.DBusException as err:
            raise _unreachable(err) or Failure(f"cannot connect to the system D-Bus: {err}") from err

    def _call(self, path, interface, method, *args, operation):
        try:
            proxy = self.bus.get_object(BUS_NAME, path, introspect=False)
            return getattr(proxy, method)(*args, dbus_interface=interface)
        except dbus.exceptions.DBusException as err:
            problem = _unreachable(err)
            if problem:
                raise problem from err
            if err.get_dbus_name() == FIREWALLD_ERROR:
                code, _, detail = (err.get_dbus_message() or "").partition(":")
                raise FirewalldError(code.strip(), detail.strip(), operation) from err
            raise Failure(f"firewalld D-Bus call {method} failed: {err}") from err

    def config_properties(self):
        """firewalld.conf as firewalld sees it (e.g. StrictForwardPorts on 2.3+)."""
        props = self._call(CONFIG_PATH, dbus.PROPERTIES_IFACE, "GetAll", IFACE_CONFIG,
                           operation="read its configuration")
        return {str(k): str(v) if not isinstance(v, dbus.Boolean) else bool(v) for k, v in props.items()}

    def default_zone(self):
        return str(self._call(PATH, IFACE, "getDefaultZone", operation="read the default zone"))

    def _zone_config_path(self, zone):
        return self._call(CONFIG_PATH, IFACE_CONFIG, "getZoneByName", zone,
                          operation=f"find zone {zone!r}")

    def rich_rules(self, zone, config):
        """The zone's rich rules in one configuration, as a set of canonical strings."""
        if config == RUNTIME:
            rules = self._call(PATH, IFACE_ZONE, "getRichRules", zone, operation="list rich rules")
        else:
            rules = self._call(self._zone_config_path(zone), IFACE_CONFIG_ZONE, "getRichRules",
                               operation="list permanent rich rules")
        return {str(rule) for rule in rules}

    def change_permanent_rules(self, zone, add=(), remove=()):
        """Several permanent changes in one write of the zone file (each single
        add/remove rewrites it). The rules are read right before the write and only
        the given ones change, so the read-modify-write window is one D-Bus call."""
        add, remove = set(add), set(remove)
        if len(add) + len(remove) <= 1:
            for rule in add:
                self.add_rich_rule(zone, rule, PERMANENT)
            for rule in remove:
                self.remove_rich_rule(zone, rule, PERMANENT)
            return
        path = self._zone_config_path(zone)
        current = [str(r) for r in self._call(path, IFACE_CONFIG_ZONE, "getRichRules",
                                              operation="list permanent rich rules")]
        wanted = [r for r in current if r not in remove] + sorted(add - set(current))
        self._call(path, IFACE_CONFIG_ZONE, "update2", dbus.Dictionary(
            {"rules_str": dbus.Array(wanted, signature="s")}, signature="sv"),
            operation=f"write {len(add)} added and {len(remove)} removed permanent rules")

    def add_rich_rule(self, zone, rule, config):
        self._change(zone, rule, config, add=True)

    def remove_rich_rule(self, zone, rule, config):
        self._change(zone, rule, config, add=False)

    def _change(self, zone, rule, config, add):
        operation = f"{'add' if add else 'remove'} the {config} rule '{rule}'"
        try:
            if config == RUNTIME:
                if add:
                    self._call(PATH, IFACE_ZONE, "addRichRule", zone, rule, 0, operation=operation)
                else:
                    self._call(PATH, IFACE_ZONE, "removeRichRule", zone, rule, operation=operation)
            else:
                method = "addRichRule" if add else "removeRichRule"
                self._call(self._zone_config_path(zone), IFACE_CONFIG_ZONE, method, rule,
                           operation=operation)
        except FirewalldError as err:
            if err.code not in IDEMPOTENT:
                raise
