"""Delete conntrack entries so live flows follow a changed forward.

firewalld does not flush conntrack: an existing UDP flow (a Mediant that always
sends from 5060) keeps its old NAT binding until its entry expires, which may be
never. `conntrack -D` exits 1 when nothing matched; that is success here.
"""

import re
import shutil
import subprocess


def flush(protocol, port, family, source=None):
    """Returns {"status": "flushed"|"unavailable"|"failed", "deleted": n, "message"}."""
    tool = shutil.which("conntrack")
    if not tool:
        return {"status": "unavailable", "deleted": 0,
                "message": "the conntrack tool is not installed: existing flows keep their old path "
                           "until they expire (install the conntrack package)"}
    argv = [tool, "-D", "-p", protocol, "--orig-port-dst", str(port), "-f", family]
    if source:
        argv += ["-s", source]
    proc = subprocess.run(argv, capture_output=True, text=True)
    found = re.search(r"(\d+) flow entries have been deleted", proc.stderr + proc.stdout)
    if found:
        return {"status": "flushed", "deleted": int(found.group(1)), "message": ""}
    return {"status": "failed", "deleted": 0,
            "message": f"conntrack -D failed ({proc.returncode}): {proc.stderr.strip()}"}
