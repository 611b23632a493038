"""Every check id and every field error the UI can show has a translation in both
languages (the UI shows `checks.<id>` titles and maps `error` keys to fields)."""

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "imageroot" / "pypkg" / "nethvoice_bypass"
FIELD_ERRORS = [  # what the actions return for their form fields (and verify-bypass for its targets)
    "source_host_bits_set", "source_format", "source_wrong_family", "source_required",
    "source_already_forwarded", "port_sips_not_supported", "port_reserved_by_proxy", "instance_not_found",
    "instance_required", "instance_no_nethvoice", "instance_no_sip_port",
    "allow_any_source_conflicts_with_source", "trunks_not_found", "trunks_other_instance", "trunks_duplicate",
    "nat_external_address_private", "nat_external_address_format", "nat_external_address_not_ipv4",
    "nat_local_networks_format", "domain_aliases_format", "domain_aliases_duplicate",
    "domain_aliases_owned_by_nethvoice", "domain_aliases_route_exists", "id_not_found", "targets_format",
    "targets_not_unicast",
]


def flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


@pytest.mark.parametrize("lang", ["en", "it"])
def test_checks_and_field_errors_are_translated(lang):
    keys = flat(json.loads((REPO / "ui" / "public" / "i18n" / lang / "translation.json").read_text()))
    checks = set(re.findall(r'finding\("([a-z0-9_]+)"', (LIBRARY / "checks.py").read_text()))
    assert len(checks) >= 15
    missing = [c for c in checks if f"checks.{c}" not in keys]
    missing += [e for e in FIELD_ERRORS if not any(k.endswith("." + e) for k in keys)]
    assert missing == []


@pytest.mark.parametrize("lang", ["en", "it"])
def test_every_probe_outcome_has_a_label_and_a_tag_colour(lang):
    keys = flat(json.loads((REPO / "ui" / "public" / "i18n" / lang / "translation.json").read_text()))
    schema = json.loads((REPO / "imageroot/actions/verify-bypass/validate-output.json").read_text())
    outcomes = schema["properties"]["probes"]["items"]["properties"]["outcome"]["enum"]
    assert {"reply", "refused", "timeout", "invalid", "error"} <= set(outcomes)
    assert [o for o in outcomes if f"status.outcome.{o}" not in keys] == []
    kinds = re.search(r"OUTCOME_TAG_KINDS = \{(.*?)\}", (REPO / "ui/src/mixins/format.js").read_text(), re.S).group(1)
    assert set(re.findall(r"(\w+):", kinds)) == set(outcomes)
