# SPDX-License-Identifier: GPL-3.0-or-later
"""The planned changes: every op name, and one frozen shape per kind of change.

A plan is a list of these; `to_json()` gives the flat document the actions print
(`op`, `why`, and the subject's fields), the audit trail keeps and the page shows.
Record-only ops change what the module owns, not the world.
"""

from dataclasses import asdict, dataclass

# firewalld
ADD_RULE, REMOVE_RULE, FLUSH_CONNTRACK = "add_rule", "remove_rule", "flush_conntrack"
ADOPT_FORWARD, RELEASE_FORWARD, FOLLOW_RULE = "adopt_forward", "release_forward", "follow_rule"
# FreePBX
BYPASS_TRUNK, RESTORE_TRUNK, MANAGE_TRUNK, RELEASE_TRUNK = "bypass_trunk", "restore_trunk", "manage_trunk", \
    "release_trunk"
SET_EXTERNIP, SET_LOCALNETS, TAKE_NAT, RELEASE_NAT = "set_externip", "set_localnets", "take_nat", "release_nat"
# the proxy
ADD_ROUTE, REMOVE_ROUTE, TAKE_ROUTE, RELEASE_ROUTE = "add_route", "remove_route", "take_route", "release_route"

RULE_OPS = (ADD_RULE, REMOVE_RULE)
DB_OPS = (BYPASS_TRUNK, RESTORE_TRUNK, SET_EXTERNIP, SET_LOCALNETS)  # one transaction, then a reload
ROUTE_OPS = (ADD_ROUTE, REMOVE_ROUTE)
RECORD_OPS = (ADOPT_FORWARD, RELEASE_FORWARD, FOLLOW_RULE, MANAGE_TRUNK, RELEASE_TRUNK, TAKE_NAT, RELEASE_NAT,
              TAKE_ROUTE, RELEASE_ROUTE)
NAT_SET_OPS = {"externip": SET_EXTERNIP, "localnets": SET_LOCALNETS}


def _json(change):
    doc = asdict(change)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in doc.items()}


@dataclass(frozen=True)
class RuleChange:
    """One rich rule added to or removed from one configuration of a zone."""

    op: str
    forward: str
    zone: str
    config: str
    rule: str
    why: str = ""

    def to_json(self):
        return _json(self)

    @classmethod
    def from_json(cls, doc):
        if doc["op"] not in RULE_OPS:
            raise ValueError(f"not a rule change: {doc['op']!r}")
        return cls(doc["op"], doc["forward"], doc["zone"], doc["config"], doc["rule"], doc.get("why", ""))

    def inverse(self):
        return RuleChange(REMOVE_RULE if self.op == ADD_RULE else ADD_RULE, self.forward, self.zone, self.config,
                          self.rule, f"undo: {self.why}")


@dataclass(frozen=True)
class FlushChange:
    """Delete the conntrack entries of a forward's port and source: live flows follow the change."""

    forward: str
    protocol: str
    port: int
    family: str
    source: str | None
    why: str = "existing flows keep their old NAT binding until deleted"
    op: str = FLUSH_CONNTRACK

    def to_json(self):
        return _json(self)


@dataclass(frozen=True)
class ForwardNote:
    """A change of the record only: a rule adopted as it is, released, or followed where
    NethVoice moved it."""

    op: str
    forward: str
    rule: str
    why: str

    def to_json(self):
        return _json(self)


@dataclass(frozen=True)
class TrunkChange:
    """A trunk's outbound_proxy: `before` and `after` as stored (None: no row). Record-only
    ops (manage, release) carry what is there, unchanged."""

    op: str
    trunk: str
    name: str
    before: str | None
    after: str | None
    why: str = ""
    instance: str = ""

    def to_json(self):
        return _json(self)


@dataclass(frozen=True)
class NatChange:
    """A FreePBX NAT setting: `before`/`after` as the page shows them, `stored` the exact
    text written (None: the row is deleted, as it was absent before)."""

    op: str
    setting: str
    before: object
    after: object
    stored: str | None = None
    why: str = ""
    instance: str = ""

    def to_json(self):
        return _json(self)


@dataclass(frozen=True)
class RouteChange:
    """A proxy route: the URIs before (None: no route) and after (None: removed)."""

    op: str
    domain: str
    before: tuple | None
    after: tuple | None
    description: str = ""
    why: str = ""
    instance: str = ""

    def to_json(self):
        return _json(self)


def plan_json(changes):
    return [c.to_json() for c in changes]

