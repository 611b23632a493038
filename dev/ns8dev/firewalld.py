"""A real firewalld in its own network namespace on a private D-Bus system bus.

The recipe of firewalld's own test suite: private dbus-daemon, `--system-config`
pointing to a copy of /etc/firewalld, nftables backend. The host's firewall and
/etc/firewalld are never touched. Clients reach it with DBUS_SYSTEM_BUS_ADDRESS.
"""

import os
import shutil
import subprocess

from . import procs

BUS_CONF = """<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def netns_exec(netns, *argv):
    return ["ip", "netns", "exec", netns, *argv]


class Firewalld:
    """firewalld + dbus-daemon inside an existing network namespace."""

    def __init__(self, workdir, netns):
        self.workdir = workdir
        self.netns = netns
        self.config_dir = os.path.join(workdir, "etc-firewalld")
        self.socket = os.path.join(workdir, "bus.sock")
        self.bus_address = f"unix:path={self.socket}"
        self.log_path = os.path.join(workdir, "firewalld.log")
        self.dbus = None
        self.daemon = None

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        if not os.path.isdir(self.config_dir):
            shutil.copytree("/etc/firewalld", self.config_dir)
            self._set_conf("FirewallBackend", "nftables")
        bus_conf = os.path.join(self.workdir, "bus.conf")
        with open(bus_conf, "w") as f:
            f.write(BUS_CONF.format(socket=self.socket))
        self.dbus = procs.start(
            netns_exec(self.netns, "dbus-daemon", f"--config-file={bus_conf}", "--nofork",
                       "--nopidfile"),
            os.path.join(self.workdir, "dbus.log"),
        )
        procs.wait_for(lambda: os.path.exists(self.socket), 10, "the private D-Bus socket")
        self.start_daemon()
        return self

    def start_daemon(self):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address)
        self.daemon = procs.start(
            netns_exec(self.netns, "/usr/sbin/firewalld", "--nofork", "--nopid",
                       "--system-config", self.config_dir, "--log-target", "console"),
            self.log_path, env=env,
        )
        procs.wait_for(self.is_running, 30, "firewalld to reach RUNNING")

    def stop_daemon(self):
        procs.stop(self.daemon)
        self.daemon = None

    def stop(self):
        self.stop_daemon()
        procs.stop(self.dbus)
        self.dbus = None

    def is_running(self):
        if self.daemon is not None and self.daemon.poll() is not None:
            raise RuntimeError(f"firewalld exited; see {self.log_path}")
        return self.firewall_cmd("--state", check=False).returncode == 0

    def firewall_cmd(self, *args, check=True):
        """The manual procedure's tool, talking to this firewalld."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address)
        return subprocess.run(["firewall-cmd", *args], env=env, capture_output=True, text=True,
                              check=check)

    def nft(self, *args):
        return subprocess.run(netns_exec(self.netns, "nft", *args), capture_output=True,
                              text=True, check=True).stdout

    def _set_conf(self, key, value):
        path = os.path.join(self.config_dir, "firewalld.conf")
        lines = open(path).read().splitlines() if os.path.exists(path) else []
        lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def set_conf(self, key, value):
        """Change firewalld.conf (e.g. StrictForwardPorts); takes effect on restart."""
        self._set_conf(key, value)
