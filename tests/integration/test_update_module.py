"""A node that updates the module keeps its bypass: the record written by the version
before the ownership redesign (tests/fixtures/record-v1, made by that version on this
sandbox) is migrated by update-module, once, with an audit record, and the module keeps
managing the same forwards, trunks, NAT settings and aliases, down to giving them back."""

import json
import shutil
from pathlib import Path

import pytest
from nethvoice_bypass.store import Store

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "record-v1"


def site(sandbox):
    return {"pjsip": sandbox.sql("SELECT id, data FROM pjsip WHERE keyword='outbound_proxy' ORDER BY id"),
            "kvstore": sandbox.sql("SELECT `key`, val FROM kvstore_Sipsettings WHERE `key` IN ('externip', "
                                   "'localnets') ORDER BY `key`")}


@pytest.fixture
def version_1_node(actions, sandbox, cluster_api, clean_forwards, reinstalled):
    """The node as the version 1 module left it: its state files, its rules in firewalld,
    FreePBX's trunks and NAT settings, the proxy's route."""
    seeded = site(sandbox)
    world = json.loads((FIXTURE / "world.json").read_text())
    for name in ("bypass.json", "audit.jsonl"):
        shutil.copy(FIXTURE / name, sandbox.state_dir / name)
    record = json.loads((FIXTURE / "bypass.json").read_text())
    for rule in (e["rule"] for e in record["forwards"].values()):
        for config in ([], ["--permanent"]):
            sandbox.firewalld.firewall_cmd(*config, f"--add-rich-rule={rule}")
    for tid, value in world["pjsip_outbound_proxy"]:
        sandbox.sql(f"UPDATE pjsip SET data='{value}' WHERE id='{tid}' AND keyword='outbound_proxy'")
    for key, value in world["kvstore"]:
        sandbox.sql(f"REPLACE INTO kvstore_Sipsettings (`key`, val, type, id) VALUES ('{key}', '{value}', "
                    f"{'NULL' if key == 'externip' else chr(39) + 'json-arr' + chr(39)}, 'noid')")
    token = cluster_api.login()
    out = cluster_api.run_task("module/nethvoice-proxy1", "add-route", {"domain": "pbx.customer.example", "address": [
        {"uri": "sip:10.5.4.1:20024", "description": "nethvoice1 via nethvoice-bypass"}]}, token=token)
    assert out["exit_code"] == 0, out["error"]
    # before version 1 touched them: trunk 3 had been bypassed by hand (the fixture's run
    # emptied it, then handed it to the module), everything else as seeded
    before_version_1 = dict(seeded, pjsip=[[tid, "" if tid == "3" else value] for tid, value in seeded["pjsip"]])
    try:
        yield before_version_1
    finally:
        sandbox.sql("UPDATE pjsip SET data='sip:10.5.4.1:5060;lr' WHERE keyword='outbound_proxy' AND id IN "
                    "('1', '2', '3')")


def test_update_module_migrates_the_record_and_the_bypass_keeps_working(actions, sandbox, cluster_api,
                                                                        version_1_node):
    actions.run("update-module", {"module_url": "ghcr.io/nethserver/nethvoice-bypass:latest"})
    record = json.loads((sandbox.state_dir / "bypass.json").read_text())
    assert record["version"] == 2
    trail = Store(str(sandbox.state_dir)).audit_all()
    migrations = [r for r in trail if r.get("action") == "migrate"]
    assert len(migrations) == 1 and migrations[0]["assumed"]
    actions.run("update-module", {})  # once: a second update finds version 2
    trail = Store(str(sandbox.state_dir)).audit_all()
    assert len([r for r in trail if r.get("action") == "migrate"]) == 1

    v1 = json.loads((FIXTURE / "bypass.json").read_text())
    status = actions.run("get-status")["bypass"]
    assert sorted(f["id"] for f in status["forwards"]) == sorted(v1["forwards"])
    assert {f["state"] for f in status["forwards"]} == {"in_sync"}
    assert sorted(t["id"] for t in status["trunks"]["nethvoice1"] if t["managed"]) == ["2", "3"]
    assert status["nat"]["nethvoice1"]["owned"] == ["externip", "localnets"]
    assert status["conflicts"] == []
    # version 1 routed aliases to ASTERISK_SIP_PORT; on NethVoice 1.8 the route follows the UDP port
    assert "domain_alias_stale" in {c["id"] for c in status["checks"]}
    out = actions.run("reconcile-bypass")
    assert [(c["op"], c["after"]) for c in out["plan"] if c["op"] == "add_route"] == [
        ("add_route", ["sip:10.5.4.1:20040"])]

    actions.run("destroy-module")
    assert site(sandbox) == version_1_node  # trunks and NAT exactly as they were before version 1 touched them
    token = cluster_api.login()
    listed = cluster_api.run_task("module/nethvoice-proxy1", "list-routes", {}, token=token)["output"]
    assert "pbx.customer.example" not in [r["domain"] for r in listed]
