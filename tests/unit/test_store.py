"""The audit trail survives torn and foreign lines, stays bounded, and is read by its tail."""

import json

import pytest
from nethvoice_bypass import store
from nethvoice_bypass.store import Store

pytestmark = pytest.mark.unit


def test_a_torn_last_line_is_skipped_and_fenced_off(tmp_path):
    s = Store(str(tmp_path))
    s.audit({"action": "add-port-forward", "changes": [{"op": "add_rule"}]})
    with open(tmp_path / "audit.jsonl", "ab") as f:
        f.write(b'{"time": "2026-12-01T00:00:00+00:00", "action": "remove-por')  # killed mid-append
    assert [r["action"] for r in s.audit_tail()] == ["add-port-forward"]
    s.audit({"action": "remove-port-forward"})
    assert [r["action"] for r in s.audit_tail()] == ["add-port-forward", "remove-port-forward"]
    assert (tmp_path / "audit.jsonl").read_bytes().count(b"\n") == 3  # the torn line kept, on its own


def test_garbage_lines_are_skipped(tmp_path):
    s = Store(str(tmp_path))
    s.audit({"action": "one"})
    with open(tmp_path / "audit.jsonl", "a") as f:
        f.write("not json at all\n[1, 2]\n\n")
    s.audit({"action": "two"})
    assert [r["action"] for r in s.audit_tail()] == ["one", "two"]


def test_the_trail_is_bounded_and_the_tail_spans_the_rotation(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "AUDIT_MAX_BYTES", 4096)
    s = Store(str(tmp_path))
    for i in range(200):
        s.audit({"action": f"a{i}", "pad": "x" * 100})
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


def test_the_trail_rotates_by_count_too_and_starts_with_a_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "AUDIT_MAX_RECORDS", 10)
    s = Store(str(tmp_path))
    for i in range(25):
        s.audit({"action": f"a{i}"}, snapshot={"version": 2, "i": i})
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(lines) <= 10 and lines[0]["action"] == "snapshot" and f"a{lines[0]['snapshot']['i']}" == lines[1]["action"]
    assert [r["action"] for r in s.audit_all()][-1] == "a24"


def test_the_lock_is_bounded_and_names_its_holder(tmp_path, monkeypatch):
    import fcntl
    import os

    monkeypatch.setenv("AGENT_TASK_ID", "task-1")
    monkeypatch.setenv("AGENT_TASK_ACTION", "configure-bypass")
    s = Store(str(tmp_path))
    with s.locked():
        fd = os.open(tmp_path / "bypass.lock", os.O_RDONLY)  # another process's view
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        other = Store(str(tmp_path))
        pid = os.fork()
        if pid == 0:  # a second task: its own process, its own lock
            try:
                with other.locked(timeout=0.3):
                    os._exit(0)
            except store.Busy as err:
                os._exit(3 if "configure-bypass (task task-1" in str(err) else 4)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    with Store(str(tmp_path)).locked(timeout=0.3):
        pass  # free again once the holder is done


def test_atomic_writes_use_their_own_temporary_file_and_keep_the_mode(tmp_path):
    path = tmp_path / "environment"
    path.write_text("A=1\n")
    path.chmod(0o600)
    store.write_atomically(str(path), "A=2\n")
    assert path.read_text() == "A=2\n" and (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["environment"]  # no temporary file left
