# SPDX-License-Identifier: GPL-3.0-or-later
"""self-check: the get-status checks and the local SIP probes, drift re-applied like
reconcile-bypass (unless told not to), and the result as Prometheus gauges in
metrics.prom (state dir, not in backups) for the exporter.

Run by the <MODULE_ID>-self-check timer every few minutes, started after each change
and event, and on demand (the action, the page's "Check now")."""

import datetime
import json
import time

from . import metrics, reconcile, siptrace_guard, status, verify
from .changes import FLUSH_CONNTRACK, RECORD_OPS
from .errors import Failure, PartialFailure, Refused
from .step import log
from .store import Store

RESULT_FILE = status.SELF_CHECK_RESULT


def self_check(data=None):
    repair = (data or {}).get("repair")
    repair = True if repair is None else repair
    store = Store()
    repaired = repair_drift() if repair else []
    if repair and status.stale_trace_marker(store) and siptrace_guard.give_back(store.dir):
        repaired.append({"op": "siptrace_off", "why": "a diagnosis that ended left the proxy's trace on"})
    bypass, record, cluster = status.read_bypass(store)  # after the repairs: what they left
    probes = verify.local_probes(cluster, record) if cluster else []
    now = time.time()
    last = store.read_json(RESULT_FILE) or {}
    total = last.get("repairs_total", 0) + len(repaired)
    store.write_file(metrics.METRICS_FILE, metrics.render(metrics.series(bypass, probes, total, now,
                                                                    store.read_json("diagnosis.json"))))
    checked_at = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(timespec="seconds")
    findings = metrics.severity_counts(bypass["checks"])
    ok = not findings["error"] and all(p["ok"] for p in probes)
    summary = {"checked_at": checked_at, "result": "ok" if ok else "problems", "findings": findings, "repair": repair,
               "probes_failed": sum(not p["ok"] for p in probes), "repaired": len(repaired),
               "repairs_total": total}
    store.write_file(RESULT_FILE, json.dumps(summary, indent=2) + "\n")
    return {"checked_at": checked_at, "findings": bypass["checks"], "repaired": repaired, "probes": probes}


def repair_drift():
    """What reconcile-bypass re-applied; a part that fails is in the findings anyway."""
    try:
        out = reconcile.reconcile(action="self-check")
    except PartialFailure as err:
        log(str(err))
        out = err.output
    except (Failure, Refused) as err:
        log(f"no repair: {err}")
        return []
    return [c for c in out["plan"] if c["op"] not in (FLUSH_CONNTRACK, *RECORD_OPS)]
