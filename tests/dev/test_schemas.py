"""Every schema the agent would load compiles in the agent's own engine (gojsonschema
v1.2.0, through dev/validator): Go's regexp refuses what Python's re accepts, and a
schema that does not compile aborts every call of its action."""

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
