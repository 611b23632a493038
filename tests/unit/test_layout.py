"""The library's rooms: the pure core imports no adapter and no step I/O; every outside
system has its adapter; functions and files stay readable at once."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LIBRARY = Path(__file__).resolve().parents[2] / "imageroot/pypkg/nethvoice_bypass"
PURE = {"errors", "model", "record", "record_v1", "checked", "changes", "conflicts", "trail", "sipsettings", "forward_plan",
        "forward_view", "forward_requests", "bypass_plan", "bypass_request", "checks", "metrics", "status_view",
        "guards", "port_guards", "hep", "sipmsg", "diagnosis", "diagnosis_sources", "bpf", "bpfasm", "packets",
        "pcap"}
ADAPTERS = {  # module: the outside system it talks to
    "firewalld": "firewalld (D-Bus)", "fwbus": "firewalld (D-Bus, also as a helper)",
    "freepbx": "FreePBX (runagent + mysql, fwconsole)", "cluster": "the cluster Redis",
    "clusterapi": "the cluster HTTP API", "proxy": "the proxy's route API", "conntrack": "conntrack",
    "nft": "nftables", "corestatus": "the core's get-status step", "systemd": "systemd",
    "sipprobe": "SIP peers", "store": "the state dir", "hepcollector": "the proxy's HEP mirror",
    "kamailio": "the proxy's Kamailio (JSON-RPC)", "packetcapture": "the kernel's packets (AF_PACKET)",
}


def imports(name):
    tree = ast.parse((LIBRARY / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nethvoice_bypass"):
            found.add(node.module.split(".")[1])
    return found


def test_every_module_is_in_a_room():
    modules = {p.stem for p in LIBRARY.glob("*.py")} - {"__init__"}
    orchestration = modules - PURE - set(ADAPTERS)
    assert orchestration == {"forward_actions", "forward_changes", "bypass_actions", "reconcile", "status",
                             "verify", "selfcheck", "monitoring", "lifecycle", "exporter", "step", "keeper",
                             "migration", "siptrace_guard", "diagnose_actions"}


IO = {"os", "subprocess", "socket", "asyncio", "shutil", "fcntl", "redis", "dbus", "aiohttp", "urllib"}


@pytest.mark.parametrize("name", sorted(PURE))
def test_the_pure_core_imports_only_the_pure_core(name):
    assert imports(name) <= PURE, f"{name} imports {imports(name) - PURE}"
    tree = ast.parse((LIBRARY / f"{name}.py").read_text())
    outside = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    outside |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.level == 0}
    assert not outside & IO, f"{name} imports {outside & IO}"


@pytest.mark.parametrize("name", sorted(set(ADAPTERS) - {"fwbus"}))
def test_adapters_import_no_orchestration(name):
    assert imports(name) <= PURE | set(ADAPTERS) | {"step"}, imports(name)


def test_functions_and_files_are_short():
    for path in LIBRARY.glob("*.py"):
        text = path.read_text()
        assert text.count("\n") <= 300, f"{path.name} has {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno - node.lineno < 60, f"{path.name}: {node.name}"
