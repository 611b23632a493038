# SPDX-License-Identifier: GPL-3.0-or-later
"""Bypass health for NS8's monitoring: Prometheus series, the scrape target and the
alert rules the module publishes. Pure functions: the self-check gives them what it
read, the adapters write what they return."""

FORWARD_STATES = ("in_sync", "missing", "missing_runtime", "missing_permanent", "stale_target",
                  "instance_missing", "unknown")
TRUNK_STATES = ("bypassed", "drifted")
ALIAS_STATES = ("routed", "missing", "unknown")
SEVERITIES = ("error", "warning", "info")
METRICS_FILE = "metrics.prom"  # in the state dir: the self-check writes it, the exporter serves it
# The timer runs the self-check every 5 minutes: three missed runs make it stale.
STALE_AFTER_SECONDS = 20 * 60


def severity_counts(findings):
    return {s: sum(1 for f in findings if f["severity"] == s) for s in SEVERITIES}


def series(bypass, probes, repairs_total, checked_at, diagnosis=None):
    """Metric families from get-status's `bypass` part and the probes:
    [(name, type, help, [(labels, value)])]. Every state is present, 0 where none."""
    def count(items, key, states):
        return [({"state": s}, sum(1 for i in items if key(i) == s)) for s in states]

    managed = [t for trunks in bypass["trunks"].values() for t in trunks if t["managed"]]
    aliases = [a for per_instance in bypass["domain_aliases"].values() for a in per_instance]
    alias_state = {True: "routed", False: "missing", None: "unknown"}
    return [
        ("nethvoice_bypass_forwards", "gauge", "Managed port forwards per state",
         count(bypass["forwards"], lambda f: f["state"], FORWARD_STATES)),
        ("nethvoice_bypass_trunks", "gauge", "Bypassed trunks: without the proxy, or with it back",
         count(managed, lambda t: "drifted" if t["drift"] else "bypassed", TRUNK_STATES)),
        ("nethvoice_bypass_domain_aliases", "gauge", "Domain aliases: routed by the proxy or not",
         count(aliases, lambda a: alias_state[a["present"]], ALIAS_STATES)),
        ("nethvoice_bypass_diagnosis_problems", "gauge", "Problems named by the last diagnose-sip",
         [({}, (diagnosis or {}).get("problems", 0))]),
        ("nethvoice_bypass_conflicts", "gauge", "Owned fields someone else changed, left for the user to resolve",
         [({}, len(bypass.get("conflicts") or []))]),
        ("nethvoice_bypass_findings", "gauge", "Findings of the last self-check per severity",
         [({"severity": s}, n) for s, n in severity_counts(bypass["checks"]).items()]),
        ("nethvoice_bypass_probe_up", "gauge", "1 when the expected SIP server answered the probe",
         [(probe_labels(p), int(p["ok"])) for p in probes]),
        ("nethvoice_bypass_probe_rtt_seconds", "gauge", "Round trip of the probes that were answered",
         [(probe_labels(p), p["rtt_ms"] / 1000) for p in probes if p["outcome"] == "reply"]),
        ("nethvoice_bypass_repairs_total", "counter", "Changes the self-check re-applied",
         [({}, repairs_total)]),
        ("nethvoice_bypass_last_check_timestamp_seconds", "gauge", "When the last self-check ran",
         [({}, checked_at)]),
    ]


def probe_labels(probe):
    return {"target": probe["expect"] or "other", "instance": probe.get("instance", ""),
            "transport": probe["protocol"], "family": probe["family"]}


def _label_value(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def render(families):
    """The Prometheus text exposition format (version 0.0.4)."""
    lines = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            text = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def scrape_target(address, port, node_id, module_id, path):
    """module/<id>/metrics_targets field `bypass`: a file_sd document."""
    return [{"targets": [f"{address}:{port}"],
             "labels": {"node": str(node_id), "module_id": module_id, "__metrics_path__": path}}]


def _rule(alert, expr, severity, for_, summary, description):
    return {"alert": alert, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary_en": summary[0], "summary_it": summary[1],
                            "description_en": description[0], "description_it": description[1]}}


def alert_rules():
    """module/<id>/metrics_alert_rules field `bypass`: a Prometheus rule document on the
    module's own series. Drift alerts fire at once: the self-check repairs first, so a
    drift it reports is one it could not repair (or was told not to)."""
    return {"groups": [{"name": "nethvoice-bypass", "rules": [
        _rule("NethVoiceBypassForwardNotInSync",
              'sum by (module_id, node) (nethvoice_bypass_forwards{state!="in_sync"}) > 0', "critical", "0m",
              ("A SIP port forward of the proxy bypass is not in effect",
               "Un port forward SIP del bypass del proxy non è attivo"),
              ("{{ $value }} port forwards of the NethVoice proxy bypass are not in sync with firewalld: the "
               "devices they serve reach the proxy, or nothing. Open the module's Status page for the cause.",
               "{{ $value }} port forward del bypass del proxy NethVoice non sono allineati con firewalld: i "
               "dispositivi che servono raggiungono il proxy, o nulla. La pagina Stato del modulo indica la causa.")),
        _rule("NethVoiceBypassTrunkDrifted", 'nethvoice_bypass_trunks{state="drifted"} > 0', "critical", "0m",
              ("A bypassed trunk goes through the proxy again",
               "Un trunk in bypass passa di nuovo dal proxy"),
              ("{{ $value }} trunks handed to the proxy bypass have an outbound proxy again (NethVoice restored "
               "it) and the self-check could not remove it.",
               "{{ $value }} trunk affidati al bypass del proxy hanno di nuovo un outbound proxy (ripristinato da "
               "NethVoice) e il controllo automatico non ha potuto rimuoverlo.")),
        _rule("NethVoiceBypassErrorFinding", 'nethvoice_bypass_findings{severity="error"} > 0', "warning", "0m",
              ("The proxy bypass reports an error", "Il bypass del proxy segnala un errore"),
              ("The last self-check of the NethVoice proxy bypass found {{ $value }} errors; the module's "
               "Status page names each cause and its remedy.",
               "L'ultimo controllo del bypass del proxy NethVoice ha trovato {{ $value }} errori; la pagina Stato "
               "del modulo indica cause e rimedi.")),
        _rule("NethVoiceBypassProbeDown", "nethvoice_bypass_probe_up == 0", "critical", "10m",
              ("A SIP server does not answer as expected", "Un server SIP non risponde come previsto"),
              ("The {{ $labels.transport }} SIP probe to {{ $labels.target }} ({{ $labels.instance }}) got no "
               "answer from the expected server in two checks in a row.",
               "La prova SIP {{ $labels.transport }} verso {{ $labels.target }} ({{ $labels.instance }}) non ha "
               "avuto risposta dal server atteso per due controlli di seguito.")),
        _rule("NethVoiceBypassSelfCheckStale",
              f"time() - nethvoice_bypass_last_check_timestamp_seconds > {STALE_AFTER_SECONDS}", "warning", "0m",
              ("The proxy bypass self-check stopped running", "Il controllo del bypass del proxy non è più eseguito"),
              ("The NethVoice proxy bypass has not checked itself for more than 20 minutes: its timer or its "
               "metrics exporter is not running.",
               "Il bypass del proxy NethVoice non si controlla da più di 20 minuti: il suo timer o l'esportatore "
               "delle metriche non è attivo.")),
    ]}]}
