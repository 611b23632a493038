# SPDX-License-Identifier: GPL-3.0-or-later
"""The NS8 agent step protocol, as seen from inside one step.

stdin carries the task data as JSON; the step prints exactly one JSON document on
stdout; logs go to stderr with systemd priority prefixes; agent commands
(set-status, set-progress, set-weight) are lines on the file descriptor named by
AGENT_COMFD (stderr when unset, as the core `agent` library does).
Input the library refuses (model.Refused) becomes the agent's validation failure: a
list of {field, parameter, value, error} and exit code 10.

A cancel (the agent's SIGTERM to the step's process group) ends a step at once,
except inside critical(): there it is noted (cancel_requested), and the action stops
at its next safe point, after finishing or undoing the change in progress.
"""

import contextlib
import csv
import json
import os
import signal
import sys

from .errors import Cancelled, Failure, PartialFailure, Refused
from .store import write_atomically

EXIT_VALIDATION_FAILED = 10
EXIT_FAILURE = 1

SD_ERR = "<3>"
SD_WARNING = "<4>"
SD_INFO = "<6>"
SD_DEBUG = "<7>"


def validation_error(field, reason, value):
    """One error item in the agent's format; `error` doubles as the UI's i18n key."""
    parameter = field.split(".", 1)[0]
    return {"field": field, "parameter": parameter, "value": value, "error": f"{parameter}_{reason}"}


def validation_errors(refused):
    """The agent's error list for the problems of a model.Refused."""
    return [validation_error(p["field"], p["reason"], p["value"]) for p in refused.problems]


# Test seam: NETHVOICE_BYPASS_STOP_AT=<point> makes the step stop itself (SIGSTOP)
# there, so a fault test can kill or cancel it at a known position.
STOP_AT_ENV = "NETHVOICE_BYPASS_STOP_AT"
_cancel = {"requested": False, "critical": 0}


def _on_sigterm(_signum, _frame):
    _cancel["requested"] = True
    if not _cancel["critical"]:
        raise Cancelled("cancelled: nothing was changed")


@contextlib.contextmanager
def critical():
    """A section a cancel does not interrupt; the action decides where it stops (cancel_requested)."""
    _cancel["critical"] += 1
    try:
        yield
    finally:
        _cancel["critical"] -= 1


def cancel_requested():
    return _cancel["requested"]


def checkpoint(name):
    if os.environ.get(STOP_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def stop_if_cancelled(point=None):
    """A safe point inside critical(): the cancel noted meanwhile ends the action here."""
    if point:
        checkpoint(point)
    if cancel_requested():
        raise Cancelled("cancelled")


def log(message, priority=SD_INFO):
    for line in str(message).splitlines() or [""]:
        print(f"{priority}{line}", file=sys.stderr, flush=True)


def _agent_command(*args):
    fd = int(os.environ.get("AGENT_COMFD", "2"))
    with open(fd, "w", closefd=False, newline="") as stream:
        csv.writer(stream, delimiter=" ", lineterminator="\n").writerow(args)
        stream.flush()


def set_status(status):
    _agent_command("set-status", status)


def set_progress(percent):
    _agent_command("set-progress", int(percent))


def set_weight(step, weight):
    _agent_command("set-weight", step, int(weight))


def _env_file():
    return os.path.join(os.environ.get("AGENT_STATE_DIR") or os.getcwd(), "environment")


def set_env(**values):
    """Set variables in the state dir's ./environment (KEY=VALUE, no quoting), as the
    core's agent.set_env does: later steps of the task see them, Redis at its end."""
    with open(_env_file()) as f:
        kept = [line.rstrip("\n") for line in f if line.strip() and line.split("=", 1)[0] not in values]
    write_atomically(_env_file(), "".join(f"{line}\n" for line in kept + [f"{k}={v}" for k, v in values.items()]))


def read_env(name):
    """A variable as ./environment has it now (os.environ is the step's start)."""
    with open(_env_file()) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep and key == name:
                return value
    return None


def step_name():
    return os.path.basename(sys.argv[0]) or "step"


def read_input(stream=None):
    """The task data; the agent sends `null` when the task has no data."""
    text = (stream or sys.stdin).read()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise Refused.one("(root)", "invalid_json", text[:200]) from err


def print_output(document):
    json.dump(document, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def report_validation_failure(errors, messages=()):
    set_weight(step_name(), 0)
    set_status("validation-failed")
    print_output(errors)
    log(f"Validation errors: {json.dumps(errors)}", SD_ERR)
    for message in messages:
        log(message, SD_ERR)


def run(main, stream=None):
    """Run one step: main(data) returns the output document (or None for no output).

    Never lets a traceback reach the user: expected failures print their message,
    anything else one line naming the exception.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        data = read_input(stream)
        result = main(data)
        if result is not None:
            print_output(result)
        code = 0
    except Refused as err:
        report_validation_failure(validation_errors(err), [f"{p['field']}: {p['message']}" for p in err.problems
                                                          if p.get("message")])
        code = EXIT_VALIDATION_FAILED
    except PartialFailure as err:
        print_output(err.output)
        log(str(err), SD_ERR)
        code = EXIT_FAILURE
    except Failure as err:
        log(str(err), SD_ERR)
        code = EXIT_FAILURE
    except KeyboardInterrupt:
        log("interrupted", SD_ERR)
        code = EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 - the last line of defence of a step
        log(f"unexpected error in {step_name()}: {type(err).__name__}: {err}", SD_ERR)
        code = EXIT_FAILURE
    sys.exit(code)
