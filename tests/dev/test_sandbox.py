"""The sandbox node: everything comes up, behaves like the NS8 pieces it stands in
for, and leaves nothing behind."""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from nethvoice_bypass import clusterapi
from ns8dev import sandbox as sbx
from ns8dev.sandbox import Sandbox
from redis.backoff import NoBackoff
from redis.retry import Retry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MEDIANT, OTHER, NODE = (sbx.ADDRESSES[k] for k in ("mediant", "other", "node"))
PROXY_PORT, ASTERISK_UDP, ASTERISK_TCP = (
    sbx.PORTS[k] for k in ("proxy_sip", "asterisk_sip_udp", "asterisk_sip_tcp"))
PROXY = "module/nethvoice-proxy1"
# configure-module/60sip_proxy of NethVoice 1.8: its host name to Asterisk's SIP UDP port
NV_ROUTE = {"domain": "voice.example.org",
            "address": [{"uri": "sip:10.5.4.1:20040", "description": "nethvoice1"}]}


# -- a small stdlib SIP client (field-notes §6) -------------------------------------

def sip_options(target, port, transport="udp", source=None, timeout=2.0):
    """Send one OPTIONS; return {"status", "headers", "call_id"} or None on timeout."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    bracket = (lambda h: f"[{h}]") if family == socket.AF_INET6 else (lambda h: h)
    call_id = uuid.uuid4().hex
    with socket.socket(family, kind) as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((target, port))
        lhost, lport = s.getsockname()[:2]
        msg = "\r\n".join([
            f"OPTIONS sip:{bracket(target)}:{port} SIP/2.0",
            f"Via: SIP/2.0/{transport.upper()} {bracket(lhost)}:{lport};"
            f"branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
            "Max-Forwards: 70",
            f"From: <sip:probe@{bracket(lhost)}>;tag={uuid.uuid4().hex[:8]}",
            f"To: <sip:{bracket(target)}:{port}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 OPTIONS",
            "User-Agent: nvb-sandbox-test",
            "Content-Length: 0", "", ""])
        s.send(msg.encode())
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65535)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return None
    lines = data.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    assert headers["call-id"] == call_id
    return {"status": int(lines[0].split()[1]), "headers": headers, "call_id": call_id}


def probe(sandbox, target, port, transport="udp", source=MEDIANT["ipv4"], where="remote"):
    return sandbox.in_netns(where, sip_options, target, port, transport, source)


def answered_on(sandbox, responder, call_id):
    """The local port a SIP responder saw a request on, from its log."""
    for line in (Path(sandbox.state["logs"]) / f"{responder}.log").read_text().splitlines():
        if f"call-id='{call_id}'" in line:
            return int(re.search(r" -> (\d+) ", line).group(1))
    return None


def nft_tables_of_root_namespace():
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def api_answers(url):
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def assert_nothing_left(state, root_tables):
    for name, pid in state["pids"].items():
        assert sbx.start_time(pid) != state["pid_start_times"][name], f"{name} still runs"
    assert not api_answers(state["api_url"])
    assert not set(state["netns"].values()) & sbx.netns_list()
    assert not Path(state["root"]).exists()
    assert nft_tables_of_root_namespace() == root_tables  # the host's firewall untouched


# -- what is up ------------------------------------------------------------------------

def test_sandbox_json_describes_the_running_node(sandbox):
    state = json.loads((sandbox.root / "sandbox.json").read_text())
    for key in ("install_dir", "state_dir", "env_files", "base_actions", "cluster_redis",
                "module_redis", "bus_address", "netns", "addresses", "mariadb", "pids"):
        assert key in state, key
    assert (state["api_url"], state["admin"], state["proxy"]) == (
        sandbox.api_url, sandbox.admin, sandbox.proxy)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", state["api_url"])
    assert state["admin"] == {"username": "admin", "password": "Nethesis,1234"}
    assert state["proxy"]["state_dir"] == str(sandbox.root / "home/nethvoice-proxy1/.config/state")
    assert state["base_actions"] == str(REPO / "dev/base-actions")
    assert Path(state["env_files"][0]).is_file()
    assert state["module_redis"]["user"] == "module/nethvoice-bypass1"
    assert {"dbus", "firewalld", "redis", "mariadb", "kamailio", "proxy-relay", "sip-asterisk",
            "proxy-agent", "api-server"} <= set(state["pids"])
    assert sbx.running_pids(state) == state["pids"]
    assert set(state["netns"].values()) <= sbx.netns_list()


def test_network_layout(sandbox):
    def addresses(which):
        out = sandbox.node("ip", "-j", "addr") if which == "node" else sandbox.remote(
            "ip", "-j", "addr")
        return {a["local"] for link in json.loads(out.stdout) for a in link["addr_info"]}

    assert {NODE["ipv4"], NODE["ipv6"], sbx.ADDRESSES["service_ip"]} <= addresses("node")
    assert {MEDIANT["ipv4"], MEDIANT["ipv6"], OTHER["ipv4"], OTHER["ipv6"]} <= addresses(
        "remote")
    assert sandbox.in_netns("remote", sbx.ping, NODE["ipv6"])
    assert not sandbox.in_netns("remote", sbx.ping, "192.0.2.99", timeout=0.3)


def test_firewalld_runs_in_the_node_namespace_with_the_proxy_and_nethvoice_rules(sandbox):
    fw = sandbox.firewalld
    assert fw.firewall_cmd("--state").stdout.strip() == "running"
    assert fw.firewall_cmd("--get-default-zone").stdout.strip() == "public"
    expected = {
        f'rule family="ipv4" source address="192.0.2.0/24" forward-port port="{p}" '
        f'protocol="{proto}" to-port="{to}"'
        for p, proto, to in (("5060", "udp", "6060"), ("5060", "tcp", "6060"),
                             ("5061", "tcp", "6061"))}
    # NethVoice 1.8's firewall protection: no UDP from outside to its TCP-only SIP port
    expected |= {f'rule priority="-100" family="{family}" port port="{port}" protocol="udp" drop'
                 for port in ("20024", "20036") for family in ("ipv4", "ipv6")}

    def rules(*args):  # firewall-cmd also prints a warning: wg0 is in zone trusted, as on NS8
        out = fw.firewall_cmd(*args, "--list-rich-rules").stdout
        return {line for line in out.splitlines() if line.startswith("rule ")}

    assert rules() == expected
    assert rules("--permanent") == expected
    assert "nethvoice-proxy1" in fw.firewall_cmd("--list-services").stdout.split()
    assert "table inet firewalld" in fw.nft("list", "tables")


# -- SIP -----------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_options_to_5060_from_outside_are_answered_by_the_proxy(sandbox, transport):
    # The proxy's Kamailio answers an OPTIONS for a host it does not route with its
    # own 404 (its behind-NAT rules send the IPv4 LAN to its 6060 listener).
    reply = probe(sandbox, NODE["ipv4"], PROXY_PORT, transport, MEDIANT["ipv4"])
    assert reply["status"] == 404
    assert reply["headers"]["server"] == sbx.PROXY_SERVER


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_proxy_does_not_listen_on_ipv6(sandbox, transport):
    # Like the real proxy, whose listen= lines are its IPv4 addresses only.
    with pytest.raises(ConnectionRefusedError):
        probe(sandbox, NODE["ipv6"], PROXY_PORT, transport, MEDIANT["ipv6"])


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_options_to_the_asterisk_udp_port_are_answered_by_asterisk(sandbox, family):
    reply = probe(sandbox, NODE[family], ASTERISK_UDP, "udp", OTHER[family])
    assert reply["status"] == 200
    assert reply["headers"]["server"] == sbx.ASTERISK_SERVER
    assert f"received={OTHER[family]}" in reply["headers"]["via"]
    assert answered_on(sandbox, "sip-asterisk", reply["call_id"]) == ASTERISK_UDP


def test_asterisk_tcp_is_closed_from_outside_and_open_from_the_node(sandbox):
    # NethVoice does not open its SIP TCP port; the proxy reaches it over the VPN address.
    with pytest.raises(OSError):  # rejected by the public zone
        probe(sandbox, NODE["ipv4"], ASTERISK_TCP, "tcp")
    reply = probe(sandbox, sbx.ADDRESSES["service_ip"], ASTERISK_TCP, "tcp", None, "node")
    assert reply["headers"]["server"] == sbx.ASTERISK_SERVER


def test_a_prioritised_forward_rule_sends_only_the_mediant_to_asterisk(sandbox):
    rule = (f'rule priority="-10" family="ipv4" source address="{MEDIANT["ipv4"]}" '
            f'forward-port port="5060" protocol="udp" to-port="{ASTERISK_UDP}"')
    sandbox.firewalld.firewall_cmd(f"--add-rich-rule={rule}")
    try:
        mediant = probe(sandbox, NODE["ipv4"], PROXY_PORT, "udp", MEDIANT["ipv4"])
        other = probe(sandbox, NODE["ipv4"], PROXY_PORT, "udp", OTHER["ipv4"])
    finally:
        sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={rule}")
    assert mediant["headers"]["server"] == sbx.ASTERISK_SERVER
    assert other["headers"]["server"] == sbx.PROXY_SERVER


SIPP_OPTIONS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS probe">
  <send retrans="500"><![CDATA[
      OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:probe@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      User-Agent: nvb-sandbox-test
      Content-Length: 0

  ]]></send>
  <recv response="{code}"><action>
    <ereg regexp="{server}" search_in="hdr" header="Server:" check_it="true" assign_to="s"/>
  </action></recv>
  <Reference variables="s"/>
</scenario>
"""


