"""The Robot suite for a real node (tests/robot) parses and its keywords resolve.

`robot --dryrun` runs every test without executing library keywords: it catches syntax
errors, unknown keywords, bad argument counts and missing libraries, with no node.
"""

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "robot"

EXPECTED = {
    "00 Nethvoice Bypass Add": [
        "Add the module",
        "The module is rootfull and its agent runs",
        "The module may call the route actions of its node's proxy, and no other",
        "A second instance on the same node is refused",
    ],
    "10 Actions": [
        "get-status runs",
        "A bad source is a validation failure",
        "A forward without NethVoice names the cause",
        "A dry run returns a plan",
        "A dry run changes nothing",
        "Removing an unknown forward is a validation failure",
        "Add, list and remove a forward",
        "A port the node uses is refused",
        "A loopback source is refused",
        "A way out for something the module does not own is refused",
        "get-status lists conflicts",
        "diagnose-sip listens for a short window and gives the proxy's trace back",
        "diagnose-sip refuses a window longer than 5 minutes",
    ],
    "20 Bypass": [
        "get-status shows the bypass and its checks",
        "A private external address is a validation failure",
        "An unknown trunk is a validation failure",
        "A configure-bypass dry run changes nothing",
        "verify-bypass probes Asterisk from the node",
        "reconcile-bypass dry run plans nothing on a fresh module",
    ],
    "30 Monitoring": [
        "The self-check timer and the exporter run",
        "self-check writes the gauges the exporter serves",
        "The exporter answers nothing but its own path",
        "The scrape target and the alert rules are published for the metrics module",
    ],
    "99 Nethvoice Bypass Remove": [
        "Leave a forward for the removal to withdraw",
        "Remove the module",
        "No forward of ours is left in firewalld",
        "Its timer and exporter are gone",
    ],
}


def dryrun(path, *options):
    # Wide console so that test names are not shortened in the PASS lines
    command = [sys.executable, "-m", "robot", "--dryrun", "--output", "NONE", "--report", "NONE",
               "--log", "NONE", "--consolewidth", "250", "--consolecolors", "off", *options, str(path)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def passed_names(stdout):
    return [m.group(1) for m in re.finditer(r"^(.+?)\s+\| PASS \|$", stdout, re.MULTILINE)]


def test_dry_run_passes_with_the_expected_cases():
    result = dryrun(SUITE)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = passed_names(result.stdout)
    for suite, cases in EXPECTED.items():
        assert f"Robot.{suite}" in passed, f"suite {suite} missing:\n{result.stdout}"
        missing = [case for case in cases if case not in passed]
        assert not missing, f"{suite}: {missing} missing:\n{result.stdout}"
    total = sum(len(cases) for cases in EXPECTED.values())
    summary = re.findall(r"^(\d+) tests?, (\d+) passed, (\d+) failed", result.stdout, re.MULTILINE)
    tests, ok, failed = map(int, summary[-1])
    assert tests >= total and ok == tests and failed == 0, summary[-1]


def test_suites_run_in_install_order():
    # Robot orders by name: add first, remove last, with ${module_id} shared in between
    order = [s for s in passed_names(dryrun(SUITE).stdout) if s.startswith("Robot.")]
    assert order[:len(EXPECTED)] == [f"Robot.{suite}" for suite in EXPECTED], order


def test_dry_run_as_the_ns8_runner_calls_it():
    # ns8-github-actions test-module.sh: robot -v NODE_ADDR -v IMAGE_URL -v SSH_KEYFILE tests/
    result = dryrun(ROOT / "tests", "-v", "NODE_ADDR:node.invalid",
                    "-v", "IMAGE_URL:ghcr.io/nethserver/nethvoice-bypass:latest",
                    "-v", "SSH_KEYFILE:/tmp/idssh", "--exclude", "ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Tests.Robot.10 Actions" in passed_names(result.stdout), result.stdout


def test_dry_run_catches_an_unknown_keyword(tmp_path):
    # The gate above has teeth: a misspelt keyword fails the dry run
    broken = tmp_path / "robot"
    shutil.copytree(SUITE, broken)
    with open(broken / "10_actions.robot", "a") as suite:
        suite.write("\n*** Test Cases ***\nMisspelt\n    Run tsak    module/x/get-status    null\n")
    result = dryrun(broken)
    assert result.returncode != 0
    assert "No keyword with name 'Run tsak' found" in result.stdout


def test_runner_requirements_match_the_libraries_tested_here():
    pins = {}
    for line in (ROOT / "tests" / "pythonreq.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name] = version
    assert set(pins) >= {"robotframework", "robotframework-sshlibrary"}, pins
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name}: tests/pythonreq.txt pins {version}"
