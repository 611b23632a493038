# SPDX-License-Identifier: GPL-3.0-or-later
"""The sandbox's proxy is a real Kamailio making the NethVoice proxy's decisions:
real SIP from the remote namespace (SIPp scenarios in dev/sipp, sipsak), the HEP
mirror on the root namespace's 127.0.0.1:5065, the route actions of the proxy
stand-in, and the module's RPC adapter (nethvoice_bypass.kamailio)."""

import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from nethvoice_bypass import kamailio
from ns8dev import hep, procs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SIPP = REPO / "dev/sipp"
PROXY = "module/nethvoice-proxy1"
NODE, MEDIANT, SERVICE_IP = "192.0.2.1", "192.0.2.10", "10.5.4.1"
SERVER = "NethServer 8 nethvoice-proxy1"
ALIAS, DEAD, RULE = "alias.example.net", "dead.example.net", "0555"
ASTERISK_UDP = "sip:10.5.4.1:20040"
NOBODY = "sip:10.5.4.1:20999"  # nothing listens there


# -- SIP from the remote namespace -----------------------------------------------------

def sipp(sandbox, tmp_path, scenario, ruri):
    """One call of a dev/sipp scenario from the Mediant to the node's 5060: exit code."""
    return sandbox.remote("sipp", "-sf", SIPP / scenario, "-key", "ruri", ruri,
                          "-m", "1", "-i", MEDIANT, "-nostdin", "-timeout", "20s", "-timeout_error",
                          f"{NODE}:5060", check=False, cwd=tmp_path, timeout=40).returncode


def request(method, ruri, target, port=5060, source=None, user_agent="nvb-test", timeout=2.0):
    """One request over UDP; the reply's {"status", "reason", "headers"}, or None."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind((source or "0.0.0.0", 0))
        s.connect((target, port))
        host, lport = s.getsockname()
        s.send("\r\n".join([
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{lport};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
            "Max-Forwards: 70", f"From: <sip:test@{host}>;tag={uuid.uuid4().hex[:8]}", f"To: <{ruri}>",
            f"Call-ID: {call_id}", f"CSeq: 1 {method}", f"User-Agent: {user_agent}",
            "Content-Length: 0", "", ""]).encode())
        try:
            data = s.recv(65535).decode()
        except TimeoutError:
            return None
    first, *lines = data.split("\r\n\r\n")[0].split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return {"status": int(first.split()[1]), "reason": first.split(" ", 2)[2], "headers": headers,
            "call_id": call_id}


def from_remote(sandbox, *args, **kwargs):
    return sandbox.in_netns("remote", request, *args, source=MEDIANT, **kwargs)


# -- the proxy's tables and its RPC ----------------------------------------------------

def rpc(sandbox, fn, *args):
    """An adapter function called from the node's loopback: this sandbox's Kamailio
    (the root namespace's 127.0.0.1:5060 may be another sandbox's relay)."""
    return sandbox.in_netns("node", fn, *args)


def reload_when_allowed(sandbox, timeout=8):
    """Reload the tables once Kamailio's reload_delta (5 s) lets dialplan and dispatcher."""
    def done():
        return set(rpc(sandbox, kamailio.reload, 5060).values()) == {"reloaded"}
    procs.wait_for(done, timeout, "a reload Kamailio accepts", interval=0.5)


def proxy_task(cluster_api, action, data):
    result = cluster_api.run_task(PROXY, action, data, cluster_api.login())
    assert result["exit_code"] == 0, result["error"]
    return result["output"]


@pytest.fixture(scope="module")
def routes(sandbox, cluster_api):
    """Routes written by the stand-in's actions, then reloaded until live."""
    proxy_task(cluster_api, "add-route", {"domain": ALIAS, "address": [{"uri": ASTERISK_UDP, "description": "t"}]})
    proxy_task(cluster_api, "add-route", {"domain": DEAD, "address": [{"uri": NOBODY, "description": "t"}]})
    proxy_task(cluster_api, "add-trunk", {"rule": RULE, "destination": {"uri": ASTERISK_UDP, "description": "t"}})
    reload_when_allowed(sandbox)
    yield
    for domain in (ALIAS, DEAD):
        proxy_task(cluster_api, "remove-route", {"domain": domain})
    proxy_task(cluster_api, "remove-trunk", {"rule": RULE})
    reload_when_allowed(sandbox)