def test_sipp_from_outside_sees_who_answers(sandbox, remote, tmp_path):
    scenario = tmp_path / "options.xml"
    scenario.write_text(SIPP_OPTIONS.format(server=sbx.PROXY_SERVER, code=404))  # no route: its own 404

    def sipp(port):
        return remote("sipp", "-sf", scenario, "-m", "1", "-i", OTHER["ipv4"], "-nostdin",
                      "-timeout", "5s", f"{NODE['ipv4']}:{port}", check=False, cwd=tmp_path,
                      timeout=30).returncode

    assert sipp(PROXY_PORT) == 0
    assert sipp(ASTERISK_UDP) != 0  # Asterisk answers 200, with its own Server header


def proxy_counters(sandbox):
    stats = sandbox.proxy_rpc("stats.get_statistics", "all")["result"]
    return dict(item.split(" = ") for item in stats)


def test_sipsak_is_dropped_by_the_proxy_and_answered_by_asterisk(sandbox, remote):
    asterisk = remote("sipsak", "-vv", "-s", f"sip:{NODE['ipv4']}:{ASTERISK_UDP}", timeout=10)
    assert f"Server: {sbx.ASTERISK_SERVER}" in asterisk.stdout
    # Like Kamailio's REQINIT: a scanner User-Agent gets no reply at all. Kamailio
    # counts the OPTIONS it received; no 404 was sent for them.
    before = proxy_counters(sandbox)
    with pytest.raises(subprocess.TimeoutExpired):
        remote("sipsak", "-s", f"sip:{NODE['ipv4']}:{PROXY_PORT}", timeout=3)
    after = proxy_counters(sandbox)
    assert int(after["core:rcv_requests_options"]) > int(before["core:rcv_requests_options"])
    assert after["sl:404_replies"] == before["sl:404_replies"]


