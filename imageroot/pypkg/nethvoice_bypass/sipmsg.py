# SPDX-License-Identifier: GPL-3.0-or-later
"""payload bytes -> SipMessage | None: the start line and the headers a diagnosis reads.

Bodies are not parsed, and only the first of each header we need is kept (the top
Via is the first element of the first Via header). Compact forms and folded lines
are read as RFC 3261 (7.3.1, 7.3.3) allows. Garbage is None, never an exception,
and the work is one pass over the head: a 64 KiB message of 10,000 headers costs
what its length costs.

Privacy: the user part of a URI is a phone number or a name. to_json() gives only
derived fields with the user masked (`masked_user`), which is all a diagnosis keeps.
"""

import re
from dataclasses import dataclass

COMPACT = {"i": "call-id", "m": "contact", "l": "content-length", "f": "from", "t": "to", "v": "via"}
WANTED = {"via", "from", "to", "call-id", "cseq", "user-agent", "server", "contact", "x-forwarded-for",
          "content-length"}
TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
FOLD = re.compile(r"\r?\n[ \t]+")
QUOTED = re.compile(r'\s*"(?:[^"\\]|\\.)*"', re.S)
VIA = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9-]+)\s+([^;]*)(.*)", re.I | re.S)
RELATED = {"ACK": "INVITE", "CANCEL": "INVITE"}  # they share the INVITE's CSeq number
LIMIT = 2**31 - 1  # RFC 3261 8.1.1.5: a CSeq number fits in 32 bits


def masked_user(user):
    """'0512345601' -> '05****01': the two first and last characters, never the length."""
    if not user:
        return ""
    if len(user) <= 4:
        return "****"
    return f"{user[:2]}****{user[-2:]}"


def _number(text, limit):
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > limit:
        return None
    return int(text)


def _hostport(text):
    """'host[:port]' -> (host, port | None), IPv6 literals kept in brackets; None if malformed."""
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[:close + 1], text[close + 1:]
        if close < 2 or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    if not host:
        return None
    if port_text is None:
        return host, None
    port = _number(port_text, 65535)
    return None if port is None else (host, port)


@dataclass(frozen=True, slots=True)
class Uri:
    """`scheme:user@host:port;params`: the parts a diagnosis reads (never a password)."""

    scheme: str
    user: str
    host: str
    port: int | None

    @property
    def hostport(self):
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def to_json(self):
        return {"scheme": self.scheme, "user": masked_user(self.user), "host": self.host, "port": self.port}


def parse_uri(text):
    """'sip:0512345601@pbx.example.org:5060;user=phone' -> Uri | None."""
    scheme, colon, rest = text.strip().partition(":")
    if not colon or not SCHEME.fullmatch(scheme):
        return None
    scheme = scheme.lower()
    if scheme == "tel":
        return Uri(scheme, rest.partition(";")[0], "", None)
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        userinfo, hostpart = "", rest
    end = len(hostpart)
    for mark in ";?":
        found = hostpart.find(mark)
        if found >= 0:
            end = min(end, found)
    parsed = _hostport(hostpart[:end])
    if parsed is None:
        return None
    return Uri(scheme, userinfo.partition(":")[0], parsed[0], parsed[1])


@dataclass(frozen=True, slots=True)
class Address:
    """A From, To or Contact value: its URI and its tag (empty when it has none)."""

    uri: Uri
    tag: str


def parse_address(text):
    """'"Name" <sip:user@host>;tag=1' or 'sip:user@host;tag=1' -> Address | None."""
    quoted = QUOTED.match(text)
    if quoted is None and text.lstrip().startswith('"'):
        return None  # a display name whose quote is never closed
    rest = text[quoted.end():] if quoted else text
    lt = rest.find("<")
    if lt >= 0:
        gt = rest.find(">", lt)
        if gt < 0:
            return None
        uri_text, params = rest[lt + 1:gt], rest[gt + 1:]
    else:  # an addr-spec's parameters are the header's (RFC 3261 20.10)
        uri_text, _, params = rest.partition(";")
    uri = parse_uri(uri_text)
    if uri is None:
        return None
    tag = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "tag":
            tag = value.strip()
            break
    return Address(uri, tag)


@dataclass(frozen=True, slots=True)
class Via:
    """The top Via: transport, sent-by host and port, branch, and what the proxy adds
    for a peer behind NAT (`received`, `rport`: None when absent, '' for a bare rport)."""

    transport: str
    host: str
    port: int | None
    branch: str
    received: str | None
    rport: str | None


