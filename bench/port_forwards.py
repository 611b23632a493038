#!/usr/bin/env python3
"""Benchmark: the manual firewall-cmd procedure against add/remove-port-forward tasks.

Both run side by side in one run on the sandbox node's real firewalld. The module's
actions are submitted as tasks to the sandbox's running agent over Redis, the way
api-cli does on a node, and timed from submission to result.

The same run measures the floor of a step: a task whose one step is a process of the
agent venv that only imports redis and dbus, next to one add-port-forward (and its
remove), both run by the same runner without Redis in between.

    .venv/bin/python bench/port_forwards.py [--repeat N] [--json FILE]
"""

import argparse
import importlib.machinery
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "dev"))

from ns8dev import agent as runner  # noqa: E402
from ns8dev.sandbox import Sandbox  # noqa: E402

AGENT_ID = "module/nethvoice-bypass1"
MARKER = 'rule family="ipv4" source address="203.0.113.250" drop'  # runtime only: a reload drops it


def load_api_cli():
    loader = importlib.machinery.SourceFileLoader("api_cli", str(REPO / "dev" / "api-cli"))
    spec = importlib.util.spec_from_loader("api_cli", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def sources(count):
    return [f"198.51.100.{i}" for i in range(1, count + 1)]


def manual_rule(source, to_port):
    # the procedure as documented: one rule per source, then a reload
    return f"rule family=ipv4 source address={source} forward-port port=5060 protocol=udp to-port={to_port}"


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def manual(sandbox, count, to_port):
    fw = sandbox.firewalld.firewall_cmd

    def add():
        for source in sources(count):
            fw("--permanent", f"--add-rich-rule={manual_rule(source, to_port)}")
        fw("--reload")

    def remove():
        for source in sources(count):
            fw("--permanent", f"--remove-rich-rule={manual_rule(source, to_port)}")
        fw("--reload")

    return timed(add), timed(remove)


def module(api_cli, rdb, count, per_task):
    def task(action, data):
        result = api_cli.run_task(rdb, AGENT_ID, action, data, {})
        assert result["exit_code"] == 0, result
        return result["output"]

    def add():
        if per_task:
            for source in sources(count):
                task("add-port-forward", {"source": source})
        else:
            task("add-port-forward", {"forwards": [{"source": s} for s in sources(count)]})

    ids = [f"udp-ipv4-5060-{s}" for s in sources(count)]

    def remove():
        if per_task:
            for fid in ids:
                task("remove-port-forward", {"id": fid})
        else:
            task("remove-port-forward", {"ids": ids})

    return timed(add), timed(remove)


FLOOR_STEP = ("#!/usr/bin/env python3\n# the least a step of this module does: the agent venv, redis-py, dbus-python,\n"
              "# one JSON document\nimport dbus  # noqa: F401\nimport redis  # noqa: F401\nprint('{}')\n")
# The agent validates every task's input and output (the runner with dev/validator):
# the floor task has schemas too, so the same validation is on both sides.
FLOOR_SCHEMA = '{"$schema": "http://json-schema.org/draft-07/schema#"}'


def floor_and_one_add(sandbox, repeat):
    """Medians (s) of the floor task and of one add and one remove, same runner."""
    base = Path(tempfile.mkdtemp(prefix="nvb-floor-"))
    (base / "floor").mkdir()
    (base / "floor/10import").write_text(FLOOR_STEP)
    (base / "floor/10import").chmod(0o755)
    for schema in ("validate-input.json", "validate-output.json"):
        (base / "floor" / schema).write_text(FLOOR_SCHEMA)
    env = runner.build_agent_env(AGENT_ID, str(sandbox.install_dir), [str(sandbox.env_file)])
    agent = runner.Agent(AGENT_ID, str(sandbox.install_dir), str(base), env=env, log=open("/dev/null", "w"))
    floor, add, remove = [], [], []
    for _ in range(repeat):  # interleaved, so the machine's moods fall on all three
        floor.append(timed(lambda: agent.run("floor")))
        add.append(timed(lambda: agent.run("add-port-forward", {"source": "198.51.100.200"})))
        remove.append(timed(lambda: agent.run("remove-port-forward", {"id": "udp-ipv4-5060-198.51.100.200"})))
    return statistics.median(floor), statistics.median(add), statistics.median(remove)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    api_cli = load_api_cli()
    results = []
    with tempfile.TemporaryDirectory(prefix="nvb-bench-") as root, Sandbox(root) as sandbox:
        rdb = sandbox.redis_client("cluster")
        to_port = sandbox.ports["asterisk_sip_udp"]
        cases = [("1 forward", 1, False), ("50 forwards, 1 task", 50, False), ("50 forwards, 50 tasks", 50, True)]
        for label, count, per_task in cases:
            manual_add, manual_remove, ours_add, ours_remove, reloads = [], [], [], [], 0
            for _ in range(args.repeat):
                a, r = manual(sandbox, count, to_port)
                manual_add.append(a)
                manual_remove.append(r)
                sandbox.firewalld.firewall_cmd(f"--add-rich-rule={MARKER}")
                a, r = module(api_cli, rdb, count, per_task)
                ours_add.append(a)
                ours_remove.append(r)
                # the runtime-only marker is gone after any reload: count reloads by it
                if sandbox.firewalld.firewall_cmd(f"--query-rich-rule={MARKER}", check=False).returncode != 0:
                    reloads += 1
                else:
                    sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={MARKER}")
            row = {"case": label, "repeat": args.repeat,
                   "manual_add_s": statistics.median(manual_add), "module_add_s": statistics.median(ours_add),
                   "manual_remove_s": statistics.median(manual_remove),
                   "module_remove_s": statistics.median(ours_remove), "module_reloads": reloads}
            row["add_speedup"] = row["manual_add_s"] / row["module_add_s"]
            row["remove_speedup"] = row["manual_remove_s"] / row["module_remove_s"]
            results.append(row)
            print(f"{label:24} add: manual {row['manual_add_s']*1000:8.1f} ms"
                  f"  module {row['module_add_s']*1000:8.1f} ms"
                  f"  x{row['add_speedup']:5.1f} | remove: manual {row['manual_remove_s']*1000:8.1f} ms"
                  f"  module {row['module_remove_s']*1000:8.1f} ms  x{row['remove_speedup']:5.1f}"
                  f" | reloads by the module: {reloads}", flush=True)
        floor, add, remove = floor_and_one_add(sandbox, max(args.repeat * 5, 25))
        results.append({"case": "step floor", "floor_s": floor, "add_s": add, "remove_s": remove})
        print(f"{'step floor':24} {floor*1000:8.1f} ms | one add {add*1000:8.1f} ms ({(add-floor)*1000:+.1f})"
              f" | one remove {remove*1000:8.1f} ms ({(remove-floor)*1000:+.1f})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
