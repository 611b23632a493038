"""The module's intent and audit trail, in its state dir (kept by backups).

`bypass.json` is what the module manages; `audit.jsonl` has one record per change.
A file lock serialises actions and event handlers; writes are atomic (temp + rename).
"""

import contextlib
import datetime
import fcntl
import json
import os

INTENT_FILE = "bypass.json"
AUDIT_FILE = "audit.jsonl"
LOCK_FILE = "bypass.lock"


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
        tmp = f"{self.intent_path}.tmp"
        with open(tmp, "w") as f:
            json.dump(intent, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.intent_path)

    def audit(self, action, changes, before, after, **extra):
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
        with open(self.audit_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def audit_tail(self, count=20):
        try:
            with open(self.audit_path) as f:
                lines = f.readlines()[-count:]
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]