# -- runagent and the NethVoice stand-in ---------------------------------------------

def test_runagent_mysql_reads_the_seeded_trunks(sandbox):
    out = sandbox.runagent("-m", "nethvoice1", "mysql", "asterisk", "-e", """
        SELECT t.trunkid, t.name, reg.data, op.data FROM trunks t
        JOIN pjsip reg ON reg.id = t.trunkid AND reg.keyword = 'registration'
        JOIN pjsip op ON op.id = t.trunkid AND op.keyword = 'outbound_proxy'
        ORDER BY t.trunkid""").stdout
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    proxy = "sip:10.5.4.1:5060;lr"
    assert rows == [["1", "Telco-Main", "send", proxy], ["2", "Custom-Voip", "send", proxy],
                    ["3", "Mediant-SBC", "none", proxy]]
    # stdin is passed through, like `podman exec -i`
    count = sandbox.runagent("-m", "nethvoice1", "mysql", "-N", "asterisk",
                             input="SELECT COUNT(*) FROM trunks WHERE name LIKE '%custom%';")
    assert count.stdout.strip() == "1"
    settings = dict(sandbox.sql("SELECT `key`, val FROM kvstore_Sipsettings WHERE id='noid'"))
    assert settings["udpport-0.0.0.0"] == str(ASTERISK_UDP)
    assert settings["tcpport-0.0.0.0"] == settings["bindport"] == str(ASTERISK_TCP)
    assert settings["externip"] == ""
    assert "localnets" not in settings


