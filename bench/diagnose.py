#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: the HEP collector under the proxy's mirror at increasing rates.

A sender replays the recorded mix in bench/sip-mix.txt (REGISTER refreshes with their
401 and 200, OPTIONS keep-alives, INVITE dialogs with the proxy's relayed copies to a
dispatcher destination, unknown-domain INVITEs retransmitted without an answer) as
HEPv2 frames, at each rate for a few seconds, to a collector running in its own
process. Side by side in one run, per rate: messages/s sent and received, loss, the
collector's CPU time over the window (user+sys, as a share of one core), its peak
memory, and the time from the end of the window to a result (every kept frame parsed,
then the analysis: `--analyse module:function`, given the Capture). The last row runs
the highest rate for twice as long: past the bounds, memory must stay where it was.

    .venv/bin/python bench/diagnose.py [--rates 500,1000,...] [--seconds S] [--repeat N] [--json FILE]
"""

import argparse
import asyncio
import collections
import json
import os
import pkgutil
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "imageroot/pypkg"))

from nethvoice_bypass import hep  # noqa: E402
from nethvoice_bypass.hepcollector import HepCollector  # noqa: E402

MIX = REPO / "bench/sip-mix.txt"
ENDPOINTS = {"trunk": ("203.0.113.10", 5060), "registrar": ("203.0.113.20", 5060), "mediant": ("192.0.2.77", 5060),
             "proxy": ("198.51.100.5", 5060), "proxy_lan": ("10.5.4.1", 5060), "asterisk": ("10.5.4.1", 20040)}
RATES = (500, 1000, 2000, 5000, 10_000, 20_000)
GRACE = 0.2  # after the last frame sent, before the window closes (close() reads what is queued anyway)


def load_mix(path=MIX):
    """sip-mix.txt -> [(scenario, repeat, [(src, dst, text)])], text None for a retransmission."""
    scenarios = []
    for block in re.split(r"^=== ", path.read_text(), flags=re.M)[1:]:
        title, *messages = re.split(r"^--- ", block, flags=re.M)
        name, repeat = re.fullmatch(r"(\S+) x(\d+)", title.strip()).groups()
        parsed = []
        for message in messages:
            route, _, text = message.partition("\n")
            src, dst = (ENDPOINTS[side.strip()] for side in route.split(">"))
            parsed.append((src, dst, None if text.strip() == "@retransmission" else text.rstrip("\n")))
        scenarios.append((name, int(repeat), parsed))
    return scenarios


def render(text, uid):
    """The template's text with {id} filled, CRLF line ends and its body's {length}."""
    head, _, body = text.format(id=uid, length="{length}").partition("\n\n")
    body = "\r\n".join(body.split("\n")) + "\r\n" if body else ""
    head = "\r\n".join(head.split("\n")).replace("{length}", str(len(body.encode())))
    return (head + "\r\n\r\n" + body).encode()


def frames(scenarios, count, rate, start=1.8e9):
    """`count` HEPv2 frames of the mix in order, a fresh {id} per repetition, timed at `rate`."""
    out, cycle = [], 0
    while len(out) < count:
        for name, repeat, messages in scenarios:
            for n in range(repeat):
                uid, previous = f"{cycle:08x}-{name[:3]}{n}", b""
                for src, dst, text in messages:
                    payload = previous if text is None else render(text, uid)
                    out.append(hep.encode_v2(payload, src=src, dst=dst, time=start + len(out) / rate))
                    previous = payload
        cycle += 1
    return out[:count]


def summary(capture):
    """The trivial analysis: requests by method, replies by class, INVITEs that got no reply."""
    methods, classes, answered, invites = collections.Counter(), collections.Counter(), set(), set()
    for message in capture.messages:
        sip = message.sip
        if sip is None:
            continue
        if sip.is_request:
            methods[sip.method] += 1
            if sip.method == "INVITE":
                invites.add(sip.transaction_key)
        else:
            classes[f"{sip.status // 100}xx"] += 1
            answered.add(sip.transaction_key)
    return {"requests": dict(methods), "replies": dict(classes), "unanswered_invites": len(invites - answered)}


def paced_send(address, datagrams, rate):
    """Send at `rate` per second, in the small bursts a sleeping sender makes -> seconds taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start, sent = time.perf_counter(), 0
        while sent < len(datagrams):
            due = min(len(datagrams), int((time.perf_counter() - start) * rate) + 1)
            for datagram in datagrams[sent:due]:
                sock.sendto(datagram, address)
            sent = max(sent, due)
            delay = start + sent / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return time.perf_counter() - start


