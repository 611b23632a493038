"""What guards.check_domain accepts, the proxy accepts: its add-route input schema and
gojsonschema's `hostname` format, run by the agent's own engine (dev/validator, gojsonschema
v1.2.0). One validator process per batch: the cases are the items of one array."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nethvoice_bypass import guards
from nethvoice_bypass.errors import InvalidValue
from ns8dev import validation

REPO = Path(__file__).resolve().parents[2]
ADD_ROUTE = REPO / "dev/proxy-standin/actions/add-route/validate-input.json"
ROUTE_TARGET = [{"uri": "sip:10.5.4.1:20024", "description": "nethvoice1"}]


def refused_items(tmp_path, name, items_schema, documents):
    """Indexes of the documents the agent's engine refuses, validated as one array."""
    schema = tmp_path / f"{name}.json"
    schema.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
                                  "items": items_schema}))
    verdict = validation.validate("input", schema, validation.go_json(documents).encode(), tmp_path)
    assert verdict.exit_code in (0, 10), verdict.error
    return {int(error["field"].split(".")[0]) for error in verdict.errors}


def add_route_items():
    schema = json.loads(ADD_ROUTE.read_text())
    return {key: value for key, value in schema.items() if key not in ("$schema", "$id")}


def proxy_refuses(tmp_path, domains):
    return refused_items(tmp_path, "add-route", add_route_items(),
                         [{"domain": domain, "address": ROUTE_TARGET} for domain in domains])


def hostname_refuses(tmp_path, names):
    return refused_items(tmp_path, "hostname", {"type": "string", "format": "hostname"}, names)


def accepted(texts):
    names = []
    for text in texts:
        try:
            names.append(guards.check_domain(text))
        except InvalidValue:
            pass
    return names


EXAMPLES = ["pbx.customer.example", "PBX.Customer.Example.", "Bücher.example", "straße.de", "中文.example",
            "한국.example", "xn--bcher-kva.example", "ab--cd.example", "198.51.100.20", "pbx", "a" * 63 + ".b",
            ".".join(["a" * 63] * 3) + "." + "b" * 61]
label = st.text(st.sampled_from(list("abz09-") + list("üßéπяж中日한ς")), min_size=1, max_size=70)
candidates = st.one_of(st.lists(label, min_size=1, max_size=5).map(".".join), st.text(max_size=30))


def test_the_examples_pass_the_proxy_schema_and_the_hostname_format(tmp_path):
    names = accepted(EXAMPLES)
    assert len(names) == len(EXAMPLES)
    assert proxy_refuses(tmp_path, names) == set() and hostname_refuses(tmp_path, names) == set()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(candidates, min_size=50, max_size=200))
def test_whatever_check_domain_accepts_the_proxy_accepts(tmp_path, batch):
    names = accepted(batch)
    assert proxy_refuses(tmp_path, names) == set()
    assert hostname_refuses(tmp_path, names) == set()


# (text, does gojsonschema's hostname refuse it too): every one is refused by check_domain
REFUSED = [("a'b.example", True), ("x'); DROP TABLE domain; --", True), ("a b.example", True),
           ("a_b.example", True), ('a"b.example', True), ("a..b", True), (".a", True), ("-a.example", True),
           ("a-.example", True), ("a" * 64 + ".example", True), (".".join(["a" * 63] * 4) + "x", True),
           ("2001:db8::1", True), ("[2001:db8::1]", True), ("pbx.example:5060", True), ("a\\b", True),
           # refused by check_domain only: DNS's 253 (gojsonschema allows < 256), IDNA, not-an-address
           (".".join(["a" * 63] * 3) + "." + "b" * 62, False), ("xn--zz.example", False), ("1.2.3", False)]


def test_what_check_domain_refuses(tmp_path):
    for text, _ in REFUSED:
        with pytest.raises(InvalidValue):
            guards.check_domain(text)
    refused = hostname_refuses(tmp_path, [text.lower() for text, _ in REFUSED])
    assert refused == {i for i, (_, also) in enumerate(REFUSED) if also}


def test_the_proxy_schema_checks_no_name_so_the_module_must(tmp_path):
    # gojsonschema 1.2.0 has no idn-hostname checker and passes unknown formats: add-route
    # takes any non-empty string into its SQL (20writeroute) as long as it is a string
    assert re.search(r'"format":\s*"idn-hostname"', ADD_ROUTE.read_text())
    assert proxy_refuses(tmp_path, ["x'); DROP TABLE domain; --", "a b", "", "2001:db8::1"]) == {2}
