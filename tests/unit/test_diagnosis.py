"""The diagnosis's pure core: what the proxy did with each request of a window, the
cause in plain words, and the fix as an existing action's input."""

import ipaddress

import pytest
from builders import entry
from nethvoice_bypass import diagnosis, hep, sipmsg
from nethvoice_bypass.diagnosis_sources import Seen, capture_problems, sources
from nethvoice_bypass.hepcollector import Captured

pytestmark = pytest.mark.unit

DEVICE, PROXY, PROXY_LAN = ("192.0.2.10", 5060), ("192.0.2.1", 5060), ("192.0.2.1", 6060)
ASTERISK = ("10.5.4.1", 20040)
PROXY_VPN = ("10.5.4.1", 5060)
CTX = diagnosis.Context(
    proxy_addresses=frozenset({"192.0.2.1", "10.5.4.1", "203.0.113.5", "127.0.0.1"}),
    proxy_domains=frozenset({"voice.example.org"}), cluster_network=ipaddress.ip_network("10.5.4.0/24"),
    instances={"nethvoice1": {"ports": {20040, 20024}, "aliases": ["old.example"]}})


def request(method, ruri, call_id="c1", cseq=1, ua="Mediant SW/v.7.40"):
    return (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{call_id}{cseq}\r\n"
            f"From: <sip:0510000001@192.0.2.10>;tag=a\r\nTo: <{ruri}>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n").encode()


def response(code, reason, method="INVITE", call_id="c1", cseq=1, server="NethServer 8 nethvoice-proxy1"):
    return (f"SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{call_id}{cseq}\r\n"
            f"From: <sip:a@b>;tag=a\r\nTo: <sip:c@d>;tag=b\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Server: {server}\r\nContent-Length: 0\r\n\r\n").encode()


def mirrored(*steps):
    """[(time, payload, src, dst)] -> [Captured] as the collector gives them."""
    out = []
    for time, payload, src, dst in steps:
        message = hep.parse(hep.encode_v2(payload, src=src, dst=dst, time=time))
        out.append(Captured(message, sipmsg.parse(message.payload)))
    return out


INVITE = "sip:0510000099@pbx.customer.example"


def one(messages, window_end=100.0):
    [ex] = diagnosis.exchanges(messages, CTX, window_end)
    return ex, diagnosis.cause_of(ex, CTX)


def test_an_unknown_domain_dropped_in_silence_is_named_with_an_alias_fix():
    ex, (cause, message, fixes) = one(mirrored((1.0, request("INVITE", INVITE), DEVICE, PROXY),
                                              (1.5, request("INVITE", INVITE), DEVICE, PROXY)))  # retransmission
    assert ex.outcome == "dropped" and ex.user == "05****99" and ex.ladder[-1]["what"] == "silence"
    assert cause == "unknown_domain" and "pbx.customer.example" in message
    assert fixes[0] == {"action": "configure-bypass", "why": "the proxy routes pbx.customer.example to nethvoice1",
                        "data": {"instance": "nethvoice1", "domain_aliases": ["old.example", "pbx.customer.example"]}}
    assert fixes[-1]["action"] == "add-port-forward" and fixes[-1]["data"]["source"] == "192.0.2.10"


def test_a_request_not_yet_answered_at_the_end_of_the_window_is_not_silence():
    ex, cause = one(mirrored((98.0, request("INVITE", INVITE), DEVICE, PROXY)))
    assert ex.outcome == "pending" and cause is None


@pytest.mark.parametrize("steps, outcome, code, cause", [
    # OPTIONS for an unknown domain: the proxy's own 404
    ([(1, request("OPTIONS", "sip:pbx.customer.example"), DEVICE, PROXY),
      (1.01, response(404, "Not Found", "OPTIONS"), PROXY, DEVICE)], "answered_by_proxy", 404, "unknown_domain"),
    # to the proxy's own address with a number no trunk rule matches
    ([(1, request("INVITE", "sip:0510000099@192.0.2.1"), DEVICE, PROXY),
      (1.01, response(404, "Not Found"), PROXY, DEVICE)], "answered_by_proxy", 404, "no_route"),
    ([(1, request("INVITE", "sip:192.0.2.1"), DEVICE, PROXY),
      (1.01, response(484, "Address Incomplete"), PROXY, DEVICE)], "answered_by_proxy", 484, "no_user_part"),
    # relayed to Asterisk, which refuses it: relayed back
    ([(1, request("INVITE", "sip:0510000099@voice.example.org"), DEVICE, PROXY),
      (1.01, request("INVITE", "sip:0510000099@voice.example.org"), PROXY_VPN, ASTERISK),
      (1.02, response(403, "Forbidden", server="Asterisk PBX"), ASTERISK, PROXY_VPN),
      (1.03, response(403, "Forbidden", server="Asterisk PBX"), PROXY, DEVICE)], "relayed_answered", 403,
     "asterisk_rejected"),
    ([(1, request("INVITE", "sip:0510000099@voice.example.org"), DEVICE, PROXY),
      (1.01, request("INVITE", "sip:0510000099@voice.example.org"), PROXY_VPN, ASTERISK)], "relay_unanswered", None,
     "instance_down"),
    ([(1, request("INVITE", "sip:0510000099@voice.example.org"), DEVICE, PROXY),
      (1.01, request("INVITE", "sip:0510000099@voice.example.org"), PROXY_VPN, ASTERISK),
      (1.02, response(200, "OK", server="Asterisk PBX"), ASTERISK, PROXY_VPN),
      (1.03, response(200, "OK", server="Asterisk PBX"), PROXY, DEVICE)], "relayed_answered", 200, None),
    ([(1, request("INVITE", INVITE, ua="sipsak 0.9.8.1"), DEVICE, PROXY)], "dropped", None, "scanner_user_agent"),
    ([(1, request("MESSAGE", INVITE), DEVICE, PROXY)], "dropped", None, "method_not_relayed"),
])
def test_each_outcome_and_its_cause(steps, outcome, code, cause):
    ex, named = one(mirrored(*steps))
    assert (ex.outcome, ex.code) == (outcome, code)
    assert (named[0] if named else None) == cause
    if cause in ("no_route", "no_user_part", "scanner_user_agent", "method_not_relayed"):
        assert [f["action"] for f in named[2]] == ["add-port-forward"]