@pytest.fixture
def trace(sandbox):
    """The HEP mirror switched on, its frames caught on the root namespace's 5065."""
    with hep.Capture() as capture:
        assert rpc(sandbox, kamailio.siptrace, 5060, "on") is True
        try:
            yield capture
        finally:
            rpc(sandbox, kamailio.siptrace, 5060, "off")


def frames_of(capture, needle, timeout=3.0):
    """Frames whose SIP text contains needle, after waiting for the first one."""
    capture.wait_for(lambda f: needle in f["sip"], timeout)
    time.sleep(0.3)  # what the proxy would send in answer comes within milliseconds
    return [f for f in capture.frames if needle in f["sip"]]


def last_invite_at_asterisk(sandbox):
    """The Asterisk responder's log line of the last INVITE it answered (it logs the
    source, the port, the Call-ID and the X-Forwarded-For header)."""
    lines = [line for line in (sandbox.log_dir / "sip-asterisk.log").read_text().splitlines()
             if " INVITE " in line]
    return lines[-1] if lines else ""


# -- decisions ------------------------------------------------------------------------

def test_an_invite_for_a_host_that_is_not_the_proxys_gets_no_reply(sandbox, tmp_path, trace):
    ruri = f"sip:100@unknown-{uuid.uuid4().hex[:6]}.example.com"
    assert sipp(sandbox, tmp_path, "invite-silence.xml", ruri) == 0  # any reply would fail the call
    frames = frames_of(trace, ruri)
    received = [f for f in frames if f["src"] == MEDIANT]
    assert received and received[0]["sip"].startswith(f"INVITE {ruri} SIP/2.0")
    assert received[0]["dport"] == 6060  # the proxy's LAN rule forwarded 5060 to 6060
    assert [f for f in frames if f["src"] != MEDIANT] == []  # nothing sent back, nothing relayed


def test_a_scanner_user_agent_is_dropped(sandbox, remote, trace):
    with pytest.raises(subprocess.TimeoutExpired):  # sipsak waits for a reply that never comes
        remote("sipsak", "-s", f"sip:100@{NODE}:5060", timeout=3)
    frames = frames_of(trace, "User-Agent: sipsak")
    assert frames and all(f["src"] == MEDIANT for f in frames)
    # the same request without the scanner's User-Agent is answered
    assert from_remote(sandbox, "OPTIONS", f"sip:100@{NODE}:5060", NODE)["status"] == 404


def test_no_user_in_the_request_uri_gets_484(sandbox, tmp_path):
    assert sipp(sandbox, tmp_path, "rejected-484.xml", "sip:voice.example.org") == 0


def test_options_from_outside_to_an_unknown_domain_gets_404_from_the_proxy(sandbox):
    reply = from_remote(sandbox, "OPTIONS", "sip:100@unknown.example.com", NODE)
    assert (reply["status"], reply["reason"], reply["headers"]["server"]) == (404, "Not Found", SERVER)


def test_an_invite_without_a_destination_gets_404(sandbox, tmp_path, routes):
    # the proxy's own address is "myself", so the INVITE is not dropped, but no route takes it
    assert sipp(sandbox, tmp_path, "rejected-404.xml", f"sip:0666@{NODE}") == 0


@pytest.mark.parametrize("domain, port", [("voice.example.org", 20040), (ALIAS, 20040)])
def test_an_invite_for_a_routed_domain_reaches_asterisk_with_x_forwarded_for(sandbox, tmp_path, routes,
                                                                              domain, port):
    user = f"1{uuid.uuid4().int % 10**6:06d}"
    assert sipp(sandbox, tmp_path, "invite.xml", f"sip:{user}@{domain}") == 0
    line = last_invite_at_asterisk(sandbox)
    assert f"-> {port} INVITE" in line and f"xff='{MEDIANT}'" in line
    assert line.startswith(f"udp {SERVICE_IP}:5060 ")  # relayed from the proxy's VPN socket


