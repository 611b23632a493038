# SPDX-License-Identifier: GPL-3.0-or-later
"""Changing firewalld for the forwards, crash-safe: apply a plan, undo it, and record
it (commit), or undo what a dead step left (recover).
"""

import os
import threading
from dataclasses import replace

from . import conntrack, keeper, systemd
from .changes import ADD_RULE, FlushChange, RuleChange
from .errors import Cancelled, Failure, FirewalldError, Refused, UndoFailed
from .firewalld import INPUT_ERRORS
from .forward_plan import PERMANENT, RUNTIME
from .record import PendingRules
from .step import SD_WARNING, cancel_requested, checkpoint, log, stop_if_cancelled
from .store import now


def rule_changes(changes):
    return [c for c in changes if isinstance(c, RuleChange)]


def apply_changes(fw, changes):
    """Apply rule changes: the runtime ones first, then, while conntrack flushes the
    forwards' live flows, the permanent ones, then a look at runtime: a firewalld reload
    before the permanent write put back the previous configuration, so what it took
    away is done again (and flushed again). A reload after the permanent write loads it,
    so nothing is lost either way. On failure or cancel, what was done is undone and
    the error raised; an error of the flush itself is a failed change too."""
    rules = rule_changes(changes)
    runtime = [c for c in rules if c.config == RUNTIME]
    flushes = [c for c in changes if isinstance(c, FlushChange)]
    done = []
    flushing = None
    try:
        apply_runtime(fw, runtime, done)
        flushing = background(conntrack.flush_many, [c.to_json() for c in flushes])
        for zone in sorted({c.zone for c in rules if c.config == PERMANENT}):
            ours = [c for c in rules if c.config == PERMANENT and c.zone == zone]
            fw.change_permanent_rules(zone, add=[c.rule for c in ours if c.op == ADD_RULE],
                                      remove=[c.rule for c in ours if c.op != ADD_RULE])
            done += ours
            stop_if_cancelled("after_permanent")
        undone = undone_by_reload(fw, runtime)
        if undone:
            log(f"firewalld reloaded during the change: {len(undone)} runtime changes made again", SD_WARNING)
            apply_runtime(fw, undone, [])
            flushing.outcome()
            flushing = background(conntrack.flush_many, [c.to_json() for c in flushes])
        flushed = flushing.outcome()
    except Failure as err:
        if flushing:
            flushing.join()
        raise undo_after(fw, done, err) from err
    return [dict(result, forward=c.forward) for c, result in zip(flushes, flushed, strict=True)]


def apply_runtime(fw, changes, done, stoppable=True):
    """Runtime changes one by one; a cancel stops after any of them (stoppable: not
    while undoing)."""
    for change in changes:
        if change.op == ADD_RULE:
            fw.add_rich_rule(change.zone, change.rule, RUNTIME)
        else:
            fw.remove_rich_rule(change.zone, change.rule, RUNTIME)
        done.append(change)
        if stoppable:
            stop_if_cancelled("after_runtime")


def undone_by_reload(fw, runtime):
    """The runtime changes no longer in effect."""
    now_in = {zone: fw.rich_rules(zone, RUNTIME) for zone in sorted({c.zone for c in runtime})}
    return [c for c in runtime if (c.rule in now_in[c.zone]) != (c.op == ADD_RULE)]


class background(threading.Thread):  # noqa: N801 - used like a function
    """fn(*args) in a thread; outcome() joins it and returns its result or raises its
    error as a Failure (a flush that crashed is a failed change, undone and reported)."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.result, self.error = fn, args, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except Exception as err:  # noqa: BLE001 - handed to the step's thread by outcome()
            self.error = err

    def outcome(self):
        self.join()
        if self.error is not None:
            raise Failure(f"flushing the live connections failed: {type(self.error).__name__}: {self.error}")
        return self.result


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
        for zone in sorted({c.zone for c in done if c.config == config}):
            ours = [c.inverse() for c in done if c.config == config and c.zone == zone]
            try:
                if config == PERMANENT:
                    fw.change_permanent_rules(zone, add=[c.rule for c in ours if c.op == ADD_RULE],
                                              remove=[c.rule for c in ours if c.op != ADD_RULE])
                else:
                    apply_runtime(fw, ours, [], stoppable=False)
            except Failure as err:
                log(f"could not undo the {config} changes in zone {zone}: {err}")
                failures.append(err)
    if strict and failures:
        raise failures[0]
    return failures


def commit(store, record, fw, changes, action, *, update=None, remove=()):
    """Apply changes and record the outcome (the caller holds the lock and is inside
    step.critical()); returns (the record after, the flush results). Crash-safe: the
    record names the changes as pending before the first is made, so wherever the step
    dies, no rule it wrote is without a record and the next locked action undoes them
    (recover); the forwards are updated once every change is made, in the same atomic
    write that clears the pending changes."""
    rules = rule_changes(changes)
    stop_if_cancelled("planned")
    text = store.read_record_text()
    if rules:
        pending = PendingRules(action, os.environ.get("AGENT_TASK_ID", ""), now(), tuple(rules))
        store.save_record(replace(record, pending=pending).to_json())
    try:
        stop_if_cancelled("pending_saved")
        flushed = apply_changes(fw, changes)
    except UndoFailed:
        raise  # pending stays: recover() undoes the rest
    except BaseException:
        store.restore_record_text(text)  # apply_changes undid what it did: the file as it was
        raise
    checkpoint("before_commit")
    after = replace(record.with_forwards(update, remove), pending=None)
    keeper.save(store, record, after, action, changes)
    checkpoint("committed")
    systemd.start_self_check(action)
    if cancel_requested():
        log("cancel requested after every change was made: the changes are kept and recorded", SD_WARNING)
    return after, flushed


def recover(store, record, fw):
    """Undo the changes of a step that died before recording them (see commit)."""
    pending = record.pending
    if not pending:
        return record
    log(f"undoing the changes of an interrupted {pending.action} (task {pending.task or '-'})", SD_WARNING)
    undo(fw, list(pending.changes), strict=True)  # on failure the record stays for the next try
    after = replace(record, pending=None)
    keeper.save(store, record, after, "recover", [c.inverse() for c in pending.changes],
                interrupted=pending.to_json())
    return after
