# SPDX-License-Identifier: GPL-3.0-or-later
"""The module's state dir (kept by backups): the record, its audit trail, the lock.

`bypass.json` is the record (record.py says its shape); `audit.jsonl` has one line per
change with only what changed. Audit lines are appended under the lock in one write
each; a line torn by a kill is fenced off by a newline before the next, and readers
skip what does not parse. The trail is bounded by size and by count: it moves to
audit.1.jsonl (replacing the older one) and the new file starts with a snapshot of the
whole record, so the trail can always rebuild the record. The lock waits a bounded time
and then names the task that holds it.
"""

import contextlib
import datetime
import fcntl
import json
import os
import tempfile
import time

from .errors import Busy

RECORD_FILE = "bypass.json"
AUDIT_FILE = "audit.jsonl"
AUDIT_OLD_FILE = "audit.1.jsonl"
LOCK_FILE = "bypass.lock"
DAMAGED_PREFIX = RECORD_FILE + ".damaged-"
AUDIT_MAX_BYTES = 512 * 1024
AUDIT_MAX_RECORDS = 2000
TAIL_BLOCK = 64 * 1024
# A change can hold the lock through a FreePBX reload (minutes on a big site); a task
# that waits longer than this says who holds the module instead of queueing forever.
LOCK_TIMEOUT = float(os.environ.get("NETHVOICE_BYPASS_LOCK_TIMEOUT") or 120)


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class Store:
    def __init__(self, state_dir=None):
        self.dir = state_dir or os.environ.get("AGENT_STATE_DIR") or os.getcwd()
        self.record_path = os.path.join(self.dir, RECORD_FILE)
        self.audit_path = os.path.join(self.dir, AUDIT_FILE)

    def path(self, name):
        return os.path.join(self.dir, name)

    @contextlib.contextmanager
    def locked(self, timeout=None):
        """The state lock, waited for at most `timeout` seconds (Busy then names its holder)."""
        deadline = time.monotonic() + (LOCK_TIMEOUT if timeout is None else timeout)
        with open(self.path(LOCK_FILE), "a+") as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Busy(f"busy: {_holder(lock)} holds the module; try again when it ends") from None
                    time.sleep(0.05)
            try:
                lock.seek(0)
                lock.truncate()
                lock.write(json.dumps({"task": os.environ.get("AGENT_TASK_ID", ""), "since": now(),
                                       "action": os.environ.get("AGENT_TASK_ACTION", ""), "pid": os.getpid()}))
                lock.flush()
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- the record -------------------------------------------------------------------

    def read_record_text(self):
        """The record file's text, None when there is none."""
        try:
            with open(self.record_path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def save_record(self, document):
        write_atomically(self.record_path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    def restore_record_text(self, text):
        """Put the record file back as read_record_text() gave it (None: no file)."""
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.record_path)
        else:
            write_atomically(self.record_path, text)

    def set_aside(self, stamp):
        """Move a damaged record aside: bypass.json.damaged-<time>; returns its name."""
        name = DAMAGED_PREFIX + stamp.replace(":", "")
        os.replace(self.record_path, self.path(name))
        return name

    def damaged_files(self):
        return sorted(n for n in os.listdir(self.dir) if n.startswith(DAMAGED_PREFIX))

    # -- the audit trail --------------------------------------------------------------

    def audit(self, record, snapshot=None):
        """Append one record (the caller holds the lock). A trail that rotates starts
        its new file with `snapshot` (the whole record, as JSON) when given."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        if self._full(len(line)):
            os.replace(self.audit_path, self.path(AUDIT_OLD_FILE))
            if snapshot is not None:
                self._append((json.dumps({"time": now(), "action": "snapshot", "record_format": 2,
                                          "snapshot": snapshot}, sort_keys=True) + "\n").encode())
        self._append(line)
        return record

    def _full(self, adding):
        try:
            size = os.path.getsize(self.audit_path)
        except FileNotFoundError:
            return False
        if size + adding > AUDIT_MAX_BYTES:
            return True
        with open(self.audit_path, "rb") as f:
            return f.read().count(b"\n") >= AUDIT_MAX_RECORDS

    def _append(self, line):
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

    def audit_tail(self, count=20):
        """The last `count` records that parse, newest last (no lock needed)."""
        records = []
        for name in (AUDIT_FILE, AUDIT_OLD_FILE):
            records = _tail_records(self.path(name), count - len(records)) + records
            if len(records) >= count:
                break
        return records[-count:]

    def audit_all(self):
        """Every record of the trail that parses, oldest first (audit.1.jsonl, then audit.jsonl)."""
        records = []
        for name in (AUDIT_OLD_FILE, AUDIT_FILE):
            try:
                with open(self.path(name), "rb") as f:
                    records += [r for r in map(_record, f.read().split(b"\n")) if r is not None]
            except FileNotFoundError:
                continue
        return records

    # -- other state files ------------------------------------------------------------

    def read_json(self, name):
        """A JSON file of the state dir (e.g. the last self-check), None when absent."""
        try:
            with open(self.path(name)) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def write_file(self, name, text):
        """A file of the state dir replaced atomically (readable by the exporter)."""
        write_atomically(self.path(name), text)


def _holder(lock):
    lock.seek(0)
    try:
        holder = json.loads(lock.read() or "{}")
    except ValueError:
        holder = {}
    task = holder.get("task") or "-"
    action = holder.get("action") or "another task"
    return f"{action} (task {task}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')})"


def write_atomically(path, text, mode=0o644):
    """Replace a file whole (the core's safe_open way): a temporary file of its own in
    the same directory, the old file's mode kept, the file and then the directory
    synced; readers see the old or the new text, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
