"""The bypass in NS8's monitoring, on the sandbox's real Prometheus and Alertmanager:
what create-module published (read back with the module's own Redis user), the units,
the exporter on the VPN address, and an alert that fires on drift and resolves when
the self-check repairs it."""

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from nodetools import AGENT_ID, REPO, rich_rules
from ns8dev import metrics as metrics_standin
from ns8dev import procs
from ns8dev.sandbox import read_env

pytestmark = pytest.mark.integration

MODULE = "nethvoice-bypass1"
UNITS = ["self-check.service", "self-check.timer", "exporter.service"]


def module_env(sandbox):
    return read_env(sandbox.state_dir / "environment")


def calls(sandbox):
    log = sandbox.root / "run/systemd/calls.log"
    return log.read_text().splitlines() if log.exists() else []


def alerts(sandbox, name):
    return [a for a in sandbox.prometheus_api("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


def module_targets(sandbox):
    """Prometheus' active targets that are not the nodes' own exporters."""
    return [t for t in sandbox.prometheus_api("/api/v1/targets")["activeTargets"]
            if t["labels"].get("target_type") != "node"]


def wait_for(predicate, what):
    """Prometheus and the metrics module take a few scrapes and evaluations."""
    return procs.wait_for(predicate, 60, what, interval=0.5)


def test_create_module_published_the_target_and_the_rules(sandbox):
    rdb = sandbox.redis_client("module")  # the module's own ACL reads its keys back
    env = module_env(sandbox)
    target = yaml.safe_load(rdb.hget(f"module/{MODULE}/metrics_targets", "bypass"))
    assert target == [{"targets": [f"{sandbox.addresses['service_ip']}:{env['TCP_PORT']}"],
                       "labels": {"node": "1", "module_id": MODULE, "__metrics_path__": env["METRICS_PATH"]}}]
    assert len(env["METRICS_PATH"]) > 20  # not guessable
    rules = rdb.hget(f"module/{MODULE}/metrics_alert_rules", "bypass")
    assert metrics_standin.rules_checked(rules)  # promtool accepts them
    state = Path(sandbox.metrics["state_dir"])  # the metrics module provisioned both, on the events
    wait_for(lambda: (state / f"rules.d/provision_{MODULE}_bypass.yml").exists(), "the rules to be provisioned")
    assert (state / f"prometheus.d/provision_{MODULE}_bypass.yml").exists()
    active = wait_for(lambda: module_targets(sandbox), "the target")
    assert [(t["labels"]["module_id"], t["labels"]["target_type"]) for t in active] == [(MODULE, "bypass")]
    groups = wait_for(lambda: sandbox.prometheus_api("/api/v1/rules")["groups"], "the rules to load")
    assert [r["name"] for r in groups[0]["rules"]] == [r["alert"] for r in yaml.safe_load(rules)["groups"][0]["rules"]]


def test_units_are_installed_and_verified_by_systemd(sandbox, tmp_path):
    unit_dir = sandbox.root / "etc/systemd/system"
    assert sorted(p.name for p in unit_dir.iterdir()) == sorted(f"{MODULE}-{u}" for u in UNITS)
    assert f"enable {MODULE}-self-check.timer {MODULE}-exporter.service" in calls(sandbox)
    # systemd's own checker, in a root where runagent is where a node has it
    root = tmp_path / "root"  # copies: systemd-analyze resolves links inside the root
    shutil.copytree(unit_dir, root / "etc/systemd/system")
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy(REPO / "dev/bin/runagent", root / "usr/local/bin/runagent")
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/system").symlink_to("/usr/lib/systemd/system")
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                             *[f"/etc/systemd/system/{MODULE}-{u}" for u in UNITS]], capture_output=True, text=True)
    problems = [line for line in verify.stderr.splitlines() if MODULE in line]
    assert verify.returncode == 0 and problems == [], verify.stderr[-2000:]


def test_the_exporter_serves_the_metrics_on_the_vpn_address_only_at_its_path(actions, sandbox):
    actions.run("self-check", {"repair": False})
    env = module_env(sandbox)
    base = f"http://{sandbox.addresses['service_ip']}:{env['TCP_PORT']}"

    def get(path):
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, None, ""

    status, kind, body = sandbox.in_netns("node", get, env["METRICS_PATH"])
    assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert body == (sandbox.state_dir / "metrics.prom").read_text()
    assert sandbox.in_netns("node", get, "/metrics")[0] == 404


