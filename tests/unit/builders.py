"""Builders shared by the unit tests: records, entries, worlds, the agent's error format."""

from nethvoice_bypass.bypass_plan import InstanceWorld
from nethvoice_bypass.model import ForwardRule
from nethvoice_bypass.record import ForwardEntry, Presence
from nethvoice_bypass.step import validation_error

NV = {"IMAGE_URL": "ghcr.io/nethesis/nethvoice:1.8.0", "ASTERISK_SIP_PORT": "20024",
      "ASTERISK_SIP_UDP_PORT": "20040", "PROXY_IP": "10.5.4.1", "PROXY_PORT": "5060",
      "NETHVOICE_HOST": "voice.example.org", "MODULE_ID": "nethvoice1"}
PROXY_ENV = {"IMAGE_URL": "ghcr.io/nethesis/nethvoice-proxy:1.7.1", "LOCALNETWORKS": "192.0.2.0/24",
             "SERVICE_IP": "10.5.4.1"}
PROXY_VALUE = "sip:10.5.4.1:5060;lr"
RULE = ForwardRule("ipv4", "udp", 5060, 20040, "192.0.2.10").to_rich_rule()
OLD_RULE = ForwardRule("ipv4", "udp", 5060, 20024, "192.0.2.10").to_rich_rule()


def agent_format(problems):
    """The core's problems as the step layer reports them."""
    return [validation_error(p["field"], p["reason"], p["value"]) for p in problems]


def entry(**kw):
    base = {"id": "udp-ipv4-5060-192.0.2.10", "instance": "nethvoice1", "family": "ipv4", "protocol": "udp",
            "port": 5060, "source": "192.0.2.10", "zone": "public", "rule": RULE}
    if isinstance(kw.get("before"), tuple):
        kw["before"] = Presence(*kw["before"])
    return ForwardEntry(**{**base, **kw})


def observed(*both, runtime=(), permanent=()):
    """{zone: {config: rules}}: rules in both configurations, or in one."""
    return {"public": {"runtime": {*both, *runtime}, "permanent": {*both, *permanent}}}


def trunk(tid, name, proxy=PROXY_VALUE, tech="pjsip", registration="send"):
    return {"id": str(tid), "name": name, "tech": tech, "registration": registration, "outbound_proxy": proxy,
            "transport": "0.0.0.0-udp"}


TRUNKS = (trunk(1, "Telco-Main"), trunk(2, "Custom-Voip", proxy="sip:198.51.100.7:5060;lr"),
          trunk(3, "Mediant-SBC", proxy="", registration="none"), trunk(4, "No-Row", proxy=None))


def world(trunks=TRUNKS, nat=None, routes=None, nethvoice=NV, **kw):
    return InstanceWorld("nethvoice1", nethvoice, PROXY_ENV, "10.5.4.0/24", frozenset({"voice.example.org"}),
                         tuple(trunks), nat if nat is not None else {"externip": "", "localnets": None},
                         routes if routes is not None else {}, **kw)


def ops(changes):
    return [(c.op, getattr(c, "config", None)) for c in changes]
