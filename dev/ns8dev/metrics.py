# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for NS8's metrics module (NethServer/ns8-metrics) on the sandbox node:
Debian's Prometheus and Alertmanager, provisioned from what modules publish, the way
the metrics module does it on the leader:

- `node/*/vpn`: each node's exporter (VPN address, port 9100), written to
  prometheus.d/node_<id>.yml; so the target files are never none, as on a real
  cluster (Prometheus keeps the last targets when a reload finds no file at all);
- `module/*/metrics_targets`: each field a file_sd document, written to
  prometheus.d/provision_<module>_<field>.yml with `module_id` and `target_type`
  (the field) forced (provision-prometheus);
- `module/*/metrics_alert_rules`: each field a rule document, checked with
  `promtool check rules` and written to rules.d/provision_<module>_<field>.yml; a
  document that fails is skipped (metrics_alert_rules.py);
- run again on the `metrics-target-changed` and `metrics-alert-rules-changed` events
  (the stand-in's own event handlers, dev/metrics-standin/events); Prometheus reloads
  (SIGHUP) for rules, and reads target files by itself.

The sandbox runs both daemons in the node's network namespace, where the node's VPN
address is, with short scrape and evaluation intervals.

    python -m ns8dev.metrics provision [targets] [rules] --state-dir DIR
      (Redis from REDIS_REPLICA_ADDRESS/REDIS_ADDRESS, Prometheus's PID from DIR/prometheus.pid)
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

SCRAPE_INTERVAL = "1s"
PREFIX = "provision_"


def prometheus_config(alertmanager):
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{"job_name": "providers", "file_sd_configs": [
            {"files": ["prometheus.d/*.yml"], "refresh_interval": SCRAPE_INTERVAL}]}],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "rule_files": ["rules.d/*.yml"],
    }


def alertmanager_config():
    return {"route": {"receiver": "default", "group_by": ["alertname", "node", "module_id"],
                      "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "default"}]}


def prepare(state_dir, alertmanager):
    state = Path(state_dir)
    for sub in ("prometheus.d", "rules.d", "tsdb", "alertmanager"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(alertmanager), sort_keys=False))
    (state / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(), sort_keys=False))


def targets(document, module_id, field):
    items = yaml.safe_load(document)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("target document must be a list of mappings")
    return [dict(i, labels={**(i.get("labels") or {}), "module_id": module_id, "target_type": field})
            for i in items]


