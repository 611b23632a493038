# SPDX-License-Identifier: GPL-3.0-or-later
"""Every kind of failure the library raises, in one place (pure: no I/O).

The step layer turns each into what the agent expects: Refused into the agent's
validation errors (exit 10), the Failures into one line on stderr (exit 1).
"""


class InvalidValue(ValueError):
    """A value refused by the model; `reason` is the i18n suffix of the error key."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def problem(field, reason, value, message=""):
    """What is wrong with one input field: `field` a dotted path (`forwards.1.source`),
    `reason` the suffix of its error key (`host_bits_set`), `message` the words for a
    person (logged with the agent's error list, which has no place for them)."""
    return {"field": field, "reason": reason, "value": value, "message": message}


class Refused(Exception):
    """Input refused, with every problem found: raised before anything changes. The
    step layer turns it into the agent's validation errors (exit 10)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__(", ".join(f"{p['field']}: {p['reason']}" for p in self.problems))

    @classmethod
    def one(cls, field, reason, value):
        return cls([problem(field, reason, value)])


class Failure(Exception):
    """An expected operational failure: its message is shown to the user as is."""


class Cancelled(Failure):
    """The task was cancelled (SIGTERM)."""


class PartialFailure(Failure):
    """Some parts failed after every part was tried: the output says which."""

    def __init__(self, message, output):
        super().__init__(message)
        self.output = output


class UndoFailed(Failure):
    """A failure after which some changes could not be undone: they stay pending."""


class FirewalldError(Failure):
    """firewalld refused a call: `code` is its error code (INVALID_RULE, ...)."""

    def __init__(self, code, detail, operation):
        self.code = code
        self.detail = detail
        super().__init__(f"firewalld refused to {operation}: {code}" + (f" ({detail})" if detail else ""))


class Busy(Failure):
    """Another task holds the module's state lock longer than a step waits for it."""


class CaptureBusy(Failure):
    """Another listener holds the port the proxy mirrors SIP to (a support session's sngrep)."""


class RecordDamaged(ValueError):
    """bypass.json does not fit the record's shape: `path` says where."""

    def __init__(self, path, reason):
        super().__init__(f"{path or 'the record'}: {reason}")
        self.path = path


class RecordTooNew(ValueError):
    """Written by a newer version of the module: never moved aside, never rewritten."""