def test_runagent_fwconsole_is_recorded(sandbox):
    log = Path(sandbox.nethvoice["fwconsole_log"])
    before = log.read_text().splitlines() if log.exists() else []
    sandbox.runagent("-m", "nethvoice1", "fwconsole", "reload")
    after = log.read_text().splitlines()
    assert len(after) == len(before) + 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z reload", after[-1])


def test_runagent_sets_up_the_module_environment(sandbox, tmp_path):
    nv = sandbox.nethvoice
    out = sandbox.runagent("-m", "nethvoice1", "sh", "-c",
                           'pwd; echo "$AGENT_ID $AGENT_INSTALL_DIR"; command -v mysql; '
                           'echo "$ASTERISK_SIP_UDP_PORT $NODE_ID"').stdout.splitlines()
    assert out == [nv["state_dir"], f"module/nethvoice1 {nv['install_dir']}",
                   f"{nv['install_dir']}/bin/mysql", f"{ASTERISK_UDP} 1"]
    assert sandbox.runagent("-m", "nethvoice1", "-c", "pwd", cwd=tmp_path).stdout.strip() == \
        str(tmp_path)
    bypass = sandbox.runagent("-m", "nethvoice-bypass1", "printenv", "MODULE_ID", "REDIS_USER",
                              "DBUS_SYSTEM_BUS_ADDRESS", "AGENT_STATE_DIR").stdout.split()
    assert bypass == ["nethvoice-bypass1", "module/nethvoice-bypass1", sandbox.bus_address,
                      str(sandbox.state_dir)]
    assert set(sandbox.runagent("-l").stdout.split()) == {
        "cluster", "node", "nethvoice-bypass1", "nethvoice1", "nethvoice-proxy1", "metrics1"}
    missing = sandbox.runagent("-m", "nosuchmodule1", "true", check=False)
    assert missing.returncode == 1 and "Cannot find environment" in missing.stderr


def test_the_module_is_installed_like_a_rootfull_module(sandbox):
    assert (sandbox.install_dir / "actions").resolve() == REPO / "imageroot/actions"
    assert sandbox.state_dir.is_dir() and not sandbox.state_dir.is_symlink()
    env = sbx.read_env(sandbox.state_dir / "environment")
    assert env["MODULE_ID"] == "nethvoice-bypass1" and env["NODE_ID"] == "1"
    assert uuid.UUID(env["MODULE_UUID"])
    assert (sandbox.state_dir / "agent.env").stat().st_mode & 0o777 == 0o600
    node_env = sbx.read_env(sandbox.env_file)
    assert node_env["PATH"].split(":")[:2] == [str(REPO / ".venv/bin"), str(REPO / "dev/bin")]
    assert node_env["NS8_SANDBOX_ROOT"] == str(sandbox.root)
    action_env = sandbox.agent_env()
    assert action_env["REDIS_USER"] == "module/nethvoice-bypass1"
    assert action_env["AGENT_INSTALL_DIR"] == str(sandbox.install_dir)
    assert action_env["PYTHONPATH"] == str(sandbox.install_dir / "pypkg")


