"""The audit trail survives torn and foreign lines, stays bounded, and is read by its tail."""

import json

import pytest
from nethvoice_bypass import store
from nethvoice_bypass.store import Store

pytestmark = pytest.mark.unit


def test_a_torn_last_line_is_skipped_and_fenced_off(tmp_path):
    s = Store(str(tmp_path))
    s.audit("add-port-forward", [{"op": "add_rule"}], {}, {"a": 1})
    with open(tmp_path / "audit.jsonl", "ab") as f:
        f.write(b'{"time": "2026-12-01T00:00:00+00:00", "action": "remove-por')  # killed mid-append
    assert [r["action"] for r in s.audit_tail()] == ["add-port-forward"]
    s.audit("remove-port-forward", [], {"a": 1}, {})
    assert [r["action"] for r in s.audit_tail()] == ["add-port-forward", "remove-port-forward"]
    assert (tmp_path / "audit.jsonl").read_bytes().count(b"\n") == 3  # the torn line kept, on its own


def test_garbage_lines_are_skipped(tmp_path):
    s = Store(str(tmp_path))
    s.audit("one", [], {}, {})
    with open(tmp_path / "audit.jsonl", "a") as f:
        f.write("not json at all\n[1, 2]\n\n")
    s.audit("two", [], {}, {})
    assert [r["action"] for r in s.audit_tail()] == ["one", "two"]


def test_the_trail_is_bounded_and_the_tail_spans_the_rotation(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "AUDIT_MAX_BYTES", 4096)
    s = Store(str(tmp_path))
    for i in range(200):
        s.audit(f"a{i}", [], {"pad": "x" * 100}, {})
    assert (tmp_path / "audit.jsonl").stat().st_size <= 4096
    assert (tmp_path / "audit.1.jsonl").stat().st_size <= 4096
    tail = [r["action"] for r in s.audit_tail(40)]  # what both files still hold, newest last
    assert len(tail) > 4096 // 300 and tail == [f"a{i}" for i in range(200 - len(tail), 200)]


def test_the_tail_of_a_large_trail_reads_only_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "TAIL_BLOCK", 1024)
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps({"action": f"a{i}", "pad": "y" * 300}) + "\n" for i in range(100)))
    reads = []
    real_open = open

    def counting_open(*args, **kwargs):
        f = real_open(*args, **kwargs)
        read = f.read
        f.read = lambda n=-1: reads.append(n) or read(n)
        return f

    monkeypatch.setattr("builtins.open", counting_open)
    tail = Store(str(tmp_path)).audit_tail(5)
    assert [r["action"] for r in tail] == [f"a{i}" for i in range(95, 100)]
    assert sum(reads) < path.stat().st_size / 4