def test_a_trunk_rule_matches_the_whole_request_uri(sandbox, tmp_path, routes):
    assert sipp(sandbox, tmp_path, "invite.xml", f"sip:{RULE}123@{NODE}") == 0
    assert f"xff='{MEDIANT}'" in last_invite_at_asterisk(sandbox)


def test_other_methods_from_outside_are_dropped(sandbox, tmp_path, trace):
    ruri = f"sip:{uuid.uuid4().hex[:8]}@voice.example.org"
    assert sipp(sandbox, tmp_path, "message-silence.xml", ruri) == 0
    frames = frames_of(trace, ruri)
    assert frames and all(f["src"] == MEDIANT for f in frames)


def test_a_destination_that_does_not_answer_gets_the_failure_relayed_back(sandbox, tmp_path, routes):
    log = sandbox.log_dir / "kamailio.log"
    size = log.stat().st_size
    assert sipp(sandbox, tmp_path, "rejected-408.xml", f"sip:100@{DEAD}") == 0
    with open(log, "rb") as f:
        f.seek(size)
        assert re.search(rb"WARNING: .*timeout with no reply, du was: " + NOBODY.encode(), f.read())


def test_keepalive_options_from_the_cluster_network_and_the_loopback(sandbox):
    reply = sandbox.in_netns("node", request, "OPTIONS", f"sip:{SERVICE_IP}:5060", SERVICE_IP, source=SERVICE_IP)
    assert (reply["status"], reply["reason"], reply["headers"]["server"]) == (200, "Keepalive", SERVER)
    reply = sandbox.in_netns("node", request, "OPTIONS", "sip:127.0.0.1:5060", "127.0.0.1")
    assert (reply["status"], reply["reason"]) == (200, "Keepalive")


# -- the root namespace's loopback ------------------------------------------------------

def relay_holds_the_root_loopback(sandbox):
    """Both of the root namespace's 127.0.0.1:5060 (UDP, TCP) held by this sandbox's relay."""
    log = (sandbox.log_dir / "proxy-relay.log").read_text()
    return all(re.search(rf"^{proto} 127\.0\.0\.1:5060 (held|taken over)$", log, re.M) for proto in ("udp", "tcp"))


def test_the_root_namespace_reaches_this_kamailio_at_127_0_0_1(sandbox):
    if not any(relay_holds_the_root_loopback(sandbox) or time.sleep(0.5) for _ in range(20)):
        pytest.skip("another sandbox holds the root namespace's 127.0.0.1:5060 (see log/proxy-relay.log)")
    main_pid = sandbox.proxy_rpc("core.psx")["result"][0]["PID"]
    assert kamailio.call(5060, "core.psx")[0]["PID"] == main_pid  # over TCP: this Kamailio
    reply = request("OPTIONS", "sip:127.0.0.1:5060", "127.0.0.1")  # keepalive: from the node's 127.0.0.1
    assert (reply["status"], reply["reason"], reply["headers"]["server"]) == (200, "Keepalive", SERVER)
    assert kamailio.live_domains(5060) == rpc(sandbox, kamailio.live_domains, 5060)


# -- the route actions and the reloads -------------------------------------------------

