"""Changing firewalld for the forwards, crash-safe: apply a plan, undo it, and record
it in the intent (commit), or undo what a dead step left (recover).
"""

import os
import threading

from . import conntrack, systemd
from .errors import Refused, UndoFailed
from .firewalld import INPUT_ERRORS, FirewalldError
from .forward_plan import PERMANENT, RUNTIME, rule_changes
from .step import SD_WARNING, Cancelled, Failure, cancel_requested, checkpoint, log, stop_if_cancelled
from .store import now


def apply_changes(fw, changes):
    """Apply rule changes: the runtime ones first, then, while conntrack flushes the
    forwards' live flows, the permanent ones in one write per zone, then a look at
    runtime: a firewalld reload before the permanent write put back the previous
    configuration, so what it took away is done again (and flushed again). A reload
    after the permanent write loads it, so nothing is lost either way. On failure or
    cancel, what was done is undone and the error raised. Flushes never fail the action."""
    rules = rule_changes(changes)
    runtime = [c for c in rules if c["config"] == RUNTIME]
    flushes = [c for c in changes if c["op"] == "flush_conntrack"]
    done = []
    flushing = None
    try:
        apply_runtime(fw, runtime, done)
        flushing = background(conntrack.flush_many, flushes)
        for zone in sorted({c["zone"] for c in rules if c["config"] == PERMANENT}):
            ours = [c for c in rules if c["config"] == PERMANENT and c["zone"] == zone]
            fw.change_permanent_rules(zone, add=[c["rule"] for c in ours if c["op"] == "add_rule"],
                                      remove=[c["rule"] for c in ours if c["op"] == "remove_rule"])
            done += ours
            stop_if_cancelled("after_permanent")
        undone = undone_by_reload(fw, runtime)
        if undone:
            log(f"firewalld reloaded during the change: {len(undone)} runtime changes made again", SD_WARNING)
            apply_runtime(fw, undone, [])
            flushing.join()
            flushing = background(conntrack.flush_many, flushes)
    except Failure as err:
        if flushing:
            flushing.join()
        raise undo_after(fw, done, err) from err
    flushing.join()
    return [dict(result, forward=c["forward"]) for c, result in zip(flushes, flushing.result, strict=True)]


def apply_runtime(fw, changes, done):
    for change in changes:
        (fw.add_rich_rule if change["op"] == "add_rule" else fw.remove_rich_rule)(
            change["zone"], change["rule"], RUNTIME)
        done.append(change)
        stop_if_cancelled("after_runtime")


def undone_by_reload(fw, runtime):
    """The runtime changes no longer in effect."""
    now_in = {zone: fw.rich_rules(zone, RUNTIME) for zone in sorted({c["zone"] for c in runtime})}
    return [c for c in runtime if (c["rule"] in now_in[c["zone"]]) != (c["op"] == "add_rule")]


class background(threading.Thread):  # noqa: N801 - used like a function
    """fn(*args) in a thread; .result once joined."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.result = fn, args, None
        self.start()

    def run(self):
        self.result = self.fn(*self.args)


def undo_after(fw, done, err):
    """Undo what was done; the error to raise."""
    failures = undo(fw, done)
    if failures:
        return UndoFailed(f"{err}; undoing the changes already made failed too ({failures[0]}): the next "
                          "change or reconcile-bypass undoes them")
    if isinstance(err, Cancelled):
        return Cancelled(f"cancelled: the {len(done)} firewalld changes already made were undone")
    if isinstance(err, FirewalldError) and err.code in INPUT_ERRORS and not done:
        return Refused.one("(root)", "rejected_by_firewalld", f"{err.code}: {err.detail}")
    return Failure(f"{err}; the changes already made were undone")


def undo(fw, done, strict=False):
    """The inverse of done changes, in the same order of configurations. Each is
    idempotent, so undoing a change that was never made does nothing. Returns the
    failures (logged); strict: raises the first one, after trying everything."""
    failures = []
    for config in (PERMANENT, RUNTIME):
        for zone in sorted({c["zone"] for c in done if c["config"] == config}):
            ours = [c for c in done if c["config"] == config and c["zone"] == zone]
            added = [c["rule"] for c in ours if c["op"] == "add_rule"]
            removed = [c["rule"] for c in ours if c["op"] == "remove_rule"]
            try:
                if config == PERMANENT:
                    fw.change_permanent_rules(zone, add=removed, remove=added)
                else:
                    for rule in added:
                        fw.remove_rich_rule(zone, rule, RUNTIME)
                    for rule in removed:
                        fw.add_rich_rule(zone, rule, RUNTIME)
            except Failure as err:
                log(f"could not undo the {config} changes in zone {zone}: {err}")
                failures.append(err)
    if strict and failures:
        raise failures[0]
    return failures


def commit(store, intent, fw, changes, action, update=None, remove=()):
    """Apply changes and record the outcome (the caller holds the lock and is inside
    step.critical()). Crash-safe: the intent names the changes as pending before the
    first is made, so wherever the step dies, no rule it wrote is without a record and
    the next locked action undoes them (recover); the forwards are updated once every
    change is made, in the same atomic write that clears the pending changes."""
    before = {k: dict(v) for k, v in intent["forwards"].items()}
    rules = rule_changes(changes)
    stop_if_cancelled("planned")
    if rules:
        intent["pending"] = {"action": action, "task": os.environ.get("AGENT_TASK_ID", ""), "since": now(),
                             "changes": rules}
        store.save(intent)
    try:
        stop_if_cancelled("pending_saved")
        flushed = apply_changes(fw, changes)
    except UndoFailed:
        raise  # pending stays: recover() undoes the rest
    except BaseException:
        intent.pop("pending", None)  # apply_changes undid what it did
        store.save(intent)
        raise
    checkpoint("before_commit")
    intent["forwards"].update(update or {})
    for fid in remove:
        intent["forwards"].pop(fid, None)
    intent.pop("pending", None)
    store.save(intent)
    checkpoint("committed")
    store.audit(action, rules, before, intent["forwards"])
    systemd.start_self_check(action)
    if cancel_requested():
        log("cancel requested after every change was made: the changes are kept and recorded", SD_WARNING)
    return flushed


def recover(store, intent, fw):
    """Undo the changes of a step that died before recording them (see commit)."""
    pending = intent.get("pending")
    if not pending:
        return
    log(f"undoing the changes of an interrupted {pending['action']} (task {pending['task'] or '-'})", SD_WARNING)
    undo(fw, pending["changes"], strict=True)  # on failure the record stays for the next try
    del intent["pending"]
    store.save(intent)
    store.audit("recover", pending["changes"], intent["forwards"], intent["forwards"], interrupted=pending)