def test_the_ladder_shows_the_relay_and_who_answered():
    ex, _ = one(mirrored((1, request("INVITE", "sip:1@voice.example.org"), DEVICE, PROXY),
                         (1.01, request("INVITE", "sip:1@voice.example.org"), PROXY_VPN, ASTERISK),
                         (1.02, response(403, "Forbidden", server="Asterisk PBX"), ASTERISK, PROXY_VPN),
                         (1.03, response(403, "Forbidden", server="Asterisk PBX"), PROXY, DEVICE)))
    assert [(s["from"], s["to"], s["what"]) for s in ex.ladder] == [
        ("device", "proxy", "INVITE"), ("proxy", "instance", "INVITE"), ("instance", "proxy", "403 Forbidden"),
        ("proxy", "device", "403 Forbidden")]


def test_traffic_from_inside_is_not_diagnosed_and_problems_are_grouped():
    inside = mirrored((1, request("OPTIONS", "sip:192.0.2.1", call_id="k"), ("10.5.4.1", 20040), PROXY_VPN))
    assert diagnosis.exchanges(inside, CTX, 100) == []
    many = mirrored(*[(i, request("INVITE", INVITE, call_id=f"c{i}"), DEVICE, PROXY) for i in range(3)])
    [problem] = diagnosis.problems(diagnosis.exchanges(many, CTX, 100), CTX)
    assert (problem.cause, problem.count) == ("unknown_domain", 3)
    assert "0510000099" not in str(problem.to_json())  # privacy: the user part is masked


FORWARD = entry(source="192.0.2.11", rule="r")
CTX_FWD = diagnosis.Context(**{**CTX.__dict__, "forwards": (FORWARD,)})


def test_a_provider_that_moved_gets_its_forward_moved():
    found = diagnosis.exchanges(mirrored((1, request("INVITE", INVITE), DEVICE, PROXY)), CTX_FWD, 100)
    problems, _ = capture_problems([Seen(1, "192.0.2.10", 5060, "192.0.2.1", 5060, "udp")], found,
                                   {"192.0.2.10": "udp"}, CTX_FWD)
    [moved] = [p for p in problems if p.cause == "provider_moved"]
    assert [(f["action"], f["data"]) for f in moved.fixes] == [
        ("add-port-forward", {"source": "192.0.2.10", "protocol": "udp", "instance": "nethvoice1",
                              "description": ""}),
        ("remove-port-forward", {"id": FORWARD.id})]


def test_what_the_capture_sees_past_the_proxy():
    seen = [Seen(1, "192.0.2.11", 5060, "192.0.2.1", 5060, "udp"),       # forwarded: never in the mirror
            Seen(2, "192.0.2.12", 5060, "192.0.2.1", 5060, "udp"),       # not forwarded, not in the mirror
            Seen(3, "192.0.2.1", 0, "192.0.2.13", 0, "icmp", inbound=False, unreachable_port=5070, unreachable="port"),
            Seen(4, "192.0.2.14", 40000, "192.0.2.1", 5061, "tcp"),
            Seen(5, "192.0.2.1", 0, "192.0.2.15", 0, "icmp", inbound=False, unreachable_port=5061,
                 unreachable="prohibited")]
    problems, notes = capture_problems(seen, [], {}, CTX_FWD)
    assert sorted((p.cause, p.source) for p in problems) == [("closed_port", "192.0.2.13"),
                                                             ("not_reaching_proxy", "192.0.2.12"),
                                                             ("refused_by_firewall", "192.0.2.15")]
    assert [n["id"] for n in notes] == ["tls_unreadable"]
    assert [(s["source"], s["forwarded"]) for s in sources([], seen, CTX_FWD)] == [("192.0.2.11", 1)]