def test_route_actions_are_live_after_their_reload_and_a_quick_second_one_is_not(sandbox, cluster_api, tmp_path):
    first, second = (f"race{i}-{uuid.uuid4().hex[:6]}.example.net" for i in (1, 2))
    reload_when_allowed(sandbox)  # so the first action's reload is accepted
    time.sleep(5.2)
    try:
        for domain in (first, second):
            proxy_task(cluster_api, "add-route", {"domain": domain,
                                                  "address": [{"uri": ASTERISK_UDP, "description": "t"}]})
        listed = {r["domain"] for r in proxy_task(cluster_api, "list-routes", {})}
        assert {first, second} <= listed  # both written
        live = {r["match"] for r in rpc(sandbox, kamailio.dialplan, 5060, 1)}
        assert first in live and second not in live  # the second reload was refused
        assert second in rpc(sandbox, kamailio.live_domains, 5060)  # domain.reload has no rate limit
        assert sipp(sandbox, tmp_path, "rejected-404.xml", f"sip:100@{second}") == 0
        reload_when_allowed(sandbox)
        assert second in {r["match"] for r in rpc(sandbox, kamailio.dialplan, 5060, 1)}
        assert sipp(sandbox, tmp_path, "invite.xml", f"sip:100@{second}") == 0
    finally:
        for domain in (first, second):
            proxy_task(cluster_api, "remove-route", {"domain": domain})
        reload_when_allowed(sandbox)
    assert not {first, second} & {r["match"] for r in rpc(sandbox, kamailio.dialplan, 5060, 1)}


def test_the_adapter_tells_a_refused_reload(sandbox):
    reload_when_allowed(sandbox)
    assert rpc(sandbox, kamailio.reload, 5060, "dialplan", "dispatcher") == {
        "dialplan": "ongoing", "dispatcher": "ongoing"}
    assert rpc(sandbox, kamailio.reload, 5060, "domain") == {"domain": "reloaded"}


def test_the_adapter_reads_the_live_tables(sandbox, routes):
    assert {"voice.example.org", ALIAS, DEAD} <= set(rpc(sandbox, kamailio.live_domains, 5060))
    assert {(r["match"], r["match_op"]) for r in rpc(sandbox, kamailio.dialplan, 5060, 2)} == {
        (f"sip:{RULE}.*@.*", 1)}
    dests = {d["uri"]: d for d in rpc(sandbox, kamailio.dispatcher_list, 5060)}
    assert dests[ASTERISK_UDP]["active"] and dests[ASTERISK_UDP]["flags"].startswith("A")


def test_the_adapter_fails_in_one_line(sandbox):
    with pytest.raises(kamailio.Failure, match=r"^the proxy's RPC at 127\.0\.0\.1:5999 refused the connection"):
        rpc(sandbox, kamailio.call, 5999, "core.psx")
    with pytest.raises(kamailio.RpcError, match="Method Not Found"):
        rpc(sandbox, kamailio.call, 5060, "no.such_method")


# -- siptrace and HEP ------------------------------------------------------------------

def test_siptrace_through_the_adapter_mirrors_hepv2_to_the_root_namespace(sandbox):
    with hep.Capture() as capture:
        assert rpc(sandbox, kamailio.siptrace, 5060, "check") is False
        off = from_remote(sandbox, "OPTIONS", "sip:off@unknown.example.com", NODE)
        assert rpc(sandbox, kamailio.siptrace, 5060, "on") is True
        try:
            assert rpc(sandbox, kamailio.siptrace, 5060, "check") is True
            on = from_remote(sandbox, "OPTIONS", "sip:on@unknown.example.com", NODE)
            frames = frames_of(capture, on["call_id"])
        finally:
            assert rpc(sandbox, kamailio.siptrace, 5060, "off") is False
    assert off["status"] == on["status"] == 404
    assert not [f for f in capture.frames if off["call_id"] in f["sip"]]
    request_frame, reply_frame = frames[0], frames[-1]
    assert (request_frame["version"], request_frame["length"], request_frame["family"],
            request_frame["protocol"], request_frame["capture_id"]) == (2, 16, 2, 17, 1)
    assert (request_frame["src"], request_frame["dst"], request_frame["dport"]) == (MEDIANT, NODE, 6060)
    assert request_frame["sip"].startswith("OPTIONS sip:on@unknown.example.com SIP/2.0")
    assert reply_frame["sip"].startswith("SIP/2.0 404 Not Found") and reply_frame["sport"] == 6060
    assert abs(request_frame["time"] - time.time()) < 60
