# SPDX-License-Identifier: GPL-3.0-or-later
"""Conflicts: a field the module owns that now holds a value the platform is not known
to cause. The module never overwrites it on its own; the two ways out are inputs of
reconcile-bypass: `keep_theirs` releases the field, `put_ours_back` applies it again.
"""

from dataclasses import dataclass

RECONCILE = "reconcile-bypass"
KINDS = {  # kind: what happened, in words
    "forward_removed": "the forward's rule was removed from firewalld by someone else",
    "forward_removed_permanent": "the forward's rule was removed from the permanent configuration by someone "
                                 "else (it goes at the next firewalld reload)",
    "trunk_proxy_changed": "the trunk's outbound proxy was set by someone else",
    "nat_changed": "the FreePBX NAT setting was changed by someone else",
    "route_changed": "the proxy route was pointed elsewhere by someone else",
    "route_removed": "the proxy route was removed by someone else",
}


def forward_key(forward_id):
    return f"forward:{forward_id}"


def trunk_key(instance, trunk_id):
    return f"trunk:{instance}:{trunk_id}"


def nat_key(instance, setting):
    return f"nat:{instance}:{setting}"


def alias_key(instance, domain):
    return f"alias:{instance}:{domain}"


@dataclass(frozen=True)
class Conflict:
    key: str
    kind: str
    subject: str
    ours: object
    theirs: object
    instance: str = ""

    def message(self):
        where = f" of {self.instance}" if self.instance else ""
        return (f"{self.subject}{where}: {KINDS[self.kind]}; the module's value is {_text(self.ours)}, "
                f"now {_text(self.theirs)}")

    def ways_out(self):
        return {"keep_theirs": {"action": RECONCILE, "data": {"keep_theirs": [self.key]}},
                "put_ours_back": {"action": RECONCILE, "data": {"put_ours_back": [self.key]}}}

    def to_json(self):
        return {"key": self.key, "kind": self.kind, "subject": self.subject, "instance": self.instance,
                "ours": _plain(self.ours), "theirs": _plain(self.theirs), "message": self.message(),
                "ways_out": self.ways_out()}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _text(value):
    if value is None:
        return "absent"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "empty"
    return f"'{value}'" if value != "" else "empty"


@dataclass(frozen=True)
class Resolutions:
    """What the user chose for conflicts (by key): keep theirs, or put ours back."""

    keep_theirs: frozenset = frozenset()
    put_ours_back: frozenset = frozenset()

    def choice(self, key):
        if key in self.keep_theirs:
            return "keep_theirs"
        if key in self.put_ours_back:
            return "put_ours_back"
        return None


NONE = Resolutions()
