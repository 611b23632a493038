# SPDX-License-Identifier: GPL-3.0-or-later
"""Firewalld.open_ports on the sandbox's firewalld: the zone's own ports and its services'
(with the services they include), runtime and permanent together, without duplicates;
read in this process (dbus-python) and through the EL9 helper (the platform Python)."""

import pytest
from nethvoice_bypass import firewalld

pytestmark = pytest.mark.integration

RUNTIME_ONLY = ["--add-service=freeipa-4", "--add-port=5999/udp"]  # freeipa-4 only includes other services
PERMANENT_ONLY = ["--add-port=6999/tcp", "--add-port=7000-7010/udp"]


@pytest.fixture(params=["in-process", "helper"])
def fw(request, sandbox, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sandbox.bus_address)
    if request.param == "helper":
        monkeypatch.setattr(firewalld.fwbus, "dbus", None)
    firewalld._backend.cache_clear()
    fw = firewalld.Firewalld()
    yield fw
    if request.param == "helper":
        fw.backend.close()  # the helper ends, and is waited for
    firewalld._backend.cache_clear()


@pytest.fixture
def extra_ports(sandbox):
    """A service and a port in runtime only, ports in permanent only; taken away after."""
    cmd = sandbox.firewalld.firewall_cmd
    changes = [((), arg) for arg in RUNTIME_ONLY] + [(("--permanent",), arg) for arg in PERMANENT_ONLY]
    for config, arg in changes:  # firewall-cmd takes one kind of option per call
        cmd(*config, "--zone=public", arg)
    yield
    for config, arg in changes:
        cmd(*config, "--zone=public", arg.replace("--add-", "--remove-"))


def services(sandbox, *args):
    return set(sandbox.firewalld.firewall_cmd("--zone=public", "--list-services", *args).stdout.split())


def test_open_ports_of_a_zone(fw, sandbox, extra_ports):
    ports = fw.open_ports("public")
    found = {(p["port"], p["protocol"], p["owner"]) for p in ports}
    assert len(found) == len(ports)  # no duplicates
    assert {("22", "tcp", "service ssh"), ("546", "udp", "service dhcpv6-client"),
            ("5060", "udp", "service nethvoice-proxy1"), ("10000-20000", "udp", "service nethvoice-proxy1"),
            ("6060-6061", "tcp", "service nethvoice-proxy1"), ("20040", "udp", "service nethvoice1"),
            ("5999", "udp", "port"), ("6999", "tcp", "port"), ("7000-7010", "udp", "port"),
            } <= found
    # included by freeipa-4: http, https, kerberos, kpasswd, ldap, ldaps
    assert {(p, proto) for p, proto, owner in found if owner == "service freeipa-4"} == {
        ("80", "tcp"), ("443", "tcp"), ("88", "tcp"), ("88", "udp"), ("464", "tcp"), ("464", "udp"),
        ("389", "tcp"), ("636", "tcp")}
    owners = {owner for _, _, owner in found}
    assert owners == {"port"} | {f"service {s}" for s in services(sandbox) | services(sandbox, "--permanent")}


def test_open_ports_without_extras(fw, sandbox):
    found = {(p["port"], p["protocol"], p["owner"]) for p in fw.open_ports("public")}
    assert not {owner for _, _, owner in found} & {"port", "service freeipa-4"}
