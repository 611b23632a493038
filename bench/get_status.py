#!/usr/bin/env python3
"""Benchmark: get-status end to end through the runner, with 1, 50 and 200 forwards
and 30 trunks, and the import time of its step.

    .venv/bin/python bench/get_status.py [--repeat N] [--json FILE]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "dev"))

from ns8dev import agent  # noqa: E402
from ns8dev.sandbox import Sandbox  # noqa: E402

AGENT_ID = "module/nethvoice-bypass1"
TRUNKS = 30


def add_trunks(sandbox, count):
    """Registered pjsip trunks shaped like the seeded ones, up to `count` in all."""
    have = int(sandbox.sql("SELECT COUNT(*) FROM trunks")[0][0])
    rows, pjsip = [], []
    for tid in range(have + 1, count + 1):
        name = f"Bench-Trunk-{tid}"
        rows.append(f"({tid},'pjsip','{name}','{name}','','off','','','','','','off','off','on')")
        for keyword, value in (("trunk_name", name), ("registration", "send"), ("transport", "0.0.0.0-udp"),
                               ("sip_server", f"sip{tid}.example.org"), ("sip_server_port", "5060"),
                               ("outbound_proxy", "sip:10.5.4.1:5060;lr")):
            pjsip.append(f"('{tid}','{keyword}','{value}',0)")
    if rows:
        sandbox.sql(f"INSERT INTO trunks VALUES {','.join(rows)}")
        sandbox.sql(f"INSERT INTO pjsip (id, keyword, data, flags) VALUES {','.join(pjsip)}")


def sources(count):
    return [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(count)]


def import_time(sandbox):
    env = dict(sandbox.agent_env(), PYTHONPROFILEIMPORTTIME="1")
    step = sandbox.install_dir / "actions" / "get-status" / "20read"
    proc = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path('{step}', run_name='x')"],
                          input="null", capture_output=True, text=True, env=env, cwd=sandbox.state_dir)
    total = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) == 1:  # top-level imports only
            total[m.group(3)] = int(m.group(1)) / 1000
    return dict(sorted(total.items(), key=lambda kv: -kv[1])[:8])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nvb-bench-") as root, Sandbox(root, start_agent=False) as sandbox:
        env = agent.build_agent_env(AGENT_ID, str(sandbox.install_dir), [str(sandbox.env_file)])
        runner = agent.Agent(AGENT_ID, str(sandbox.install_dir), str(REPO / "dev" / "base-actions"), env=env,
                            log=open(os.devnull, "w"))  # noqa: SIM115 (the progress lines are not results)
        add_trunks(sandbox, TRUNKS)
        have = 0
        for count in (1, 50, 200):
            new = sources(count)[have:]
            result = runner.run("add-port-forward", {"forwards": [{"source": s} for s in new]})
            assert result.exit_code == 0, result.error
            have = count
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                result = runner.run("get-status", None)
                times.append(time.perf_counter() - start)
                assert result.exit_code == 0, result.error
            status = result.decoded_output["bypass"]
            assert len(status["forwards"]) == count and len(status["trunks"]["nethvoice1"]) == TRUNKS
            rows.append({"forwards": count, "trunks": TRUNKS, "median_ms": statistics.median(times) * 1000,
                         "min_ms": min(times) * 1000})
            print(f"get-status with {count:3} forwards, {TRUNKS} trunks: median {rows[-1]['median_ms']:6.1f} ms"
                  f" (min {rows[-1]['min_ms']:6.1f} ms, {args.repeat} runs)", flush=True)
        growth = rows[-1]["median_ms"] / rows[0]["median_ms"]
        print(f"growth from 1 to 200 forwards: x{growth:.2f}")
        imports = import_time(sandbox)
        print("slowest top-level imports of the step (ms):", json.dumps(imports))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "growth": growth, "imports_ms": imports}, indent=2))
    os.environ.pop("PYTHONPROFILEIMPORTTIME", None)


if __name__ == "__main__":
    main()
