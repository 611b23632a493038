"""The series and alert rules the module publishes, checked by Prometheus' own promtool:
the exposition parses, the rules load, and `promtool test rules` shows them quiet on
healthy series and firing on each drift and on a self-check that stopped."""

import re
import subprocess

import pytest
import yaml
from nethvoice_bypass import metrics

pytestmark = pytest.mark.unit

RULES = metrics.alert_rules()["groups"][0]["rules"]
HEALTHY = {  # 2 forwards in sync, a bypassed trunk, probes answered, the check running every minute
    'nethvoice_bypass_forwards{state="in_sync"}': "2x60",
    'nethvoice_bypass_forwards{state="missing"}': "0x60",
    'nethvoice_bypass_trunks{state="bypassed"}': "1x60",
    'nethvoice_bypass_trunks{state="drifted"}': "0x60",
    'nethvoice_bypass_findings{severity="error"}': "0x60",
    'nethvoice_bypass_probe_up{target="asterisk",transport="udp",instance="nethvoice1",family="ipv4"}': "1x60",
    "nethvoice_bypass_last_check_timestamp_seconds": "0+60x60",
}
BYPASS = {
    "forwards": [{"state": "in_sync"}, {"state": "missing_runtime"}],
    "trunks": {"nethvoice1": [{"managed": True, "drift": False}, {"managed": True, "drift": True},
                              {"managed": False, "drift": False}]},
    "domain_aliases": {"nethvoice1": [{"present": True}, {"present": None}]},
    "checks": [{"severity": "error"}, {"severity": "warning"}, {"severity": "warning"}],
}
PROBES = [{"expect": "asterisk", "instance": "nethvoice1", "protocol": "udp", "family": "ipv4", "ok": True,
           "outcome": "reply", "rtt_ms": 1.5},
          {"expect": "proxy", "instance": "nethvoice1", "protocol": "tcp", "family": "ipv4", "ok": False,
           "outcome": "timeout", "rtt_ms": 3500.0}]


def rule(name):
    return next(r for r in RULES if r["alert"] == name)


def expanded(annotations, value, labels):
    """What Prometheus makes of {{ $value }} and {{ $labels.x }} in an annotation."""
    def one(text):
        text = text.replace("{{ $value }}", value)
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    return {k: one(v) for k, v in annotations.items()}


def promtool(tmp_path, *args, stdin=None):
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(metrics.alert_rules(), sort_keys=False, allow_unicode=True))
    proc = subprocess.run(["promtool", *args], cwd=tmp_path, input=stdin, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_exposition_is_valid_and_every_state_is_present(tmp_path):
    text = metrics.render(metrics.series(BYPASS, PROBES, 3, 1764580000.5))
    code, out = promtool(tmp_path, "check", "metrics", stdin=text)
    assert code == 0, out
    assert 'nethvoice_bypass_forwards{state="in_sync"} 1' in text
    assert 'nethvoice_bypass_forwards{state="missing_runtime"} 1' in text
    assert 'nethvoice_bypass_forwards{state="stale_target"} 0' in text
    assert 'nethvoice_bypass_trunks{state="drifted"} 1' in text and 'nethvoice_bypass_trunks{state="bypassed"} 1' in text
    assert 'nethvoice_bypass_domain_aliases{state="unknown"} 1' in text
    assert 'nethvoice_bypass_findings{severity="warning"} 2' in text
    assert ('nethvoice_bypass_probe_up{family="ipv4",instance="nethvoice1",target="proxy",transport="tcp"} 0'
            in text)
    assert 'nethvoice_bypass_probe_rtt_seconds{family="ipv4",instance="nethvoice1",target="asterisk",' \
           'transport="udp"} 0.0015' in text
    assert "nethvoice_bypass_repairs_total 3\n" in text
    assert "nethvoice_bypass_last_check_timestamp_seconds 1764580000.5\n" in text


def test_the_rules_load_and_use_only_the_module_series(tmp_path):
    code, out = promtool(tmp_path, "check", "rules", "rules.yml")
    assert code == 0 and "SUCCESS: 5 rules found" in out, out
    for r in RULES:
        names = set(re.findall(r"[a-z_]+(?=[{ ]|$)", r["expr"])) - {"sum", "by", "time"}
        assert names and all(n.startswith("nethvoice_bypass_") for n in names), r["expr"]
        assert r["labels"]["severity"] in ("warning", "critical")
        assert set(r["annotations"]) == {"summary_en", "summary_it", "description_en", "description_it"}


def case(changes, alert, eval_time, value, labels=None):
    """One promtool test: the healthy series with `changes`, `alert` expected at eval_time,
    and every other alert quiet then."""
    series = dict(HEALTHY, **changes)
    tests = []
    for r in RULES:
        expected = []
        if r["alert"] == alert:
            expected = [{"exp_labels": {"severity": r["labels"]["severity"], **(labels or {})},
                         "exp_annotations": expanded(r["annotations"], value, labels or {})}]
        tests.append({"eval_time": eval_time, "alertname": r["alert"], "exp_alerts": expected})
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": tests}


@pytest.mark.parametrize("changes, alert, eval_time, value, labels", [
    ({}, None, "30m", "", None),
    ({'nethvoice_bypass_forwards{state="missing"}': "0x10 1x50"}, "NethVoiceBypassForwardNotInSync", "12m", "1",
     None),
    ({'nethvoice_bypass_trunks{state="drifted"}': "0x10 2x50"}, "NethVoiceBypassTrunkDrifted", "12m", "2",
     {"state": "drifted"}),
    ({'nethvoice_bypass_findings{severity="error"}': "0x10 1x50"}, "NethVoiceBypassErrorFinding", "12m", "1",
     {"severity": "warning"}),
    ({'nethvoice_bypass_probe_up{target="asterisk",transport="udp",instance="nethvoice1",family="ipv4"}':
      "1x10 0x50"}, "NethVoiceBypassProbeDown", "25m", "0",
     {"target": "asterisk", "transport": "udp", "instance": "nethvoice1", "family": "ipv4"}),
    ({"nethvoice_bypass_last_check_timestamp_seconds": "0+60x10 600x50"}, "NethVoiceBypassSelfCheckStale", "40m",
     "1800", None),
], ids=["healthy", "forward", "trunk", "error", "probe", "stale"])
def test_promtool_rule_tests(tmp_path, changes, alert, eval_time, value, labels):
    if alert == "NethVoiceBypassErrorFinding":
        labels = {}  # the series' own severity label is replaced by the rule's
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [case(changes, alert, eval_time,
                                                                                       value, labels)]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False, allow_unicode=True))
    code, out = promtool(tmp_path, "test", "rules", "test.yml")
    assert code == 0, out


def test_a_probe_that_fails_once_does_not_alert(tmp_path):
    flap = {'nethvoice_bypass_probe_up{target="asterisk",transport="udp",instance="nethvoice1",family="ipv4"}':
            "1x10 0x5 1x45"}
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
            "tests": [case(flap, None, "16m", "", None)]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    code, out = promtool(tmp_path, "test", "rules", "test.yml")
    assert code == 0, out
