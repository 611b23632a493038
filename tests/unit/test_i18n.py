"""Every check id and every field error the UI can show has a translation in both
languages (the UI shows `checks.<id>` titles and maps `error` keys to fields)."""

import json
import re
from pathlib import Path

import pytest
from nethvoice_bypass.changes import ADD_ROUTE, DB_OPS, RECORD_OPS, REMOVE_ROUTE, RULE_OPS
from nethvoice_bypass.checks import CONFLICT_IDS

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
    "domain_aliases_owned_by_nethvoice", "domain_aliases_route_exists", "id_not_found",
    # the guards (guards.py, port_guards.py)
    "source_scoped", "source_ipv4_mapped", "source_loopback", "source_unspecified", "source_multicast",
    "source_broadcast", "source_reserved", "source_all_addresses", "source_includes_special", "source_duplicate",
    "port_in_use", "port_invalid_port",
    "domain_aliases_invalid_character", "domain_aliases_empty_label", "domain_aliases_label_hyphen",
    "domain_aliases_label_too_long", "domain_aliases_too_long", "domain_aliases_idn", "domain_aliases_ipv6_literal",
    "nat_external_address_network", "nat_external_address_unspecified", "nat_external_address_multicast",
    "nat_external_address_broadcast", "nat_external_address_reserved",
    "nat_local_networks_not_ipv4", "nat_local_networks_host_bits_set", "nat_local_networks_all_addresses",
    "nat_local_networks_unspecified", "nat_local_networks_loopback", "nat_local_networks_multicast",
    "nat_local_networks_broadcast", "nat_local_networks_reserved", "nat_local_networks_includes_special",
    "targets_format", "targets_not_unicast",
]


OPS = (*RULE_OPS, "flush_conntrack", *DB_OPS, ADD_ROUTE, REMOVE_ROUTE, *RECORD_OPS)
FIELD_ERRORS += ["keep_theirs_not_owned", "put_ours_back_not_owned", "put_ours_back_both_ways"]


def flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


@pytest.mark.parametrize("lang", ["en", "it"])
def test_checks_and_field_errors_are_translated(lang):
    keys = flat(json.loads((REPO / "ui" / "public" / "i18n" / lang / "translation.json").read_text()))
    checks = set(re.findall(r'finding\("([a-z0-9_]+)"', (LIBRARY / "checks.py").read_text())) | set(CONFLICT_IDS.values())
    assert len(checks) >= 15
    missing = [c for c in checks if f"checks.{c}" not in keys]
    missing += [e for e in FIELD_ERRORS if not any(k.endswith("." + e) for k in keys)]
    missing += [f"plan.op.{op}" for op in OPS if f"plan.op.{op}" not in keys]
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
