"""The module's intent and audit trail, in its state dir (kept by backups).

`bypass.json` is what the module manages; `audit.jsonl` has one record per change.
A file lock serialises actions and event handlers; the intent is replaced atomically
(temp + rename). Audit records are appended under the lock in one write each, so they
never interleave; a record torn by a kill is fenced off by a newline before the next
one, and readers skip what does not parse. The trail is bounded: past AUDIT_MAX_BYTES
it moves to audit.1.jsonl (replacing the older one), and readers read only its tail.
"""

import contextlib
import datetime
import fcntl
import json
import os

INTENT_FILE = "bypass.json"
AUDIT_FILE = "audit.jsonl"
AUDIT_OLD_FILE = "audit.1.jsonl"
LOCK_FILE = "bypass.lock"
AUDIT_MAX_BYTES = 512 * 1024
TAIL_BLOCK = 64 * 1024


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def empty_intent():
    return {"version": 1, "forwards": {}}


class Store:
    def __init__(self, state_dir=None):
        self.dir = state_dir or os.environ.get("AGENT_STATE_DIR") or os.getcwd()
        self.intent_path = os.path.join(self.dir, INTENT_FILE)
        self.audit_path = os.path.join(self.dir, AUDIT_FILE)

    @contextlib.contextmanager
    def locked(self):
        with open(os.path.join(self.dir, LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self):
        try:
            with open(self.intent_path) as f:
                intent = json.load(f)
        except FileNotFoundError:
            return empty_intent()
        for key, value in empty_intent().items():
            intent.setdefault(key, value)
        return intent

    def save(self, intent):
        write_atomically(self.intent_path, json.dumps(intent, indent=2, sort_keys=True) + "\n")

    def audit(self, action, changes, before, after, **extra):
        """Append one record; the caller holds the lock."""
        record = {
            "time": now(),
            "task": os.environ.get("AGENT_TASK_ID", ""),
            "user": os.environ.get("AGENT_TASK_USER", ""),
            "action": action,
            "changes": changes,
            "before": before,
            "after": after,
            **extra,
        }
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(self.audit_path) + len(line) > AUDIT_MAX_BYTES:
                os.replace(self.audit_path, os.path.join(self.dir, AUDIT_OLD_FILE))
        fd = os.open(self.audit_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a record torn by a kill stays a line of its own
            while line:
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def read_json(self, name):
        """A JSON file of the state dir (e.g. the last self-check), None when absent."""
        try:
            with open(os.path.join(self.dir, name)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def write_file(self, name, text):
        """A file of the state dir replaced atomically (readable by the exporter)."""
        write_atomically(os.path.join(self.dir, name), text)

    def audit_tail(self, count=20):
        """The last `count` records that parse, newest last (no lock needed)."""
        records = []
        for name in (AUDIT_FILE, AUDIT_OLD_FILE):
            records = _tail_records(os.path.join(self.dir, name), count - len(records)) + records
            if len(records) >= count:
                break
        return records[-count:]


def write_atomically(path, text):
    """Replace a file whole: readers see the old or the new text, never a part (temp,
    fsync, rename), mode 0644."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _tail_records(path, count):
    """Records from the end of a JSON-lines file, reading only as much as needed."""
    if count <= 0:
        return []
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        size = min(end, TAIL_BLOCK)
        while True:
            f.seek(end - size)
            lines = f.read(size).split(b"\n")
            if size < end:
                lines = lines[1:]  # it may start in the middle of a record
            records = [r for r in map(_record, lines) if r is not None]
            if len(records) >= count or size == end:
                return records[-count:]
            size = min(end, size * 4)


def _record(line):
    try:
        record = json.loads(line)
    except ValueError:  # torn by a kill, or written by something else
        return None
    return record if isinstance(record, dict) else None
