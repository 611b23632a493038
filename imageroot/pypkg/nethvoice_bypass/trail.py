# SPDX-License-Identifier: GPL-3.0-or-later
"""What an audit record holds, and how the trail rebuilds the record (pure).

An audit record keeps only what changed: `before` and `after` of each changed part of
the record, by path (`forwards/<id>`, `bypass/<instance>`, `pending`), null when the
part was absent. Replaying the `after`s from the last snapshot (written when the trail
rotates, and by the migration) gives the record back.
"""

from .record import Record, RecordDamaged

FORMAT = 2


def parts(record):
    """{path: JSON} of every part of a record."""
    out = {f"forwards/{k}": v.to_json() for k, v in record.forwards.items()}
    out.update({f"bypass/{k}": v.to_json() for k, v in record.instances.items()})
    if record.pending:
        out["pending"] = record.pending.to_json()
    return out


def diff(before, after):
    """(before, after) of the parts that differ: {path: JSON or None}."""
    old, new = parts(before), parts(after)
    changed = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
    return {p: old.get(p) for p in changed}, {p: new.get(p) for p in changed}


def entry(action, changes, before, after, **extra):
    """An audit record's content (the store adds who and when)."""
    old, new = diff(before, after)
    return {"action": action, "record_format": FORMAT, "changes": changes, "before": old, "after": new, **extra}


def apply_part(doc, path, value):
    """A record's JSON with one part set (None: removed)."""
    kind, _, key = path.partition("/")
    if kind == "pending":
        return {**doc, "pending": value}
    section = {"forwards": "forwards", "bypass": "bypass"}.get(kind)
    if section is None or not key:
        raise RecordDamaged(path, "not a part of the record")
    items = {k: v for k, v in doc[section].items() if k != key}
    if value is not None:
        items[key] = value
    return {**doc, section: items}


def rebuild(records):
    """The record the trail leads to, and how many records were replayed. Only records
    of this format count; a trail with none of them cannot rebuild anything."""
    ours = [r for r in records if r.get("record_format") == FORMAT]
    if not ours:
        raise RecordDamaged("audit trail", "no record of this module's format to rebuild from")
    start = max((i for i, r in enumerate(ours) if "snapshot" in r), default=None)
    doc = Record().to_json() if start is None else ours[start]["snapshot"]
    replayed = ours[start + 1:] if start is not None else ours
    for record in replayed:
        for path, value in sorted((record.get("after") or {}).items()):
            doc = apply_part(doc, path, value)
    return Record.from_json(doc), len(replayed)


def summary(record):
    """What a record owns, in a few words (for the rebuild and migration records)."""
    return {"forwards": sorted(record.forwards),
            "instances": {i: {"trunks": sorted(m.trunks), "nat": sorted(m.nat), "domain_aliases": sorted(m.aliases)}
                          for i, m in sorted(record.instances.items())}}