def test_conntrack_on_the_node_path_sees_the_node_namespace(sandbox):
    reply = probe(sandbox, NODE["ipv4"], ASTERISK_UDP, "udp", OTHER["ipv4"])
    assert reply["status"] == 200
    listing = subprocess.run(["conntrack", "-L", "-p", "udp", "--orig-port-dst",
                              str(ASTERISK_UDP)], env=sandbox.agent_env(), capture_output=True,
                             text=True)
    assert f"src={OTHER['ipv4']}" in listing.stdout


# -- the cluster Redis -----------------------------------------------------------------

def test_the_cluster_is_seeded_like_ns8(sandbox):
    r = sandbox.redis_client("default")
    assert r.hgetall("cluster/module_node") == {
        "nethvoice1": "1", "nethvoice-proxy1": "1", "nethvoice-bypass1": "1"}
    assert r.get("node/1/default_instance/nethvoice-proxy") == "nethvoice-proxy1"
    assert r.hget("node/1/vpn", "ip_address") == "10.5.4.1"
    assert r.get("cluster/network") == "10.5.4.0/24"
    assert r.hgetall("module/nethvoice1/environment") == sbx.read_env(
        Path(sandbox.nethvoice["state_dir"]) / "environment")
    proxy = r.hgetall("module/nethvoice-proxy1/environment")
    assert (proxy["BEHIND_NAT"], proxy["PRIVATE_IP"], proxy["LOCALNETWORKS"]) == (
        "true", "192.0.2.1", "192.0.2.0/24")
    srv = r.hgetall("module/nethvoice-proxy1/srv/udp/sip")
    assert (srv["port"], srv["host"], srv["module_uuid"]) == (
        "5060", "10.5.4.1", proxy["MODULE_UUID"])


