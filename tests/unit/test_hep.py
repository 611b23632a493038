"""HEP frames as the proxy's Kamailio writes them, read back; anything else is None, never an exception."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nethvoice_bypass import hep

pytestmark = pytest.mark.unit

# Recorded from Debian's Kamailio 5.6.3 with the proxy's siptrace settings (trace_mode 1,
# duplicate_uri sip:127.0.0.1:35065, hep_mode_on 1, hep_version 2 or 3, hep_capture_id 1),
# answering every request with a 404 on udp and tcp, IPv4 and IPv6, and tls (kamailio-tls-modules):
# the frame's header in hex, then its SIP message.
OPTIONS_V4_UDP = (
    "021002119c4088f47f0000017f00000102ef0f6b5eb70b0001000000",
    b"OPTIONS sip:0512345601@127.0.0.1:35060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKtestUDP\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:0512345601@127.0.0.1>\r\nCall-ID: hepcheck-UDP-127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
REPLY_V6_TCP = (
    "02280a0688f49c40000000000000000000000000000000010000000000000000000000000000000103ef0f6bb20e010001000000",
    b"SIP/2.0 404 Not here\r\nVia: SIP/2.0/TCP [::1]:40000;branch=z9hG4bKtestTCP\r\nFrom: <sip:probe@[::1]>;tag=1\r\n"
    b"To: <sip:0512345601@[::1]>;tag=b9dcc20e5ffba37e2b03af6a7ee57ad3.661a5ec9\r\nCall-ID: hepcheck-TCP-::1\r\n"
    b"CSeq: 1 OPTIONS\r\nServer: kamailio (5.6.3 (x86_64/linux))\r\nContent-Length: 0\r\n\r\n")
OPTIONS_V4_TLS = (
    "02100216a44a88f57f0000017f00000128ef0f6b60090e0001000000",
    b"OPTIONS sip:0512345601@127.0.0.1:35061 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:40001;branch=z9hG4bKtls\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:0512345601@127.0.0.1>\r\nCall-ID: hepcheck-tls\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
OPTIONS_V6_UDP_HEP3 = (
    "4845503301690000000100070a0000000200071100000005001600000000000000000000000000000001000000060016000000"
    "000000000000000000000000010000000700089c4000000008000888f400000009000a6b0fef330000000a000a0008471f0000"
    "000b0007010000000c000a000000010000000f00f4",
    b"OPTIONS sip:0512345601@[::1]:35060 SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:40000;branch=z9hG4bKtestUDP\r\n"
    b"From: <sip:probe@[::1]>;tag=1\r\nTo: <sip:0512345601@[::1]>\r\nCall-ID: hepcheck-UDP-::1\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def frame(recorded):
    header, payload = recorded
    return bytes.fromhex(header) + payload


def test_a_request_kamailio_received_over_udp_ipv4():
    message = hep.parse(frame(OPTIONS_V4_UDP))
    assert message == hep.HepMessage(time=1796206338.767838, src=("127.0.0.1", 40000), dst=("127.0.0.1", 35060),
                                     transport="udp", family="ipv4", capture_id=1, payload=OPTIONS_V4_UDP[1],
                                     version=2)


def test_a_reply_kamailio_sent_over_tcp_ipv6():
    message = hep.parse(frame(REPLY_V6_TCP))
    assert (message.src, message.dst, message.transport, message.family) == (
        ("::1", 35060), ("::1", 40000), "tcp", "ipv6")
    assert message.payload == REPLY_V6_TCP[1]


def test_tls_is_its_own_proto_in_the_mirror_and_arrives_decrypted():
    # pipport2su gives "tls:" IPPROTO_IDP (22), not TCP; sipcapture reads 22 back as TLS
    message = hep.parse(frame(OPTIONS_V4_TLS))
    assert bytes.fromhex(OPTIONS_V4_TLS[0])[3] == 22
    assert message.transport == "tls" and message.payload.startswith(b"OPTIONS sip:")


def test_a_hep3_frame_kamailio_wrote():
    message = hep.parse(frame(OPTIONS_V6_UDP_HEP3))
    assert message == hep.HepMessage(time=1796206387.542495, src=("::1", 40000), dst=("::1", 35060),
                                     transport="udp", family="ipv6", capture_id=1, payload=OPTIONS_V6_UDP_HEP3[1],
                                     version=3)


@pytest.mark.parametrize("recorded", [OPTIONS_V4_UDP, REPLY_V6_TCP, OPTIONS_V4_TLS])
def test_encode_v2_writes_what_kamailio_writes(recorded):
    kamailio = frame(recorded)
    message = hep.parse(kamailio)
    ours = hep.encode_v2(message.payload, src=message.src, dst=message.dst, transport=message.transport,
                         time=message.time, capture_id=message.capture_id)
    assert ours == kamailio


def test_encode_v3_writes_what_kamailio_writes():
    kamailio = frame(OPTIONS_V6_UDP_HEP3)
    message = hep.parse(kamailio)
    assert hep.encode_v3(message.payload, src=message.src, dst=message.dst, time=message.time) == kamailio


def test_the_time_block_is_little_endian_and_its_padding_is_not_read():
    header = bytearray(bytes.fromhex(OPTIONS_V4_UDP[0]))
    header[-2:] = b"\xde\xad"  # struct padding copied from Kamailio's stack
    assert hep.parse(bytes(header) + OPTIONS_V4_UDP[1]) == hep.parse(frame(OPTIONS_V4_UDP))
    assert struct.unpack_from("<IIH", header, 16) == (1796206338, 767838, 1)


def test_to_json_leaves_the_sip_text_out():
    doc = hep.parse(frame(OPTIONS_V4_UDP)).to_json()
    assert doc == {"time": 1796206338.767838, "src": ["127.0.0.1", 40000], "dst": ["127.0.0.1", 35060],
                   "transport": "udp", "family": "ipv4", "capture_id": 1, "version": 2,
                   "payload_bytes": len(OPTIONS_V4_UDP[1])}


def changed(recorded, at, value):
    header = bytearray(bytes.fromhex(recorded[0]))
    header[at] = value
    return bytes(header) + recorded[1]


@pytest.mark.parametrize("bad", [
    b"", b"\x02", frame(OPTIONS_V4_UDP)[:27], frame(OPTIONS_V4_UDP)[:28],  # truncated: header only, no SIP
    frame(REPLY_V6_TCP)[:40],
    changed(OPTIONS_V4_UDP, 0, 1),  # HEPv1 has no time block
    changed(OPTIONS_V4_UDP, 1, 40),  # length does not fit the family
    changed(OPTIONS_V4_UDP, 2, 7),  # no such family
    changed(OPTIONS_V4_UDP, 3, 1),  # ICMP is no SIP transport
    changed(OPTIONS_V4_UDP, 23, 0xff),  # microseconds past a second
    b"HEP3", b"HEP3\x00\x06", frame(OPTIONS_V6_UDP_HEP3)[:-1],  # chunks that do not add up
    hep.encode_v3(b"", src=("192.0.2.1", 5060), dst=("192.0.2.2", 5060)),  # no payload
    b"\x16\x03\x01\x00\xa5",  # a TLS handshake
    OPTIONS_V4_UDP[1],  # plain SIP, not HEP
    "021002",  # not bytes
], ids=repr)
def test_foreign_or_broken_frames_are_none(bad):
    assert hep.parse(bad) is None


def test_a_hep3_frame_that_is_not_sip_is_none():
    sip = hep.encode_v3(b"x", src=("192.0.2.1", 5060), dst=("192.0.2.2", 5060))
    rtcp = sip.replace(bytes.fromhex("000b00070" + "1"), bytes.fromhex("000b00070" + "5"))
    assert hep.parse(sip) is not None and hep.parse(rtcp) is None


def test_hep3_reads_chunks_in_any_order_and_skips_other_vendors():
    frame3 = hep.encode_v3(b"OPTIONS", src=("192.0.2.1", 5060), dst=("192.0.2.2", 5061), time=12.5)
    chunks, pos = [], 6
    while pos < len(frame3):
        length = int.from_bytes(frame3[pos + 4:pos + 6], "big")
        chunks.append(frame3[pos:pos + length])
        pos += length
    vendor = b"\x00\x21\x00\x01\x00\x07\x99"  # a vendor's own chunk type 1
    body = vendor + b"".join(reversed(chunks))
    shuffled = b"HEP3" + (6 + len(body)).to_bytes(2, "big") + body
    assert hep.parse(shuffled) == hep.parse(frame3)


def test_encoding_refuses_mixed_families():
    with pytest.raises(ValueError):
        hep.encode_v2(b"x", src=("192.0.2.1", 5060), dst=("2001:db8::1", 5060))


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(family=st.sampled_from([4, 6]), data=st.data(), transport=st.sampled_from(["udp", "tcp", "tls", "sctp"]),
       sec=st.integers(0, 2**32 - 1), usec=st.integers(0, 999_999), capture_id=st.integers(0, 65535),
       payload=st.binary(min_size=1, max_size=2000), ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
       version=st.sampled_from([2, 3]))
def test_encode_then_parse_gives_the_message_back(family, data, transport, sec, usec, capture_id, payload, ports,
                                                  version):
    src, dst = (str(data.draw(st.ip_addresses(v=family))) for _ in range(2))
    encode = hep.encode_v2 if version == 2 else hep.encode_v3
    time = sec + usec / 1e6
    message = hep.parse(encode(payload, src=(src, ports[0]), dst=(dst, ports[1]), transport=transport, time=time,
                               capture_id=capture_id))
    assert message == hep.HepMessage(time, (src, ports[0]), (dst, ports[1]), transport, f"ipv{family}", capture_id,
                                     payload, version)


@given(st.binary(max_size=600))
def test_any_bytes_are_a_message_or_none(data):
    message = hep.parse(data)
    assert message is None or isinstance(message, hep.HepMessage)


@given(st.sampled_from([OPTIONS_V4_UDP, REPLY_V6_TCP, OPTIONS_V6_UDP_HEP3]), st.data())
def test_damaged_kamailio_frames_never_raise(recorded, data):
    original = bytearray(frame(recorded))
    cut = data.draw(st.integers(0, len(original)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=4))
    for at, value in flips:
        original[at] = value
    message = hep.parse(bytes(original[:cut]))
    assert message is None or isinstance(message, hep.HepMessage)
