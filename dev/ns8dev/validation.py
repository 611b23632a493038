"""The NS8 agent's validation steps, run by the agent's own engine.

The agent validates task data and step output with gojsonschema v1.2.0
(core/agent/validation). `dev/validator/ns8-validate` is a small Go program built
against that very library (Debian's golang-github-xeipuuv-gojsonschema-dev) by
`make validator`; `validate()` runs it. What stays in Python is what the runner
needs around it: Go's JSON encoding of the task data (the steps' stdin) and the
decoding of a task as the agent's models.Task accepts it.
"""

import json
import math
import os
import re
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

VALIDATOR = Path(__file__).resolve().parents[1] / "validator" / "ns8-validate"
EXIT_VALIDATION_FAILED = 10


class ValidatorMissing(RuntimeError):
    """The Go program is not built."""


@dataclass
class Verdict:
    """What the agent does with a validation step: exit code 0 (go on), 10 (input
    errors: validation-failed) or 1 (output errors, or the validation aborted), the
    text it appends to the task's output and to its error."""

    exit_code: int
    output: str
    error: str

    @property
    def errors(self):
        """The error list of a failed input validation."""
        return json.loads(self.output) if self.exit_code == EXIT_VALIDATION_FAILED else []


def validate(kind, schema_path, document, install_dir):
    """Run the agent's `kind` ("input" or "output") validation of document (bytes:
    the task data as the agent marshals it, or the steps' concatenated stdout)."""
    if not os.access(VALIDATOR, os.X_OK):
        raise ValidatorMissing(f"{VALIDATOR} is not built: run `make validator`")
    proc = subprocess.run([str(VALIDATOR), kind, str(schema_path)], input=document, capture_output=True,
                          env={"AGENT_INSTALL_DIR": str(install_dir)})
    if proc.returncode not in (0, 1, EXIT_VALIDATION_FAILED):
        raise RuntimeError(f"ns8-validate failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return Verdict(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


# ---------------------------------------------------------------- Go-like JSON

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def _go_float(value):
    """float64 as encoding/json prints it (the agent decodes every number as float64)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"unsupported value: {value}")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    shortest = Decimal(repr(float(value))).normalize()
    if 1e-6 <= abs(value) < 1e21:
        return format(shortest, "f")
    mantissa, exponent = format(shortest, "E").split("E")
    return f"{mantissa}e{exponent[0]}{int(exponent[1:])}"


def go_json(obj):
    """json.Marshal of a decoded document: compact, sorted keys, HTML-safe escapes."""
    if obj is None:
        return "null"
    if obj is True or obj is False:
        return "true" if obj else "false"
    if isinstance(obj, int | float):
        return _go_float(float(obj))
    if isinstance(obj, str):
        text = json.dumps(obj, ensure_ascii=False)
        return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group()], text)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(obj[k])}" for k in sorted(obj)) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(go_json(v) for v in obj) + "]"
    raise TypeError(f"not a JSON value: {obj!r}")


def task_from_json(raw):
    """A task object as Go's json.Unmarshal into models.Task accepts it (agent and
    api-server both bind it so): an object whose string fields are strings."""
    task = json.loads(raw)
    if not isinstance(task, dict):
        raise ValueError("cannot unmarshal into Go value of type models.Task")
    for key in ("id", "action", "queue", "user", "parent"):
        if task.get(key) is not None and not isinstance(task[key], str):
            raise ValueError(f"cannot unmarshal into Go struct field Task.{key}")
    return task