def parse_via(text):
    """'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport' (the first of a list) -> Via | None."""
    match = VIA.match(text.split(",", 1)[0])
    if not match:
        return None
    sent_by = _hostport("".join(match.group(2).split()))
    if sent_by is None:
        return None
    params = {}
    for param in match.group(3).split(";"):
        name, eq, value = param.partition("=")
        name = name.strip().lower()
        if name and name not in params:
            params[name] = value.strip() if eq else ""
    return Via(match.group(1).upper(), sent_by[0], sent_by[1], params.get("branch", ""), params.get("received"),
               params.get("rport"))


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str


def parse_cseq(text):
    """'101 INVITE' -> CSeq | None."""
    parts = text.split()
    if len(parts) != 2 or not TOKEN.fullmatch(parts[1]):
        return None
    number = _number(parts[0], LIMIT)
    return None if number is None else CSeq(number, parts[1])  # methods are case-sensitive (RFC 3261 7.1)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A request (`method`, `request_uri`) or a response (`status`, `reason`) and the
    headers we read: text ones '' when absent, parsed ones None.

    Via, From, To and Contact are kept as their header's text and parsed when asked
    (`via`, `from_addr`, `to_addr`, `contact`): an analysis reads them for few messages,
    and tens of thousands of messages parse in half the time and memory without them."""

    method: str | None
    request_uri: Uri | None
    status: int | None
    reason: str
    call_id: str
    cseq: CSeq | None
    user_agent: str
    server: str
    x_forwarded_for: str
    content_length: int | None
    via_header: str
    from_header: str
    to_header: str
    contact_header: str

    @property
    def via(self):
        return parse_via(self.via_header)

    @property
    def from_addr(self):
        return parse_address(self.from_header)

    @property
    def to_addr(self):
        return parse_address(self.to_header)

    @property
    def contact(self):
        contact = parse_address(self.contact_header)
        return contact.uri if contact else None

    @property
    def is_request(self):
        return self.method is not None

    @property
    def transaction_key(self):
        """(Call-ID, CSeq number, method) with ACK and CANCEL as INVITE, so they and their
        replies fall with the INVITE they belong to; None without Call-ID or CSeq. Not the
        Via branch: the proxy's topology hiding rewrites Via on the relayed copies."""
        if not self.call_id or self.cseq is None:
            return None
        return self.call_id, self.cseq.number, RELATED.get(self.cseq.method, self.cseq.method)

    def to_json(self):
        """The derived fields a diagnosis may keep: the user part of the Request-URI masked,
        no From, To, Contact or Call-ID."""
        out = {"method": self.method, "status": self.status, "reason": self.reason,
               "cseq_method": self.cseq.method if self.cseq else None}
        if self.request_uri:
            out["request_uri"] = self.request_uri.to_json()
        return out


def _head(payload):
    """The start line and headers as text: up to the first empty line, if any."""
    payload = payload.lstrip(b"\r\n")  # CRLFs before the start line are keep-alives (RFC 3261 7.5)
    ends = [at for at in (payload.find(b"\n\r\n"), payload.find(b"\n\n")) if at >= 0]
    head = payload[:min(ends)] if ends else payload
    text = head.decode("utf-8", "replace")
    if "\n " in text or "\n\t" in text:
        text = FOLD.sub(" ", text)
    return text


def _start_line(line):
    """(method, uri, status, reason), or None if it is no SIP/2.0 start line."""
    if line[:8].upper() == "SIP/2.0 ":
        code, _, reason = line[8:].partition(" ")
        status = _number(code, 699) if len(code) == 3 else None
        return None if status is None or status < 100 else (None, None, status, reason.strip())
    method, _, rest = line.partition(" ")
    uri_text, _, version = rest.rpartition(" ")
    if version.strip().upper() != "SIP/2.0" or not TOKEN.fullmatch(method):
        return None
    uri = parse_uri(uri_text)
    return None if uri is None else (method, uri, None, "")


def parse(payload):
    """bytes -> SipMessage | None."""
    if not isinstance(payload, bytes):
        return None
    lines = _head(payload).split("\n")
    start = _start_line(lines[0].rstrip("\r"))
    if start is None:
        return None
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        name = COMPACT.get(name, name)
        if name in WANTED and name not in headers:
            headers[name] = value.strip()
    get = headers.get
    return SipMessage(
        *start, call_id=get("call-id", ""), cseq=parse_cseq(get("cseq", "")), user_agent=get("user-agent", ""),
        server=get("server", ""), x_forwarded_for=get("x-forwarded-for", ""),
        content_length=_number(get("content-length", ""), LIMIT), via_header=get("via", ""),
        from_header=get("from", ""), to_header=get("to", ""), contact_header=get("contact", ""))