def test_redis_acls_are_like_ns8(sandbox):
    module, default = sandbox.redis_client("module"), sandbox.redis_client("default")
    own = "module/nethvoice-bypass1/sandbox-test"
    assert module.set(own, "1")
    module.delete(own)
    assert module.hget("module/nethvoice1/environment", "ASTERISK_SIP_PORT") == str(
        ASTERISK_TCP)
    assert module.publish("progress/module/nethvoice-bypass1/task/x", "{}") >= 0
    assert module.brpop(["module/nethvoice-bypass1/tasks"], timeout=0.1) is None
    for write in (lambda: module.set("cluster/sandbox-test", "1"),
                  lambda: module.hset("module/nethvoice1/environment", "X", "1"),
                  lambda: module.publish("module/nethvoice1/event/x", "{}"),
                  lambda: default.set("module/nethvoice-bypass1/x", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert default.hget("module/nethvoice-proxy1/srv/tcp/sip", "port") == "5060"
    # a client that does not log in is `default`, whose password is not checked (nopass)
    host, port = sandbox.redis["address"].split(":")
    anonymous = redis.Redis(host, int(port), retry=Retry(NoBackoff(), 0), decode_responses=True)
    assert anonymous.get("cluster/network") == "10.5.4.0/24"
    assert redis.Redis(host, int(port), username="default", password="anything").ping()
    for forbidden in (lambda: anonymous.set("cluster/network", "x"),
                      lambda: anonymous.get("task/module/nethvoice-bypass1/x/output")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_the_node_reads_a_replica_of_the_leader_like_a_worker(sandbox):
    env = sbx.read_env(sandbox.env_file)
    assert env["REDIS_ADDRESS"] == sandbox.redis["address"]
    host, port = env["REDIS_REPLICA_ADDRESS"].split(":")
    replica = redis.Redis(host, int(port), username="cluster", password=sandbox.redis["cluster"]["password"])
    info = replica.info("replication")
    assert (info["role"], info["master_port"], info["master_link_status"]) == (
        "slave", int(sandbox.redis["address"].split(":")[1]), "up")
    with pytest.raises(redis.exceptions.ReadOnlyError):
        replica.set("cluster/sandbox-test", "1")


def test_the_agent_takes_tasks_from_its_queue(sandbox):
    if not (REPO / "dev/ns8dev/agent.py").exists():
        pytest.skip("dev/ns8dev/agent.py is not there yet")
    assert "agent" in sbx.running_pids(sandbox.state)
    r, task_id = sandbox.redis_client("cluster"), str(uuid.uuid4())
    r.lpush("module/nethvoice-bypass1/tasks",
            json.dumps({"id": task_id, "action": "no-such-action", "data": None}))
    key = f"task/module/nethvoice-bypass1/{task_id}/exit_code"
    deadline = time.monotonic() + 15
    while r.get(key) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.get(key) == "8"  # action not defined, written with the module's credentials


# -- the cluster API and the nethvoice-proxy stand-in ----------------------------------

def test_the_api_server_logs_in_the_ui_admin(sandbox, cluster_api):
    token = cluster_api.login(sandbox.admin["username"], sandbox.admin["password"])
    part = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert claims["id"] == "admin"
    assert cluster_api.call("POST", "/api/login", {"username": "admin", "password": "wrong"}) == (
        401, {"code": 401, "message": "incorrect Username or Password", "data": None})
    # the module's steps are pointed at it
    assert sbx.read_env(sandbox.env_file)[clusterapi.ENDPOINT_ENV] == sandbox.api_url
    assert sandbox.agent_env()[clusterapi.ENDPOINT_ENV] == sandbox.api_url


def test_the_proxy_stand_in_is_installed_like_a_rootless_module(sandbox):
    install = Path(sandbox.proxy["install_dir"])
    assert (install / "actions").resolve() == REPO / "dev/proxy-standin/actions"
    agent_env = install / "state/agent.env"
    assert agent_env.stat().st_mode & 0o777 == 0o600
    assert sbx.read_env(agent_env)["REDIS_USER"] == PROXY
    assert sbx.read_env(install / "state/environment") == sandbox.redis_client(
        "default").hgetall(f"{PROXY}/environment")


def test_list_routes_through_the_api_server_returns_nethvoices_route(sandbox, cluster_api):
    result = cluster_api.run_task(PROXY, "list-routes", {}, cluster_api.login())
    assert result["exit_code"] == 0, result["error"]
    assert NV_ROUTE in result["output"]
    task_id = result["file"].rsplit("/", 1)[1]
    context = json.loads(sandbox.redis_client().get(f"task/{PROXY}/{task_id}/context"))
    assert context["user"] == "admin"


ROUTE_ROUND_TRIP = """
import json, sys
from nethvoice_bypass import clusterapi
from nethvoice_bypass.errors import Failure

route = json.loads(sys.argv[1])
out = {"add": clusterapi.run_task("nethvoice-proxy1", "add-route", route)}
out["after_add"] = clusterapi.run_task("nethvoice-proxy1", "list-routes", {})["output"]
out["remove"] = clusterapi.run_task("nethvoice-proxy1", "remove-route", {"domain": route["domain"]})
out["after_remove"] = clusterapi.run_task("nethvoice-proxy1", "list-routes", {})["output"]
try:  # routeadm, not owner: anything else on the proxy is refused
    clusterapi.run_task("nethvoice-proxy1", "destroy-module", {})
    out["denied"] = None
except Failure as err:
    out["denied"] = str(err)
print(json.dumps(out))
"""


def test_the_module_manages_proxy_routes_with_its_own_credentials(sandbox):
    env = dict(sandbox.agent_env(), AGENT_TASK_ID=f"sandbox-test-{uuid.uuid4()}")
    assert env["REDIS_USER"] == "module/nethvoice-bypass1"
    domain = f"sandbox-{uuid.uuid4().hex[:8]}.example.net"
    route = {"domain": domain.upper(), "address": [{"uri": "sip:10.5.4.1:20040",
                                                    "description": "bypass"}]}
    proc = subprocess.run([sys.executable, "-c", ROUTE_ROUND_TRIP, json.dumps(route)], env=env,
                          cwd=sandbox.state_dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["add"] == out["remove"] == {"output": "", "error": "", "exit_code": 0}
    # stored as given, as the real proxy does (its lookup is target='<domain>')
    assert route in out["after_add"]
    assert NV_ROUTE in out["after_add"]
    assert route["domain"] not in {r["domain"] for r in out["after_remove"]}
    assert NV_ROUTE in out["after_remove"]
    assert out["denied"].startswith("not authorized: module/nethvoice-bypass1 may not run "
                                    "destroy-module")
    # the proxy ran them for the module, as children of the step's task
    r = sandbox.redis_client()
    contexts = [json.loads(r.get(k)) for k in r.scan_iter(f"task/{PROXY}/*/context")]
    mine = [c for c in contexts if c.get("parent") == env["AGENT_TASK_ID"]]
    assert sorted(c["action"] for c in mine) == ["add-route", "list-routes", "list-routes",
                                                 "remove-route"]
    assert {c["user"] for c in mine} == {"module/nethvoice-bypass1"}


# -- lifecycle -------------------------------------------------------------------------

def test_down_leaves_nothing_behind(tmp_path):
    root_tables = nft_tables_of_root_namespace()
    with Sandbox(tmp_path / "node", start_agent=False) as sb:
        state = json.loads(json.dumps(sb.state))
        assert sbx.running_pids(state) == state["pids"]
        assert {"proxy-agent", "api-server"} <= set(state["pids"])
        assert api_answers(sb.api_url)
        assert "table inet firewalld" in sb.firewalld.nft("list", "tables")
    assert_nothing_left(state, root_tables)


def test_a_failed_start_cleans_up_what_it_started(tmp_path):
    seen = {}

    class Failing(Sandbox):
        def _sip_responders(self):
            seen.update(json.loads(json.dumps(self.state)))
            raise RuntimeError("injected failure")

    root_tables = nft_tables_of_root_namespace()
    with pytest.raises(RuntimeError, match="injected failure"):
        Failing(tmp_path / "node", start_agent=False).up()
    assert {"firewalld", "redis", "mariadb", "proxy-agent", "api-server"} <= set(seen["pids"])
    assert_nothing_left(seen, root_tables)


def test_cli_up_then_stop_from_another_process(tmp_path):
    root, out = tmp_path / "node", tmp_path / "up.out"
    root_tables = nft_tables_of_root_namespace()
    with out.open("w") as f:
        up = subprocess.Popen([sys.executable, REPO / "dev/sandbox", "up", "--root", root,
                               "--no-agent"], stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "startup_seconds" not in (sbx.load_state(root) or {}):
            assert up.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        state = sbx.load_state(root)
        assert state["controller"]["pid"] == up.pid
        assert {"proxy-agent", "api-server"} <= set(sbx.running_pids(state))
        stop = subprocess.run([sys.executable, REPO / "dev/sandbox", "stop", "--root", root],
                              capture_output=True, text=True, timeout=90)
        assert stop.returncode == 0, stop.stderr
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    printed = out.read_text()
    assert "Sandbox node (debian12 profile) up" in printed
    assert f"cluster UI   {state['api_url']}/#/apps/nethvoice-bypass1   user admin password Nethesis,1234" in printed
    assert_nothing_left(state, root_tables)


def test_runagent_outside_a_sandbox_says_so(tmp_path):
    res = subprocess.run([REPO / "dev/bin/runagent", "-m", "nethvoice1", "true"],
                         env=dict(os.environ, NS8_SANDBOX_ROOT=str(tmp_path)),
                         capture_output=True, text=True)
    assert res.returncode == 1 and "No sandbox node" in res.stderr