def test_a_change_starts_the_self_check_and_a_dry_run_does_not(actions, sandbox, clean_forwards):
    start = f"start --no-block {MODULE}-self-check.service"
    before = calls(sandbox).count(start)
    actions.run("add-port-forward", {"source": "192.0.2.10", "dry_run": True})
    actions.run("add-port-forward", {"source": "192.0.2.10"})
    # started without waiting: its systemctl call lands a moment after the step ends
    wait_for(lambda: calls(sandbox).count(start) > before, "the self-check to be started")
    time.sleep(1)  # a start by the dry run, which ran first, would have landed by now
    assert calls(sandbox).count(start) == before + 1


def test_a_drift_fires_the_alert_and_the_repair_resolves_it(actions, sandbox, clean_forwards):
    rule = actions.run("add-port-forward", {"source": "192.0.2.10"})["forward"]["rule"]
    actions.run("self-check")
    wait_for(lambda: sandbox.prometheus_api('/api/v1/query?query=nethvoice_bypass_forwards{state="in_sync"}')
             ["result"][0]["value"][1] == "1", "Prometheus to scrape the forward in sync")
    assert alerts(sandbox, "NethVoiceBypassForwardNotInSync") == []
    sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={rule}")  # behind the module's back
    out = actions.run("self-check", {"repair": False})
    assert out["repaired"] == [] and rule not in rich_rules(sandbox)
    firing = wait_for(lambda: [a for a in alerts(sandbox, "NethVoiceBypassForwardNotInSync")
                               if a["state"] == "firing"], "the alert to fire")
    assert firing[0]["labels"]["severity"] == "critical" and firing[0]["labels"]["module_id"] == MODULE
    out = actions.run("self-check")
    assert [(c["op"], c["config"]) for c in out["repaired"]] == [("add_rule", "runtime")]
    assert rule in rich_rules(sandbox)
    wait_for(lambda: alerts(sandbox, "NethVoiceBypassForwardNotInSync") == [], "the alert to resolve")
    summary = actions.run("get-status")["bypass"]["self_check"]
    assert (summary["result"], summary["repaired"]) == ("ok", 1) and summary["repairs_total"] >= 1


def test_the_service_command_runs_the_self_check(sandbox):
    """What <module>-self-check.service runs, in the module's context."""
    out = sandbox.runagent("-m", MODULE, "nethvoice-bypass-self-check")
    assert set(json.loads(out.stdout)) == {"checked_at", "findings", "repaired", "probes"}


def test_destroy_withdraws_rules_then_targets_and_create_brings_them_back(actions, sandbox):
    rdb = sandbox.redis_client("cluster")
    pubsub = rdb.pubsub()
    pubsub.subscribe(f"{AGENT_ID}/event/metrics-alert-rules-changed", f"{AGENT_ID}/event/metrics-target-changed")
    time.sleep(0.2)
    try:
        actions.run("destroy-module", {"module_id": MODULE, "preserve_data": False})
        events = []
        deadline = time.monotonic() + 10
        while len(events) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)
            if message and message["type"] == "message":
                events.append(message["channel"].rsplit("/", 1)[1])
        assert events == ["metrics-alert-rules-changed", "metrics-target-changed"]
        assert rdb.hget(f"module/{MODULE}/metrics_targets", "bypass") is None
        assert rdb.hget(f"module/{MODULE}/metrics_alert_rules", "bypass") is None
        assert not list((sandbox.root / "etc/systemd/system").iterdir())
        disabled = [c.split()[2:] for c in calls(sandbox) if c.startswith("disable --now ")][-1]
        assert sorted(disabled) == sorted(f"{MODULE}-{u}" for u in UNITS)
        wait_for(lambda: module_targets(sandbox) == [], "the target to go")
    finally:
        pubsub.close()
        actions.run("create-module", {"images": [], "volumes": {}})
    assert rdb.hget(f"module/{MODULE}/metrics_targets", "bypass")
    assert subprocess.run(["systemctl", "is-active", f"{MODULE}-exporter.service"], env=sandbox.agent_env(),
                          capture_output=True, text=True).stdout.strip() == "active"
