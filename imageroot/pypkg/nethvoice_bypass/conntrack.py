"""Delete conntrack entries so live flows follow a changed forward.

firewalld does not flush conntrack: an existing UDP flow (a Mediant that always
sends from 5060) keeps its old NAT binding until its entry expires, which may be
never. `conntrack -D` exits 1 when nothing matched; that is success here.
"""

import ipaddress
import re
import shutil
import subprocess

UNAVAILABLE = {"status": "unavailable", "deleted": 0,
               "message": "the conntrack tool is not installed: existing flows keep their old path "
                          "until they expire (install the conntrack package)"}


def available():
    return shutil.which("conntrack") is not None


def flush_many(specs):
    """Flush the flows of several forwards: one listing per protocol and family, then
    a delete only for forwards that have flows. specs: dicts with protocol, port,
    family, source. Returns one result per spec, in order."""
    tool = shutil.which("conntrack")
    if not tool:
        return [dict(UNAVAILABLE) for _ in specs]
    flows = {}
    for key in {(s["protocol"], s["port"], s["family"]) for s in specs}:
        proc = subprocess.run([tool, "-L", "-p", key[0], "--orig-port-dst", str(key[1]), "-f", key[2]],
                              capture_output=True, text=True)
        flows[key] = None if proc.returncode != 0 else [
            ipaddress.ip_address(m.group(1)) for m in re.finditer(r"^\S+\s+\d+\s+.*?src=(\S+)", proc.stdout, re.M)]
    results = []
    for spec in specs:
        sources = flows[(spec["protocol"], spec["port"], spec["family"])]
        network = ipaddress.ip_network(spec["source"]) if spec.get("source") else None
        if sources is not None and not any(network is None or ip in network for ip in sources):
            results.append({"status": "flushed", "deleted": 0, "message": ""})
        else:
            results.append(flush(spec["protocol"], spec["port"], spec["family"], spec.get("source"), tool))
    return results


def flush(protocol, port, family, source=None, tool=None):
    """Returns {"status": "flushed"|"unavailable"|"failed", "deleted": n, "message"}."""
    tool = tool or shutil.which("conntrack")
    if not tool:
        return dict(UNAVAILABLE)
    argv = [tool, "-D", "-p", protocol, "--orig-port-dst", str(port), "-f", family]
    if source:
        argv += ["-s", source]
    proc = subprocess.run(argv, capture_output=True, text=True)
    found = re.search(r"(\d+) flow entries have been deleted", proc.stderr + proc.stdout)
    if found:
        return {"status": "flushed", "deleted": int(found.group(1)), "message": ""}
    return {"status": "failed", "deleted": 0,
            "message": f"conntrack -D failed ({proc.returncode}): {proc.stderr.strip()}"}
