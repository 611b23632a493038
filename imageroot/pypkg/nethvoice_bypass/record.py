# SPDX-License-Identifier: GPL-3.0-or-later
"""The record (`bypass.json`): what the module owns, typed, versioned and checked on load.

Like Kubernetes server-side apply's managed fields, each thing the module changed is
kept with what identifies it and what it was before the module touched it (absent is
a value: None). Undo gives that "before" back; a difference the platform is not known
to cause is a conflict, never overwritten. `from_json` is the record's schema: a
document that does not fit raises RecordDamaged naming the path.
"""

from dataclasses import dataclass, field, replace

from .changes import RuleChange
from .checked import document, mapping, text, texts, typed
from .errors import RecordDamaged, RecordTooNew

VERSION = 2
CONFIGS = ("runtime", "permanent")


# --- entries -------------------------------------------------------------------------

@dataclass(frozen=True)
class Presence:
    """Where a rule was before the module touched it (both False: the module created it)."""

    runtime: bool = False
    permanent: bool = False

    def __getitem__(self, config):
        return getattr(self, config)

    def to_json(self):
        return {"runtime": self.runtime, "permanent": self.permanent}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, CONFIGS)
        return cls(*(typed(doc[c], (bool,), f"{path}.{c}") for c in CONFIGS))


@dataclass(frozen=True)
class ForwardEntry:
    """One forward: the exact rule text the module holds in firewalld and whether the
    rule was there before (adopted) or made by the module (created)."""

    id: str
    instance: str
    family: str
    protocol: str
    port: int
    source: str | None
    zone: str
    rule: str
    before: Presence = Presence()
    suspended: bool = False  # its rules withdrawn while the instance is gone
    description: str = ""
    created: str = ""
    updated: str = ""

    @property
    def key(self):
        return self.id

    @property
    def origin(self):
        return "adopted" if self.before.runtime or self.before.permanent else "created"

    def to_json(self):
        return {"id": self.id, "instance": self.instance, "family": self.family, "protocol": self.protocol,
                "port": self.port, "source": self.source, "zone": self.zone, "rule": self.rule,
                "before": self.before.to_json(), "suspended": self.suspended, "description": self.description,
                "created": self.created, "updated": self.updated}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, ("id", "instance", "family", "protocol", "port", "source", "zone", "rule", "before",
                             "suspended", "description", "created", "updated"))
        texts_ = {k: text(doc, k, path) for k in ("id", "instance", "zone", "rule", "description", "created",
                                                   "updated")}
        if doc["family"] not in ("ipv4", "ipv6") or doc["protocol"] not in ("udp", "tcp"):
            raise RecordDamaged(path, "unknown family or protocol")
        return cls(family=doc["family"], protocol=doc["protocol"], port=typed(doc["port"], (int,), f"{path}.port"),
                   source=text(doc, "source", path, nullable=True),
                   before=Presence.from_json(doc["before"], f"{path}.before"),
                   suspended=typed(doc["suspended"], (bool,), f"{path}.suspended"), **texts_)


@dataclass(frozen=True)
class TrunkEntry:
    """A trunk the module bypassed: identified by id, name and tech (NethVoice reuses
    the first free id), with its exact outbound_proxy before (None: no row)."""

    id: str
    name: str
    tech: str
    before: str | None
    since: str = ""

    @property
    def key(self):
        return self.id

    def to_json(self):
        return {"id": self.id, "name": self.name, "tech": self.tech, "before": self.before, "since": self.since}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, ("id", "name", "tech", "before", "since"))
        return cls(*(text(doc, k, path) for k in ("id", "name", "tech")),
                   before=text(doc, "before", path, nullable=True), since=text(doc, "since", path))


@dataclass(frozen=True)
class NatField:
    """One FreePBX NAT setting the module set: `ours` as the module means it (an
    address, a list of networks), `before` the exact stored text (None: no row)."""

    name: str
    ours: str | tuple
    before: str | None
    since: str = ""

    @property
    def key(self):
        return self.name

    def to_json(self):
        ours = list(self.ours) if isinstance(self.ours, tuple) else self.ours
        return {"name": self.name, "ours": ours, "before": self.before, "since": self.since}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, ("name", "ours", "before", "since"))
        name = doc["name"]
        if name == "externip":
            ours = text(doc, "ours", path)
        elif name == "localnets":
            ours = texts(doc["ours"], f"{path}.ours")
        else:
            raise RecordDamaged(f"{path}.name", f"unknown NAT setting {name!r}")
        return cls(name, ours, text(doc, "before", path, nullable=True), text(doc, "since", path))


