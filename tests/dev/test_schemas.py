"""Every schema the agent would load compiles in the agent's own engine (gojsonschema
v1.2.0, through dev/validator): Go's regexp refuses what Python's re accepts, and a
schema that does not compile aborts every call of its action."""

import json
from pathlib import Path

import pytest
from ns8dev import validation

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = sorted(p for root in ("imageroot", "dev/base-actions", "dev/proxy-standin")
                 for p in (REPO / root).rglob("validate-*.json"))


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda p: str(p.relative_to(REPO)))
def test_schema_compiles_in_the_agent_engine(schema, tmp_path):
    kind = "input" if schema.name == "validate-input.json" else "output"
    verdict = validation.validate(kind, schema, b"null", tmp_path)
    assert "validation aborted" not in verdict.error, verdict.error
    assert verdict.exit_code in (0, 10 if kind == "input" else 1)


def test_every_action_schema_of_the_module_is_checked():
    actions = {p.parent.name for p in SCHEMAS if p.is_relative_to(REPO / "imageroot")}
    assert actions >= {"add-port-forward", "remove-port-forward", "configure-bypass", "get-status"}


def test_description_pattern_refuses_control_characters_and_accepts_text(tmp_path):
    schema = REPO / "imageroot/actions/add-port-forward/validate-input.json"
    ok = validation.validate("input", schema, b'{"source":"192.0.2.10","description":"Mediant \\u00e8 qui"}',
                             tmp_path)
    assert ok.exit_code == 0, ok.error
    bad = validation.validate("input", schema, b'{"source":"192.0.2.10","description":"a\\tb"}', tmp_path)
    assert bad.errors == [{"parameter": "description", "error": "description_pattern", "value": "a\tb",
                           "field": "description"}]


@pytest.mark.parametrize("outcome", ["reply", "refused", "timeout", "invalid", "error"])
def test_every_probe_outcome_passes_the_output_schemas(outcome, tmp_path):
    probe = {"target": "127.0.0.1", "port": 20040, "protocol": "udp", "family": "ipv4", "instance": "nethvoice1",
             "expect": "asterisk", "outcome": outcome, "rtt_ms": 3.5, "detail": "what happened",
             "answered_by": None, "ok": False}
    documents = {
        "verify-bypass": {"instance": "nethvoice1", "probes": [probe], "nft": [], "notes": []},
        "self-check": {"checked_at": "2026-01-01T00:00:00+00:00", "findings": [], "repaired": [], "probes": [probe]},
    }
    for action, document in documents.items():
        schema = REPO / f"imageroot/actions/{action}/validate-output.json"
        verdict = validation.validate("output", schema, json.dumps(document).encode(), tmp_path)
        assert verdict.exit_code == 0, f"{action}: {verdict.error}"
