"""Changing firewalld for the forwards, crash-safe: apply a plan (permanent first),
undo it, and record it in the intent (commit), or undo what a dead step left (recover).
"""

import os

from . import conntrack, systemd
from .firewalld import INPUT_ERRORS, FirewalldError
from .forward_plan import PERMANENT, RUNTIME, rule_changes
from .model import Refused
from .step import SD_WARNING, Cancelled, Failure, cancel_requested, checkpoint, log
from .store import now


def apply_changes(fw, changes):
    """Apply rule changes, every permanent change before the runtime ones: a firewalld
    reload between two calls then re-creates only what was about to be added and
    cannot bring back what was removed. Permanent changes go in one write per zone.
    On failure or cancel, what was done is undone and the error raised. Conntrack
    flushes come last and never fail the action."""
    rules = rule_changes(changes)
    done = []
    try:
        for zone in sorted({c["zone"] for c in rules if c["config"] == PERMANENT}):
            ours = [c for c in rules if c["config"] == PERMANENT and c["zone"] == zone]
            fw.change_permanent_rules(zone, add=[c["rule"] for c in ours if c["op"] == "add_rule"],
                                      remove=[c["rule"] for c in ours if c["op"] == "remove_rule"])
            done += ours
            stop_if_cancelled("after_permanent")
        for change in (c for c in rules if c["config"] == RUNTIME):
            (fw.add_rich_rule if change["op"] == "add_rule" else fw.remove_rich_rule)(
                change["zone"], change["rule"], RUNTIME)
            done.append(change)
            stop_if_cancelled("after_runtime")
    except Failure as err:
        failures = undo(fw, done)
        if failures:
            raise UndoFailed(f"{err}; undoing the changes already made failed too ({failures[0]}): the next "
                             "change or reconcile-bypass undoes them") from err
        if isinstance(err, Cancelled):
            raise Cancelled(f"cancelled: the {len(done)} firewalld changes already made were undone") from err
        if isinstance(err, FirewalldError) and err.code in INPUT_ERRORS and not done:
            raise Refused.one("(root)", "rejected_by_firewalld", f"{err.code}: {err.detail}") from err
        raise Failure(f"{err}; the changes already made were undone") from err
    flushes = [c for c in changes if c["op"] == "flush_conntrack"]
    return [dict(result, forward=c["forward"]) for c, result in zip(flushes, conntrack.flush_many(flushes),
                                                                      strict=True)]


def stop_if_cancelled(point):
    checkpoint(point)
    if cancel_requested():
        raise Cancelled("cancelled")


class UndoFailed(Failure):
    """A failure after which some changes could not be undone: they stay pending."""


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
