"""SIP messages as they cross the proxy: start line and the headers a diagnosis reads; garbage is None."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nethvoice_bypass import sipmsg
from nethvoice_bypass.sipmsg import Address, CSeq, Uri, Via
from test_hep import REPLY_V6_TCP

pytestmark = pytest.mark.unit


def sip(*lines, body=b""):
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SDP = b"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 8\r\n"
# A trunk's INVITE as providers send it: compact forms, a folded User-Agent, an SDP body.
INVITE = sip(
    "INVITE sip:0512345601@pbx.example.org;user=phone SIP/2.0",
    "v: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1;rport",
    "Max-Forwards: 70",
    'f: "Sales; Rome <1>" <sip:+390612345678@trunk.example.net>;tag=as1f2e',
    "t: <sip:0512345601@pbx.example.org>",
    "i: 5f1c9a@203.0.113.10",
    "CSeq: 101 INVITE",
    "m: <sip:+390612345678@203.0.113.10:5060>",
    "User-Agent: Cirpack/v4.84",
    "  (gw1)",
    "c: application/sdp",
    f"l: {len(SDP)}",
    body=SDP)


def test_an_invite_with_compact_headers_folded_lines_and_a_body():
    message = sipmsg.parse(INVITE)
    assert message == sipmsg.SipMessage(
        method="INVITE", request_uri=Uri("sip", "0512345601", "pbx.example.org", None), status=None, reason="",
        call_id="5f1c9a@203.0.113.10", cseq=CSeq(101, "INVITE"), user_agent="Cirpack/v4.84 (gw1)", server="",
        x_forwarded_for="", content_length=len(SDP),
        via_header="SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1;rport",
        from_header='"Sales; Rome <1>" <sip:+390612345678@trunk.example.net>;tag=as1f2e',
        to_header="<sip:0512345601@pbx.example.org>", contact_header="<sip:+390612345678@203.0.113.10:5060>")
    assert message.is_request
    assert message.via == Via("UDP", "203.0.113.10", 5060, "z9hG4bK-524287-1", None, "")
    assert message.from_addr == Address(Uri("sip", "+390612345678", "trunk.example.net", None), "as1f2e")
    assert message.to_addr == Address(Uri("sip", "0512345601", "pbx.example.org", None), "")
    assert message.contact == Uri("sip", "+390612345678", "203.0.113.10", 5060)


def test_a_reply_kamailio_sent():
    message = sipmsg.parse(REPLY_V6_TCP[1])
    assert (message.status, message.reason, message.method, message.is_request) == (404, "Not here", None, False)
    assert message.via == Via("TCP", "[::1]", 40000, "z9hG4bKtestTCP", None, None)
    assert message.to_addr.tag == "b9dcc20e5ffba37e2b03af6a7ee57ad3.661a5ec9"
    assert message.server == "kamailio (5.6.3 (x86_64/linux))"
    assert message.transaction_key == ("hepcheck-TCP-::1", 1, "OPTIONS")


def test_the_proxy_relayed_copy_names_the_source_and_the_received_address():
    message = sipmsg.parse(sip(
        "INVITE sip:0512345601@127.0.0.1:20107 SIP/2.0",
        "Via: SIP/2.0/UDP 10.5.4.1:5060;branch=z9hG4bK5e6f.0, SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-1;"
        "received=198.51.100.7;rport=40312",
        "Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKlater",
        "X-Forwarded-For: 198.51.100.7", "Call-ID: a", "CSeq: 1 INVITE"))
    assert message.via == Via("UDP", "10.5.4.1", 5060, "z9hG4bK5e6f.0", None, None)
    assert message.x_forwarded_for == "198.51.100.7"
    nat = sipmsg.parse_via("SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-1;received=198.51.100.7;rport=40312")
    assert (nat.received, nat.rport) == ("198.51.100.7", "40312")


@pytest.mark.parametrize("text, uri", [
    ("sip:0512345601@[2001:db8::1]:5061;transport=tls", Uri("sip", "0512345601", "[2001:db8::1]", 5061)),
    ("sip:[2001:db8::1]", Uri("sip", "", "[2001:db8::1]", None)),
    ("SIPS:alice@Example.ORG", Uri("sips", "alice", "Example.ORG", None)),
    ("sip:alice:secret@example.org:5080", Uri("sip", "alice", "example.org", 5080)),
    ("sip:+39061234;npdi;rn=+39@example.org;user=phone", Uri("sip", "+39061234;npdi;rn=+39", "example.org", None)),
    ("sip:pbx.example.org:5060", Uri("sip", "", "pbx.example.org", 5060)),
    ("sip:alice@example.org?Subject=hi", Uri("sip", "alice", "example.org", None)),
    ("tel:+390612345678;phone-context=+39", Uri("tel", "+390612345678", "", None)),
])
def test_request_uris(text, uri):
    assert sipmsg.parse_uri(text) == uri


@pytest.mark.parametrize("text", ["", "example.org", "sip:", "sip:alice@", "sip:[2001:db8::1", "sip:[]:5060",
                                  "sip:host:port", "sip:host:99999", "sip:host:５０６０", "sip:[::1]x", "1sip:a@b"])
def test_uris_that_are_not(text):
    assert sipmsg.parse_uri(text) is None


@pytest.mark.parametrize("text, address", [
    ('"A \\"quoted\\" <name>; x" <sip:a@b>;tag=7', Address(Uri("sip", "a", "b", None), "7")),
    ("sip:a@b;tag=8;other=1", Address(Uri("sip", "a", "b", None), "8")),
    ("Bob <sip:bob@b:5070;transport=tcp>;  TAG = 9 ", Address(Uri("sip", "bob", "b", 5070), "9")),
    ("<sip:a@b>", Address(Uri("sip", "a", "b", None), "")),
])
def test_from_and_to(text, address):
    assert sipmsg.parse_address(text) == address


def test_via_written_loosely_and_on_ipv6():
    assert sipmsg.parse_via("SIP / 2.0 / tcp  [2001:db8::5] : 5062 ; branch = z9hG4bKx") == Via(
        "TCP", "[2001:db8::5]", 5062, "z9hG4bKx", None, None)
    assert sipmsg.parse_via("SIP/3.0/UDP a") is None


def test_line_feeds_alone_leading_keepalives_and_header_case():
    message = sipmsg.parse(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\ncall-id: x\ncseq:  7   OPTIONS\nUSER-AGENT:  friendly-scanner\n\n")
    assert (message.call_id, message.cseq, message.user_agent) == ("x", CSeq(7, "OPTIONS"), "friendly-scanner")


def test_the_first_of_each_header_counts_and_the_body_is_not_read():
    message = sipmsg.parse(sip("BYE sip:a@b SIP/2.0", "Call-ID: first", "i: second", "CSeq: 2 BYE",
                               body=b"Call-ID: in the body\r\n"))
    assert message.call_id == "first"


def test_acks_and_cancels_fall_with_their_invite():
    def key(start, cseq):
        return sipmsg.parse(sip(start, "Call-ID: c1@x", f"CSeq: {cseq}")).transaction_key

    invite = key("INVITE sip:a@b SIP/2.0", "5 INVITE")
    assert invite == ("c1@x", 5, "INVITE")
    assert key("CANCEL sip:a@b SIP/2.0", "5 CANCEL") == invite
    assert key("ACK sip:a@b SIP/2.0", "5 ACK") == invite
    assert key("SIP/2.0 487 Request Terminated", "5 INVITE") == invite
    assert key("SIP/2.0 200 OK", "5 CANCEL") == invite
    assert key("BYE sip:a@b SIP/2.0", "6 BYE") == ("c1@x", 6, "BYE")
    assert sipmsg.parse(sip("BYE sip:a@b SIP/2.0", "CSeq: 6 BYE")).transaction_key is None


@pytest.mark.parametrize("user, masked", [("0512345601", "05****01"), ("+390612345678", "+3****78"),
                                          ("alice", "al****ce"), ("100", "****"), ("", "")])
def test_masked_user(user, masked):
    assert sipmsg.masked_user(user) == masked


def test_to_json_keeps_derived_fields_only():
    doc = sipmsg.parse(INVITE).to_json()
    assert doc == {"method": "INVITE", "status": None, "reason": "", "cseq_method": "INVITE",
                   "request_uri": {"scheme": "sip", "user": "05****01", "host": "pbx.example.org", "port": None}}
    assert "0512345601" not in str(doc) and "5f1c9a" not in str(doc)


@pytest.mark.parametrize("payload", [
    b"", b"\r\n\r\n", b"\x00\xff" * 40, b"HTTP/1.1 200 OK\r\n\r\n", b"OPTIONS sip:a@b\r\n\r\n",
    b"OPTIONS sip:a@b SIP/1.0\r\n\r\n", b"OPTIONS  SIP/2.0\r\n\r\n", b"OPT IONS sip:a@b SIP/2.0\r\n\r\n",
    b"SIP/2.0 2000 Too Long\r\n\r\n", b"SIP/2.0 099 Too Low\r\n\r\n", "OPTIONS sip:a@b SIP/2.0",
])
def test_what_is_not_sip_is_none(payload):
    assert sipmsg.parse(payload) is None


def test_broken_headers_leave_their_fields_empty():
    message = sipmsg.parse(sip("INVITE sip:a@b SIP/2.0", "CSeq: ١٢ INVITE", "Content-Length: 99999999999999",
                               "Via: garbage", "From: <sip:a@b", "To", "Call-ID"))
    assert (message.cseq, message.content_length, message.via, message.from_addr, message.call_id) == (
        None, None, None, None, "")


def test_ten_thousand_headers_in_64_kib_are_read_in_one_pass():
    filler = [f"x:{i % 10}" for i in range(10_000)]
    payload = sip("INVITE sip:a@b SIP/2.0", *filler, "Call-ID: last")
    assert len(payload) <= 65535
    assert sipmsg.parse(payload).call_id == "last"
    folded = sip("INVITE sip:a@b SIP/2.0", "Subject: x", *([" y"] * 15_000), "Call-ID: after")
    assert sipmsg.parse(folded).call_id == "after"
    quotes = sip("INVITE sip:a@b SIP/2.0", 'From: "' + "\\" * 30_000 + "<sip:a@b>", "Call-ID: q")
    assert sipmsg.parse(quotes).from_addr is None


@given(st.binary(max_size=2000))
def test_any_bytes_are_a_message_or_none(payload):
    message = sipmsg.parse(payload)
    assert message is None or isinstance(message, sipmsg.SipMessage)


pieces = st.sampled_from(["INVITE", "SIP/2.0", " ", ":", ";", "<", ">", '"', "\\", "@", "[", "]", "\r\n", "\n",
                          "\r\n ", "sip:", "tel:", "tag=", "branch=", "Via", "v", "f", "t", "i", "m", "l", "CSeq",
                          "1", "99999999999", "٣", "[::1]", "a", ",", "=", "\t", "\x00", "é"])


@given(st.lists(pieces, max_size=80))
def test_sip_shaped_garbage_never_raises(parts):
    text = "".join(parts)
    for payload in (text, "INVITE sip:a@b SIP/2.0\r\n" + text, "SIP/2.0 200 OK\r\nVia: " + text):
        message = sipmsg.parse(payload.encode())
        assert message is None or isinstance(message, sipmsg.SipMessage)
        if message is not None:
            message.to_json(), message.transaction_key
