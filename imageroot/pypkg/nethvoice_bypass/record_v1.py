# SPDX-License-Identifier: GPL-3.0-or-later
"""Version 1 of the record (written up to the ownership redesign) into version 2 (pure).

Version 1 kept trunks by id and name only, NAT "previous" values as the module meant
them, one URI per domain alias, and forward rules without their origin. Where the
world tells more (a trunk's tech, whether its outbound_proxy row exists, which
instances exist), the facts read at migration time fill it in; where nothing can know
a "before", the value the version 1 module assumed is kept, and said so:
- a forward's rule was created by the module (undo removes it);
- a trunk's outbound proxy before: the one its own trail recorded (bypass_trunk
  `before`; none for manage_trunk), else NethVoice's proxy value (what version 1 wrote
  back on undo);
- FreePBX's NAT before: the "previous" values, stored as version 1 wrote them back
  (an empty network list: no row).
"""

from dataclasses import dataclass, field

from .changes import RuleChange
from .record import (
    AliasEntry,
    ForwardEntry,
    InstanceRecord,
    NatField,
    PendingRules,
    Presence,
    Record,
    RecordDamaged,
    Task,
    TrunkEntry,
)
from .sipsettings import format_localnets


@dataclass(frozen=True)
class Facts:
    """What the world says at migration time. trunks: {instance: {id: trunk as
    freepbx.read_trunks gives it}} for the instances that could be read; proxy_values:
    {instance: NethVoice's outbound_proxy value}; instances: the NethVoice instances on
    the node; observed: firewalld's rules ({zone: {config: set}}), None if unreadable."""

    instances: frozenset = frozenset()
    trunks: dict = field(default_factory=dict)
    proxy_values: dict = field(default_factory=dict)
    observed: dict | None = None


def trunk_befores(audit_records):
    """{(instance, trunk id): outbound_proxy before} from a version 1 trail, the last
    word for each trunk: bypass_trunk's `before`, or "" for manage_trunk."""
    found = {}
    for record in audit_records:
        if record.get("record_format"):
            continue
        instance = record.get("instance", "")
        for change in record.get("changes") or []:
            if isinstance(change, dict) and change.get("op") == "bypass_trunk":
                found[(instance, str(change.get("trunk")))] = change.get("before")
            elif isinstance(change, dict) and change.get("op") == "manage_trunk":
                found[(instance, str(change.get("trunk")))] = ""
    return found


def from_v1(doc, facts, befores):
    """(version 2 Record, [assumptions made]). Raises RecordDamaged when `doc` is not
    a version 1 record."""
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise RecordDamaged("version", "not a version 1 record")
    assumed = []
    try:
        forwards = {fid: _forward(e, facts, assumed) for fid, e in (doc.get("forwards") or {}).items()}
        instances = {name: _instance(name, mine, facts, befores, assumed)
                     for name, mine in (doc.get("bypass") or {}).items()}
        pending = _pending(doc.get("pending"))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RecordDamaged("version 1 record", f"cannot be read ({type(err).__name__}: {err})") from None
    return Record(forwards, {k: v for k, v in instances.items() if v.owns_anything() or v.reload_pending},
                  pending), assumed


def _forward(e, facts, assumed):
    assumed.append(f"forward {e['id']}: created by the module")
    rules = (facts.observed or {}).get(e["zone"], {})
    absent = facts.observed is not None and not any(e["rule"] in r for r in rules.values())
    return ForwardEntry(id=e["id"], instance=e["instance"], family=e["family"], protocol=e["protocol"],
                        port=int(e["port"]), source=e.get("source"), zone=e["zone"], rule=e["rule"],
                        before=Presence(), suspended=absent and e["instance"] not in facts.instances,
                        description=e.get("description", ""), created=e.get("created", ""),
                        updated=e.get("updated", ""))


def _instance(name, mine, facts, befores, assumed):
    trunks = {}
    for tid, t in (mine.get("trunks") or {}).items():
        now = facts.trunks.get(name, {}).get(str(tid))
        if (name, str(tid)) in befores:
            before = befores[(name, str(tid))]
            if before == "" and now is not None and now.get("outbound_proxy") is None:
                before = None  # managed while proxy-less: no row then, no row now
        else:
            before = facts.proxy_values.get(name)
            assumed.append(f"trunk {t['name']} of {name}: outbound proxy before {before!r} (NethVoice's)")
        tech = now["tech"] if now and now.get("name") == t["name"] else "pjsip"
        trunks[str(tid)] = TrunkEntry(str(tid), t["name"], tech, before, t.get("since", ""))
    nat = {}
    if mine.get("nat"):
        v1 = mine["nat"]
        previous = v1.get("previous") or {}
        nat["externip"] = NatField("externip", v1["externip"], previous.get("externip", ""))
        nets = previous.get("localnets") or []
        nat["localnets"] = NatField("localnets", tuple(v1["localnets"]), format_localnets(nets) if nets else None)
        assumed.append(f"NAT of {name}: before as version 1 recorded it ({previous})")
    aliases = {d: AliasEntry(d, (a["uri"],), f"{name} via nethvoice-bypass")
               for d, a in (mine.get("domain_aliases") or {}).items()}
    pending = mine.get("pending")
    return InstanceRecord(trunks, nat, aliases,
                          Task(pending["action"], pending["task"], pending["since"]) if pending else None,
                          bool(mine.get("reload_pending")))


def _pending(pending):
    if not pending:
        return None
    return PendingRules(pending["action"], pending["task"], pending["since"],
                        tuple(RuleChange.from_json(c) for c in pending["changes"]))
