# SPDX-License-Identifier: GPL-3.0-or-later
"""Other writers are not clobbered: a permanent rule another tool writes while one of our
changes is in progress is still in firewalld's permanent configuration afterwards.

Two moments of the change: while the step is stopped after recording its pending
changes (NETHVOICE_BYPASS_STOP_AT=pending_saved), and at the worst one, right before its
first permanent write reaches firewalld, after every read it made. The second is held
open by a relay between the step and the sandbox's D-Bus socket: the step talks to the
real bus and the real firewalld through it, and the relay lets the other tool write
first. Both node profiles run the D-Bus calls through it (in the step, or in the EL9
helper, which inherits the step's DBUS_SYSTEM_BUS_ADDRESS)."""

import os
import signal
import socket
import threading

import pytest
from nodetools import rich_rules

pytestmark = pytest.mark.integration

MEDIANTS = [{"source": "192.0.2.10"}, {"source": "192.0.2.11"}]  # two rules: one write of several
FOREIGN = ['rule family="ipv4" source address="198.51.100.77" port port="5061" protocol="tcp" reject',
           'rule family="ipv4" source address="198.51.100.78" service name="ssh" accept']
# a permanent rich-rule write of the config zone API (update2 is the settings-wide one)
PERMANENT_ZONE = b"org.fedoraproject.FirewallD1.config.zone"
WRITES = (b"addRichRule", b"removeRichRule", b"setRichRules", b"update2")


class BusRelay:
    """unix:path=<dir>/relay.sock -> the sandbox's bus socket, byte for byte. Before the
    first message that is a permanent zone write, before() runs (once)."""

    def __init__(self, directory, bus_socket, before):
        self.path, self.bus_socket, self.before = os.path.join(directory, "relay.sock"), bus_socket, before
        self.fired, self.sockets = threading.Event(), []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return f"unix:path={self.path}"

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            bus = socket.socket(socket.AF_UNIX)
            bus.connect(self.bus_socket)
            self.sockets += [client, bus]
            threading.Thread(target=self._pump, args=(client, bus, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(bus, client, False), daemon=True).start()

    def _pump(self, source, sink, from_step):
        try:
            while data := source.recv(65536):
                if from_step and not self.fired.is_set() and PERMANENT_ZONE in data and any(
                        w in data for w in WRITES):
                    self.fired.set()
                    self.before()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def close(self):
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.mark.parametrize("action", ["add-port-forward", "remove-port-forward"])
def test_a_foreign_permanent_rule_written_during_our_change_survives(actions, sandbox, clean_forwards, tmp_path,
                                                                     action):
    fw = sandbox.firewalld
    if action == "add-port-forward":
        data, ours_after = {"forwards": MEDIANTS}, 2
    else:
        ids = [f["id"] for f in actions.run("add-port-forward", {"forwards": MEDIANTS})["forwards"]]
        data, ours_after = {"ids": ids}, 0
    relay = BusRelay(str(tmp_path), fw.socket, lambda: fw.firewall_cmd("--permanent", f"--add-rich-rule={FOREIGN[1]}"))
    try:
        running = actions.start(action, data, NETHVOICE_BYPASS_STOP_AT="pending_saved",
                                DBUS_SYSTEM_BUS_ADDRESS=relay.address)
        pid = running.wait_stopped()
        fw.firewall_cmd("--permanent", f"--add-rich-rule={FOREIGN[0]}")
        os.killpg(pid, signal.SIGCONT)  # resume, without a cancel
        result = running.result()
        assert result.exit_code == 0, result.error
        assert relay.fired.is_set()  # the other tool did write at the worst moment
        permanent = rich_rules(sandbox, permanent=True)
        assert set(FOREIGN) <= permanent
        assert len({r for r in permanent if r.startswith('rule priority="-10" ')}) == ours_after
    finally:
        relay.close()
        for rule in FOREIGN:
            fw.firewall_cmd("--permanent", f"--remove-rich-rule={rule}", check=False)
