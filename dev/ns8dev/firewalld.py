# SPDX-License-Identifier: GPL-3.0-or-later
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


def start_on_node(sb, nethvoice_env, proxy_rules):
    """The node's firewalld, with what the NS8 node actions would have done for
    NethVoice and its proxy: add-public-service (a firewalld service in the default
    zone), add-rich-rules (permanent, then reload), and the trusted zone for wg0."""
    from .node import CLUSTER_NETWORK, NETHVOICE_ID, PROXY_ID, Started

    fw = Firewalld(str(sb.run_dir / "firewalld"), sb.netns["node"])
    try:
        fw.start()
    finally:  # record whatever did start
        for name, popen in (("dbus", fw.dbus), ("firewalld", fw.daemon)):
            if popen is not None:
                sb.track(name, popen)
    nv = nethvoice_env
    services = {
        PROXY_ID: ["5060/tcp", "5060/udp", "5061/tcp", "10000-20000/udp", "6060-6061/tcp", "6060/udp"],
        NETHVOICE_ID: [f"{nv['ASTERISK_SIP_UDP_PORT']}/udp", f"{nv['NETHCTI_TLS_PORT']}/tcp",
                       f"{nv['ASTERISK_RTPSTART']}-{nv['ASTERISK_RTPEND']}/udp",
                       f"{nv['JANUS_RTPSTART']}-{nv['JANUS_RTPEND']}/udp"],
    }

    def cmd(*args):
        res = fw.firewall_cmd(*args, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"firewall-cmd {' '.join(args)}: {res.stderr.strip()}")
    for service, ports in services.items():
        cmd("--permanent", f"--new-service={service}")
        cmd("--permanent", f"--service={service}", *[f"--add-port={p}" for p in ports])
    cmd("--permanent", *[f"--add-service={s}" for s in services])
    cmd("--permanent", *[f"--add-rich-rule={r}" for r in proxy_rules])
    cmd("--permanent", "--zone=trusted", "--add-interface=wg0")
    cmd("--permanent", "--zone=trusted", f"--add-source={CLUSTER_NETWORK}")
    cmd("--reload")
    return fw, Started({"dbus": fw.dbus, "firewalld": fw.daemon})