def rules_checked(document):
    """The document if promtool accepts it, else ValueError with promtool's words."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(document)
        f.flush()
        proc = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError((proc.stdout + proc.stderr).strip())
    return document


KINDS = {"targets": ("metrics_targets", "prometheus.d"), "rules": ("metrics_alert_rules", "rules.d")}


def node_targets(rdb, state):
    for key in rdb.scan_iter("node/*/vpn"):
        node_id = key.split("/")[1]
        target = [{"targets": [f"{rdb.hget(key, 'ip_address')}:9100"],
                   "labels": {"target_type": "node", "node": node_id}}]
        (state / f"prometheus.d/node_{node_id}.yml").write_text(yaml.safe_dump(target, sort_keys=False))


def provision(rdb, state_dir, what=("targets", "rules")):
    state = Path(state_dir)
    wanted = set()
    if "targets" in what:
        node_targets(rdb, state)
    for kind, directory in (KINDS[w] for w in what):
        convert = rules_checked if kind == "metrics_alert_rules" else None
        for key in sorted(rdb.scan_iter(f"module/*/{kind}")):
            module_id = key.split("/")[1]
            for field, document in sorted(rdb.hgetall(key).items()):
                name = f"{directory}/{PREFIX}{module_id}_{field}.yml"
                try:
                    text = (yaml.safe_dump(targets(document, module_id, field), sort_keys=False)
                            if convert is None else convert(document))
                except (ValueError, yaml.YAMLError) as err:
                    print(f"skipped {kind} {field} of {module_id}: {err}", file=sys.stderr)
                    continue
                (state / name).write_text(text)
                wanted.add(name)
    for directory in (KINDS[w][1] for w in what):
        for path in (state / directory).glob(f"{PREFIX}*.yml"):
            if f"{directory}/{path.name}" not in wanted:
                path.unlink()
    return sorted(wanted)


def reload_prometheus(state_dir):
    try:
        pid = int((Path(state_dir) / "prometheus.pid").read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as err:
        print(f"Prometheus not reloaded: {err}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ns8dev.metrics")
    parser.add_argument("command", choices=["provision"])
    parser.add_argument("what", nargs="*", choices=sorted(KINDS), default=sorted(KINDS))
    parser.add_argument("--state-dir", default=os.getcwd())
    args = parser.parse_args(argv)
    import redis

    address = os.environ.get("REDIS_REPLICA_ADDRESS") or os.environ.get("REDIS_ADDRESS") or "127.0.0.1:6379"
    host, _, port = address.rpartition(":")
    with redis.Redis(host=host, port=int(port), username="default", password="nopass",
                     decode_responses=True) as rdb:
        for name in provision(rdb, args.state_dir, args.what):
            print(f"provisioned {name}", file=sys.stderr)
    if "rules" in args.what:  # file_sd picks up target files by itself
        reload_prometheus(args.state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def start(sb):
    """The metrics module stand-in on the sandbox node: Prometheus and Alertmanager in
    the node namespace, and an agent whose event handlers provision them."""
    from . import procs
    from .cluster import wait_polling
    from .node import DEV, METRICS_ID, Started, read_env, runner_env, write_env
    from .seeds import module_environment

    install = sb.root / "home" / METRICS_ID / ".config"
    state = install / "state"
    state.mkdir(parents=True)
    (install / "events").symlink_to(DEV / "metrics-standin/events")
    write_env(state / "environment", module_environment(METRICS_ID, "ghcr.io/nethserver/metrics:latest"))
    write_env(state / "agent.env", {"REDIS_USER": f"module/{METRICS_ID}",
                                    "REDIS_PASSWORD": sb.redis["passwords"][METRICS_ID],
                                    "PYTHONPATH": DEV, "PATH": read_env(sb.env_file)["PATH"]}, 0o600)
    p = sb.ports
    prepare(state, f"127.0.0.1:{p['alertmanager']}")
    node = ["ip", "netns", "exec", sb.netns["node"]]
    popens = {"alertmanager": sb.spawn("alertmanager", [
        *node, "prometheus-alertmanager", f"--config.file={state / 'alertmanager.yml'}",
        f"--storage.path={state / 'alertmanager'}", "--cluster.listen-address=",
        f"--web.listen-address=127.0.0.1:{p['alertmanager']}"])}
    popens["prometheus"] = sb.spawn("prometheus", [
        *node, "prometheus", f"--config.file={state / 'prometheus.yml'}", f"--storage.tsdb.path={state / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{p['prometheus']}"])
    (state / "prometheus.pid").write_text(str(popens["prometheus"].pid))
    popens["metrics-agent"] = sb.spawn("metrics-agent", [
        sys.executable, "-m", "ns8dev.agent", "serve", "--agent-id", f"module/{METRICS_ID}",
        "--install-dir", install, "--env-file", sb.env_file], env=runner_env(sb.env_file), cwd=state)
    sb.metrics = {"state_dir": str(state), "prometheus": f"http://127.0.0.1:{p['prometheus']}",
                  "alertmanager": f"http://127.0.0.1:{p['alertmanager']}"}
    sb.state["metrics"] = sb.metrics
    sb.save()
    return Started(popens, lambda: (wait_polling(sb, "metrics-agent", f"module/{METRICS_ID}"),
                                    procs.wait_for(lambda: sb.prometheus_api("/-/ready", raw=True), 30,
                                                   "Prometheus")))