def cpu_seconds(before, after):
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def memory_mib(field):
    """VmRSS or VmHWM (peak) of this process, in MiB. Not ru_maxrss: Linux carries it over
    execve, so a child would report the peak of the bench that forked it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def collector_process(args):
    """The child: listen until told to stop on stdin, then parse, analyse and report."""
    analyse = pkgutil.resolve_name(args.analyse)

    async def run():
        loop = asyncio.get_running_loop()
        async with HepCollector("127.0.0.1", 0, max_messages=args.max_messages,
                                max_bytes=args.max_bytes) as collector:
            baseline = memory_mib("VmRSS")
            before = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({"port": collector.address[1]}), flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)
            after = resource.getrusage(resource.RUSAGE_SELF)
            ended = time.perf_counter()
        capture = collector.result()
        analysis = analyse(capture)
        result_s = time.perf_counter() - ended
        done = resource.getrusage(resource.RUSAGE_SELF)
        return {"counters": capture.counters.to_json(), "summary": analysis, "result_s": result_s,
                "cpu_s": cpu_seconds(before, after), "result_cpu_s": cpu_seconds(after, done),
                "baseline_mib": baseline, "peak_mib": memory_mib("VmHWM")}

    print(json.dumps(asyncio.run(run())), flush=True)


def one_run(args, datagrams, rate):
    env = {**os.environ, "PYTHONPATH": str(REPO / "imageroot/pypkg")}
    child = subprocess.Popen(
        [sys.executable, __file__, "--collector", "--analyse", args.analyse, "--max-messages", str(args.max_messages),
         "--max-bytes", str(args.max_bytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = json.loads(child.stdout.readline())["port"]
        seconds = paced_send(("127.0.0.1", port), datagrams, rate)
        time.sleep(GRACE)
        out, _ = child.communicate("stop\n", timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return {**json.loads(out), "sent": len(datagrams), "send_s": seconds}


def measure(args, scenarios, rate, seconds):
    """Median figures of `repeat` runs at one rate (loss: the worst run)."""
    datagrams = frames(scenarios, int(rate * seconds), rate)
    runs = [one_run(args, datagrams, rate) for _ in range(args.repeat)]

    def median(key):
        return statistics.median(run[key] for run in runs)

    worst = max(runs, key=lambda run: run["sent"] - run["counters"]["received"])
    counters = worst["counters"]
    return {"rate": rate, "seconds": seconds, "sent": len(datagrams), "runs": len(runs),
            "sent_per_s": len(datagrams) / median("send_s"), "received_per_s": counters["received"] / median("send_s"),
            "lost": worst["sent"] - counters["received"], "kernel_dropped": counters["kernel_dropped"],
            "kept": counters["kept"], "dropped_bounds": counters["dropped_bounds"],
            "cpu_share": statistics.median(run["cpu_s"] / run["send_s"] for run in runs),
            "peak_mib": median("peak_mib"), "baseline_mib": median("baseline_mib"),
            "result_s": median("result_s"), "result_cpu_s": median("result_cpu_s"), "summary": runs[0]["summary"]}


HEADER = (f"{'rate/s':>8} {'for':>4} {'sent/s':>8} {'recv/s':>8} {'lost':>5} {'kernel':>6} {'kept':>6}"
          f" {'over bounds':>11} {'CPU':>6} {'peak MiB':>8} {'(base)':>6} {'to result':>9} {'(CPU)':>7}")


def row_text(row):
    return (f"{row['rate']:>8} {row['seconds']:>3g}s {row['sent_per_s']:>8.0f} {row['received_per_s']:>8.0f}"
            f" {row['lost']:>5} {row['kernel_dropped']:>6} {row['kept']:>6} {row['dropped_bounds']:>11}"
            f" {row['cpu_share']:>6.1%} {row['peak_mib']:>8.1f} {row['baseline_mib']:>6.1f}"
            f" {row['result_s'] * 1000:>7.0f}ms {row['result_cpu_s'] * 1000:>5.0f}ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-messages", type=int, default=50_000)
    parser.add_argument("--max-bytes", type=int, default=32 << 20)
    parser.add_argument("--analyse", default="diagnose:summary", help="module:function given the Capture")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--collector", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collector:
        return collector_process(args)
    scenarios = load_mix()
    rates = [int(rate) for rate in args.rates.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; bounds {args.max_messages} messages,"
          f" {args.max_bytes >> 20} MiB; medians of {args.repeat} runs (lost, kernel, kept: the worst run)", flush=True)
    print(HEADER, flush=True)
    rows = []
    for rate, seconds in [(rate, args.seconds) for rate in rates] + [(rates[-1], 2 * args.seconds)]:
        rows.append(measure(args, scenarios, rate, seconds))
        print(row_text(rows[-1]), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}; the analysis of the last run:", json.dumps(rows[-1]["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
