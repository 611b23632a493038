# SPDX-License-Identifier: GPL-3.0-or-later
"""The module's system units, the rootfull way: templates from the image's systemd/
rendered into /etc/systemd/system/<MODULE_ID>-<name>, driven with systemctl."""

import os
import subprocess
from pathlib import Path

from .errors import Failure
from .step import log
from .store import write_atomically

TEMPLATES = Path(__file__).resolve().parents[2] / "systemd"
# The sandbox points this at its own root; a node uses the system's directory.
UNIT_DIR_ENV = "NETHVOICE_BYPASS_SYSTEMD_DIR"
ENABLED = ("self-check.timer", "exporter.service")
_started = []


def unit_dir():
    return Path(os.environ.get(UNIT_DIR_ENV) or "/etc/systemd/system")


def unit_name(module_id, template):
    return f"{module_id}-{template}"


def systemctl(*args, check=True):
    try:
        proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Failure(f"systemctl {' '.join(args)}: {err}") from None
    if check and proc.returncode != 0:
        raise Failure(f"systemctl {' '.join(args)} failed: {proc.stderr.strip()[-300:]}")
    return proc


def install_units(module_id):
    """Render every template, then enable and start the timer and the exporter
    (restarted, so an update takes effect)."""
    for template in sorted(TEMPLATES.iterdir()):
        write_atomically(unit_dir() / unit_name(module_id, template.name),
                         template.read_text().replace("@MODULE_ID@", module_id))
    systemctl("daemon-reload")
    names = [unit_name(module_id, t) for t in ENABLED]
    systemctl("enable", *names)
    systemctl("restart", *names)


def remove_units(module_id):
    names = [unit_name(module_id, t.name) for t in sorted(TEMPLATES.iterdir())]
    systemctl("disable", "--now", *names, check=False)  # units already gone are fine
    for name in names:
        (unit_dir() / name).unlink(missing_ok=True)
    systemctl("daemon-reload")


def start_self_check(action):
    """After a change: the self-check runs in the background, so the metrics follow it
    (not after the self-check's own repairs). Never fails the caller."""
    module_id = os.environ.get("MODULE_ID")
    if not module_id or action == "self-check" or _started:
        return
    _started.append(action)  # once per step is enough
    try:  # not waited for: the action's answer does not depend on it
        subprocess.Popen(["systemctl", "start", "--no-block", unit_name(module_id, "self-check.service")],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # no pipe of the step: the agent waits for them
    except OSError as err:
        log(f"the self-check could not be started: {err}")
