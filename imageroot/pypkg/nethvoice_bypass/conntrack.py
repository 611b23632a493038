# SPDX-License-Identifier: GPL-3.0-or-later
"""Delete conntrack entries so live flows follow a changed forward.

firewalld does not flush conntrack: an existing UDP flow (a Mediant that always
sends from 5060) keeps its old NAT binding until its entry expires, which may be
never. `conntrack -D` exits 1 when nothing matched; that is success here.
Each call is bounded (TIMEOUT): a hung tool becomes a "failed" result, never a hung change.
"""

import ipaddress
import re
import shutil
import subprocess

# Seconds per call: listing a table of a million flows takes a few seconds; more means a
# hung tool, and the change it runs beside (firewalld's permanent write) waits for it.
TIMEOUT = 10.0
UNAVAILABLE = {"status": "unavailable", "deleted": 0,
               "message": "the conntrack tool is not installed: existing flows keep their old path "
                          "until they expire (install the conntrack package)"}


def available():
    return shutil.which("conntrack") is not None


def _run(argv):
    """The finished process, or the one-line reason it did not finish."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"conntrack {argv[1]} did not answer within {TIMEOUT:g} s"
    except OSError as err:
        return f"conntrack {argv[1]} could not run: {err.strerror}"


def _failed(message):
    return {"status": "failed", "deleted": 0,
            "message": f"{message}: existing flows keep their old path until they expire"}


def flush_many(specs):
    """Flush the flows of several forwards: one listing per protocol and family, then
    a delete only for forwards that have flows. specs: dicts with protocol, port,
    family, source. Returns one result per spec, in order. Once a call hangs (or cannot
    run), no other is tried: each would wait as long."""
    tool = shutil.which("conntrack")
    if not tool:
        return [dict(UNAVAILABLE) for _ in specs]
    flows, stuck = {}, None
    for key in sorted({(s["protocol"], s["port"], s["family"]) for s in specs}):
        proc = stuck or _run([tool, "-L", "-p", key[0], "--orig-port-dst", str(key[1]), "-f", key[2]])
        if isinstance(proc, str):
            stuck = proc
        elif proc.returncode == 0:
            flows[key] = [ipaddress.ip_address(m.group(1))
                          for m in re.finditer(r"^\S+\s+\d+\s+.*?src=(\S+)", proc.stdout, re.M)]
    results = []
    for spec in specs:
        sources = flows.get((spec["protocol"], spec["port"], spec["family"]))  # None: not listed
        network = ipaddress.ip_network(spec["source"]) if spec.get("source") else None
        if stuck:
            results.append(_failed(stuck))
        elif sources is not None and not any(network is None or ip in network for ip in sources):
            results.append({"status": "flushed", "deleted": 0, "message": ""})
        else:
            proc = _run(_delete_argv(tool, spec["protocol"], spec["port"], spec["family"], spec.get("source")))
            stuck = proc if isinstance(proc, str) else None
            results.append(_deleted(proc))
    return results


def _delete_argv(tool, protocol, port, family, source):
    return [tool, "-D", "-p", protocol, "--orig-port-dst", str(port), "-f", family] + (["-s", source] if source else [])


def _deleted(proc):
    if isinstance(proc, str):
        return _failed(proc)
    found = re.search(r"(\d+) flow entries have been deleted", proc.stderr + proc.stdout)
    if found:
        return {"status": "flushed", "deleted": int(found.group(1)), "message": ""}
    return {"status": "failed", "deleted": 0,
            "message": f"conntrack -D failed ({proc.returncode}): {proc.stderr.strip()}"}


def flush(protocol, port, family, source=None, tool=None):
    """Returns {"status": "flushed"|"unavailable"|"failed", "deleted": n, "message"}."""
    tool = tool or shutil.which("conntrack")
    if not tool:
        return dict(UNAVAILABLE)
    return _deleted(_run(_delete_argv(tool, protocol, port, family, source)))
