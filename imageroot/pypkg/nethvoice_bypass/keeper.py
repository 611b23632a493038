# SPDX-License-Identifier: GPL-3.0-or-later
"""Keeps the record: loads it (migrating version 1, rebuilding a damaged one from the
audit trail), saves it with an audit record of only what changed.

A record that does not load is never the end: a reader (get-status) rebuilds it in
memory and names the damage; a change (under the lock) moves the damaged file aside as
bypass.json.damaged-<time>, rebuilds the record from the trail, says what it rebuilt
in the trail, and goes on. When the trail cannot rebuild it, the file stays where it
is and every change is refused in one line until it is restored.
"""

import json
import os
from dataclasses import dataclass

from . import record_v1, trail
from .errors import Failure
from .record import Record, RecordDamaged, RecordTooNew
from .step import SD_WARNING, log
from .store import now


@dataclass(frozen=True)
class Loaded:
    """A record as a reader gets it, with what was wrong with the file (None: nothing)."""

    record: Record
    damage: dict | None = None


def _parse(text):
    """(Record | None, version 1 document | None); raises RecordDamaged."""
    if text is None:
        return Record(), None
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise RecordDamaged("", f"not JSON ({err})") from None
    if isinstance(doc, dict) and doc.get("version") == 1:
        return None, doc
    return Record.from_json(doc), None


def load_for_view(store):
    """The record for reading (no lock): never raises for a damaged or old file."""
    try:
        record, v1 = _parse(store.read_record_text())
    except RecordTooNew as err:
        return Loaded(Record(), {"file": "bypass.json", "error": str(err), "rebuilt": False})
    except RecordDamaged as err:
        damage = {"file": "bypass.json", "error": str(err), "rebuilt": False}
        try:
            record, replayed = trail.rebuild(store.audit_all())
            return Loaded(record, dict(damage, rebuilt=True, replayed=replayed))
        except RecordDamaged as why:
            return Loaded(Record(), dict(damage, rebuild_error=str(why)))
    if v1 is not None:
        record, _ = record_v1.from_v1(v1, record_v1.Facts(), record_v1.trunk_befores(store.audit_all()))
    aside = store.damaged_files()
    return Loaded(record, {"file": aside[-1], "error": "set aside", "rebuilt": True} if aside else None)


def load_for_change(store, read_facts=None):
    """The record for a change; the caller holds the lock. read_facts() gives the
    migration's Facts for a version 1 record (assumptions only when None)."""
    text = store.read_record_text()
    try:
        record, v1 = _parse(text)
    except RecordTooNew as err:
        raise Failure(str(err)) from None
    except RecordDamaged as err:
        return _rebuild(store, str(err))
    if v1 is not None:
        record = migrate(store, v1, read_facts() if read_facts else record_v1.Facts())
    return record


def _rebuild(store, error):
    try:
        record, replayed = trail.rebuild(store.audit_all())
    except RecordDamaged as why:
        raise Failure(f"the record bypass.json is damaged ({error}) and the audit trail cannot rebuild it "
                      f"({why}): nothing was changed; restore bypass.json from a backup") from None
    name = store.set_aside(now())
    store.save_record(record.to_json())
    _audit(store, {"action": "rebuild", "record_format": trail.FORMAT, "damaged": name, "error": error,
                   "replayed": replayed, "snapshot": record.to_json(), "rebuilt": trail.summary(record)})
    log(f"the record was damaged ({error}): moved to {name} and rebuilt from {replayed} audit records",
        SD_WARNING)
    return record


def migrate(store, v1, facts):
    """A version 1 record into version 2, once, with an audit record of the migration."""
    record, assumed = record_v1.from_v1(v1, facts, record_v1.trunk_befores(store.audit_all()))
    store.save_record(record.to_json())
    _audit(store, {"action": "migrate", "record_format": trail.FORMAT, "from_version": 1,
                   "snapshot": record.to_json(), "assumed": assumed, "migrated": trail.summary(record)})
    log(f"record migrated from version 1: {len(record.forwards)} forwards, {len(record.instances)} instances")
    return record


def save(store, before, after, action, changes=(), **extra):
    """Write the record and, when it or the world changed, one audit record of what did."""
    store.save_record(after.to_json())
    if before != after or changes:
        _audit(store, trail.entry(action, [c.to_json() for c in changes], before, after, **extra),
               snapshot=after.to_json())
    return after


def _audit(store, content, snapshot=None):
    """One audit record; after a committed change its failure is a warning, not a failure."""
    record = {"time": now(), "task": os.environ.get("AGENT_TASK_ID", ""),
              "user": os.environ.get("AGENT_TASK_USER", ""), **content}
    try:
        store.audit(record, snapshot=snapshot)
    except OSError as err:
        log(f"the audit record of {content.get('action')} could not be written: {err}", SD_WARNING)
