"""The record's shape (checked on load), its audit trail's diffs and rebuild, and the
migration of a record written by the version before the ownership redesign."""

import json
from pathlib import Path

import pytest
from builders import RULE, entry
from hypothesis import given
from hypothesis import strategies as st
from nethvoice_bypass import record_v1, trail
from nethvoice_bypass.changes import RuleChange
from nethvoice_bypass.record import (
    AliasEntry,
    InstanceRecord,
    NatField,
    PendingRules,
    Presence,
    Record,
    RecordDamaged,
    RecordTooNew,
    Task,
    TrunkEntry,
)

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "record-v1"


def full_record():
    mine = InstanceRecord(trunks={"2": TrunkEntry("2", "Custom-Voip", "pjsip", "sip:10.5.4.1:5060;lr", "T")},
                          nat={"externip": NatField("externip", "203.0.113.5", ""),
                               "localnets": NatField("localnets", ("10.5.4.0/24",), None)},
                          aliases={"pbx.example": AliasEntry("pbx.example", ("sip:10.5.4.1:20040",), "d")},
                          pending=Task("configure-bypass", "t1", "T"), reload_pending=True)
    pending = PendingRules("add-port-forward", "t2", "T", (RuleChange("add_rule", entry().id, "public", "runtime",
                                                                      RULE),))
    return Record({entry().id: entry(before=Presence(True, False))}, {"nethvoice1": mine}, pending)


def test_round_trip():
    record = full_record()
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert Record.from_json(Record().to_json()) == Record()


def damaged_variants(doc):
    """Ways a hand edit or a bad restore breaks a record."""
    yield "not an object", []
    yield "unknown key", dict(doc, extra=1)
    yield "missing key", {k: v for k, v in doc.items() if k != "forwards"}
    fwd = doc["forwards"][entry().id]
    yield "wrong type", dict(doc, forwards={entry().id: dict(fwd, port="5060")})
    yield "bool is not an int", dict(doc, forwards={entry().id: dict(fwd, port=True)})
    yield "keyed wrong", dict(doc, forwards={"other": fwd})
    yield "bad family", dict(doc, forwards={entry().id: dict(fwd, family="ipx")})
    inst = doc["bypass"]["nethvoice1"]
    yield "trunk without before", dict(doc, bypass={"nethvoice1": dict(inst, trunks={"2": {"id": "2"}})})
    yield "bad pending", dict(doc, pending={"action": "x", "task": "t", "since": "T", "changes": [{"op": "zap"}]})
    yield "old version number", dict(doc, version=0)


@pytest.mark.parametrize("name, doc", list(damaged_variants(full_record().to_json())))
def test_damage_is_named(name, doc):
    with pytest.raises(RecordDamaged):
        Record.from_json(doc)


def test_a_newer_record_is_not_damage():
    with pytest.raises(RecordTooNew):
        Record.from_json(dict(Record().to_json(), version=3))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=10)


@given(st.lists(st.tuples(st.sampled_from(["forwards", "bypass", "pending", "version"]), json_values), max_size=3))
def test_any_garbage_is_damage_never_a_crash(mutations):
    doc = full_record().to_json()
    for key, value in mutations:
        doc[key] = value
    try:
        Record.from_json(doc)
    except (RecordDamaged, RecordTooNew):
        pass


# --- the trail ------------------------------------------------------------------------------

def test_audit_records_hold_only_what_changed():
    before = full_record()
    after = before.with_forwards(update={"x": entry(id="x", rule="r")})
    record = trail.entry("add-port-forward", [], before, after)
    assert record["before"] == {"forwards/x": None} and list(record["after"]) == ["forwards/x"]


records = st.lists(st.sampled_from(["add", "remove", "instance", "drop-instance", "pending", "snapshot"]),
                   max_size=12)


@given(records)
def test_the_trail_rebuilds_the_record(steps):
    current, trail_records = Record(), []
    for i, step in enumerate(steps):
        if step == "add":
            after = current.with_forwards(update={f"f{i}": entry(id=f"f{i}")})
        elif step == "remove" and current.forwards:
            after = current.with_forwards(remove=[sorted(current.forwards)[0]])
        elif step == "instance":
            after = current.with_instance(f"nv{i % 2}", full_record().instances["nethvoice1"])
        elif step == "drop-instance":
            after = current.with_instance("nv0", InstanceRecord())
        elif step == "pending":
            after = Record(current.forwards, current.instances, full_record().pending)
        else:
            trail_records.append({"action": "snapshot", "record_format": 2, "snapshot": current.to_json()})
            continue
        trail_records.append(trail.entry(step, [], current, after))
        current = after
    if not trail_records:
        return
    rebuilt, _ = trail.rebuild([{"garbage": True}, *trail_records])
    assert rebuilt == current


def test_a_trail_without_this_format_cannot_rebuild():
    with pytest.raises(RecordDamaged):
        trail.rebuild([json.loads(line) for line in (FIXTURE / "audit.jsonl").read_text().splitlines()])


# --- version 1 ------------------------------------------------------------------------------

def v1():
    return json.loads((FIXTURE / "bypass.json").read_text())


def v1_trail():
    return [json.loads(line) for line in (FIXTURE / "audit.jsonl").read_text().splitlines()]


def test_version_1_migrates_with_its_own_trail_and_the_facts():
    world = json.loads((FIXTURE / "world.json").read_text())
    facts = record_v1.Facts(frozenset({"nethvoice1"}),
                            {"nethvoice1": {"2": {"id": "2", "name": "Custom-Voip", "tech": "pjsip",
                                                  "outbound_proxy": ""},
                                            "3": {"id": "3", "name": "Mediant-SBC", "tech": "pjsip",
                                                  "outbound_proxy": ""}}},
                            {"nethvoice1": "sip:10.5.4.1:5060;lr"},
                            {"public": {c: set(rules) for c, rules in world["rules"].items()}})
    record, assumed = record_v1.from_v1(v1(), facts, record_v1.trunk_befores(v1_trail()))
    assert sorted(record.forwards) == sorted(v1()["forwards"])
    assert all(e.origin == "created" and not e.suspended for e in record.forwards.values())
    mine = record.instances["nethvoice1"]
    # trunk 2 was bypassed from the proxy (its trail says so); 3 was managed while proxy-less
    assert mine.trunks["2"].before == "sip:10.5.4.1:5060;lr" and mine.trunks["3"].before == ""
    assert mine.nat["externip"] == NatField("externip", "203.0.113.5", "")
    assert mine.nat["localnets"].before is None  # version 1 gave back "no networks" by deleting the row
    assert mine.aliases["pbx.customer.example"].uris == ("sip:10.5.4.1:20024",)
    assert any("created by the module" in a for a in assumed)
    assert Record.from_json(record.to_json()) == record


def test_version_1_without_facts_keeps_what_version_1_assumed():
    record, assumed = record_v1.from_v1(v1(), record_v1.Facts(), {})
    assert record.instances["nethvoice1"].trunks["2"].before is None  # no NethVoice env known: absent
    assert any("outbound proxy before" in a for a in assumed)
    with pytest.raises(RecordDamaged):
        record_v1.from_v1({"version": 1, "forwards": {"x": {"id": "x"}}}, record_v1.Facts(), {})