@dataclass(frozen=True)
class AliasEntry:
    """A proxy route the module added: the exact URIs it wrote (a route that no longer
    holds them is someone else's)."""

    domain: str
    uris: tuple
    description: str
    since: str = ""

    @property
    def key(self):
        return self.domain

    def to_json(self):
        return {"domain": self.domain, "uris": list(self.uris), "description": self.description,
                "since": self.since}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, ("domain", "uris", "description", "since"))
        return cls(text(doc, "domain", path), texts(doc["uris"], f"{path}.uris"),
                   text(doc, "description", path), text(doc, "since", path))


@dataclass(frozen=True)
class Task:
    """Which task started a change that is not recorded as done yet."""

    action: str
    task: str
    since: str

    def to_json(self):
        return {"action": self.action, "task": self.task, "since": self.since}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, ("action", "task", "since"), optional=("changes",))
        return cls(*(text(doc, k, path) for k in ("action", "task", "since")))


@dataclass(frozen=True)
class PendingRules(Task):
    """Firewalld changes named before the first is made (undone if the step dies)."""

    changes: tuple = ()

    def to_json(self):
        return {**super().to_json(), "changes": [c.to_json() for c in self.changes]}

    @classmethod
    def from_json(cls, doc, path):
        task = Task.from_json(doc, path)
        if not isinstance(doc.get("changes"), list):
            raise RecordDamaged(f"{path}.changes", "not a list")
        try:
            changes = tuple(RuleChange.from_json(c) for c in doc["changes"])
        except (KeyError, TypeError, ValueError) as err:
            raise RecordDamaged(f"{path}.changes", f"not rule changes ({err})") from None
        return cls(task.action, task.task, task.since, changes)


@dataclass(frozen=True)
class InstanceRecord:
    """One NethVoice instance's bypass: trunks, NAT settings, domain aliases."""

    trunks: dict = field(default_factory=dict)      # id -> TrunkEntry
    nat: dict = field(default_factory=dict)         # "externip" | "localnets" -> NatField
    aliases: dict = field(default_factory=dict)     # domain -> AliasEntry
    pending: Task | None = None
    reload_pending: bool = False

    def owns_anything(self):
        return bool(self.trunks or self.nat or self.aliases)

    def settled(self):
        return replace(self, pending=None, reload_pending=False)

    def to_json(self):
        return {"trunks": {k: v.to_json() for k, v in sorted(self.trunks.items())},
                "nat": {k: v.to_json() for k, v in sorted(self.nat.items())},
                "domain_aliases": {k: v.to_json() for k, v in sorted(self.aliases.items())},
                "pending": self.pending.to_json() if self.pending else None,
                "reload_pending": self.reload_pending}

    @classmethod
    def from_json(cls, doc, path):
        document(doc, path, ("trunks", "nat", "domain_aliases", "pending", "reload_pending"))
        pending = doc["pending"]
        return cls(mapping(doc["trunks"], f"{path}.trunks", TrunkEntry.from_json),
                   mapping(doc["nat"], f"{path}.nat", NatField.from_json),
                   mapping(doc["domain_aliases"], f"{path}.domain_aliases", AliasEntry.from_json),
                   None if pending is None else Task.from_json(pending, f"{path}.pending"),
                   typed(doc["reload_pending"], (bool,), f"{path}.reload_pending"))


@dataclass(frozen=True)
class Record:
    forwards: dict = field(default_factory=dict)    # id -> ForwardEntry
    instances: dict = field(default_factory=dict)   # instance -> InstanceRecord
    pending: PendingRules | None = None

    def instance(self, name):
        return self.instances.get(name) or InstanceRecord()

    def with_instance(self, name, mine):
        instances = {k: v for k, v in self.instances.items() if k != name}
        if mine.owns_anything() or mine.pending or mine.reload_pending:
            instances[name] = mine
        return replace(self, instances=instances)

    def with_forwards(self, update=None, remove=()):
        forwards = {k: v for k, v in self.forwards.items() if k not in remove}
        forwards.update(update or {})
        return replace(self, forwards=forwards)

    def is_empty(self):
        return not self.forwards and not self.instances and not self.pending

    def to_json(self):
        return {"version": VERSION,
                "forwards": {k: v.to_json() for k, v in sorted(self.forwards.items())},
                "bypass": {k: v.to_json() for k, v in sorted(self.instances.items())},
                "pending": self.pending.to_json() if self.pending else None}

    @classmethod
    def from_json(cls, doc):
        if isinstance(doc, dict) and isinstance(doc.get("version"), int) and doc["version"] > VERSION:
            raise RecordTooNew(f"the record is version {doc['version']}, newer than this module's "
                               f"{VERSION}: update the module")
        document(doc, "", ("version", "forwards", "bypass", "pending"))
        if doc["version"] != VERSION:
            raise RecordDamaged("version", f"expected {VERSION}")
        pending = doc["pending"]
        return cls(mapping(doc["forwards"], "forwards", ForwardEntry.from_json),
                   mapping(doc["bypass"], "bypass", InstanceRecord.from_json, keyed=False),
                   None if pending is None else PendingRules.from_json(pending, "pending"))
