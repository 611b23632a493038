"""The module's cluster-admin page in headless Chromium, against the sandbox node.

Everything goes through the UI as an installer would use it: the cluster-admin
stand-in (dev/cluster-admin) logs in to the api-server stand-in, the module UI
(ui/dist) runs every call as an action through it, and the actions change the
sandbox's real firewalld and MariaDB. Screenshots: tests/artifacts/*.png.
"""

import json
import re

import pytest
from ns8dev.procs import wait_for
from uihelpers import (
    MODULE_ID,
    App,
    message,
    outbound_proxy,
    rich_rules,
    run_action,
    translations,
)

pytestmark = pytest.mark.e2e

E2E_SOURCE = "198.51.100.23"  # a device outside the sandbox's LAN: no other test uses it
E2E_FORWARD_ID = f"udp-ipv4-5060-{E2E_SOURCE}"
TRUNK_ID, TRUNK_NAME = "2", "Custom-Voip"


def forward_rules(rules, source):
    return {r for r in rules if f'source address="{source}"' in r and "forward-port" in r}


def remove_forward_if_present(sandbox, fid):
    listed = run_action(sandbox, "list-port-forwards", {})
    if any(f["id"] == fid for f in listed["output"]["forwards"]):
        assert run_action(sandbox, "remove-port-forward", {"id": fid})["exit_code"] == 0


def test_login_rejects_a_wrong_password(page, sandbox, ui_dist):
    page.goto(f"{sandbox.api_url}/#/apps/{MODULE_ID}")
    page.fill("#login-username", sandbox.admin["username"])
    page.fill("#login-password", "not-the-password")
    page.click("#login-submit")
    error = page.locator("#login-error")
    error.wait_for()
    assert "incorrect Username or Password" in error.inner_text()
    assert page.locator("#app-frame").is_hidden()


def test_status_page_shows_core_cards_checks_and_probes(app, sandbox):
    status = run_action(sandbox, "get-status", None)
    assert status["exit_code"] == 0, status["error"]
    output = status["output"]
    frame = app.frame
    assert frame.locator("[data-test=card-instance] .title").inner_text() == output["instance"] == MODULE_ID
    assert frame.locator("[data-test=card-node] .title").inner_text() == f"Node {output['node']}"
    # wait for the page's own get-status to have rendered the checks
    frame.locator("[data-test=checks] .check, [data-test=no-problems]").first.wait_for()
    en = translations("en")
    checks = output["bypass"]["checks"]
    rendered = frame.locator("[data-test=checks] .check")
    assert rendered.count() == len(checks)
    titles = {rendered.nth(i).get_attribute("data-check"): rendered.nth(i).locator(".title").inner_text()
              for i in range(rendered.count())}
    for check in checks:
        assert titles[check["id"]] == en.get(f"checks.{check['id']}", check["id"])
    if not checks:
        assert frame.locator("[data-test=no-problems]").is_visible()
    nethvoice = frame.locator("[data-test=summary-nethvoice]")
    assert "nethvoice1" in nethvoice.inner_text()

    frame.locator("[data-test=verify]").click()
    table = frame.locator("[data-test=probe-table]")
    table.wait_for(timeout=60_000)
    rows = table.locator(".probe-row")
    assert rows.count() >= 1
    for i in range(rows.count()):
        assert rows.nth(i).get_attribute("data-outcome") in ("reply", "refused", "timeout")
    assert frame.locator("[data-test=verify-error]").count() == 0
    app.screenshot("status")


def test_status_page_with_firewalld_stopped_names_the_outage(app, sandbox):
    added = run_action(sandbox, "add-port-forward", {"source": "192.0.2.10"})
    assert added["exit_code"] == 0, added["error"]
    sandbox.firewalld.stop_daemon()
    try:
        app.frame.locator("[data-test=refresh-status]").click()
        check = app.frame.locator("[data-test=checks] .check[data-check=firewalld_unreachable]")
        check.wait_for(timeout=30_000)
        assert check.locator(".title").inner_text() == translations("en")["checks.firewalld_unreachable"]
        severities = app.frame.locator("[data-test=checks] .check")
        assert severities.first.get_attribute("data-severity") == "error"  # errors first
        assert "systemctl start firewalld" in check.inner_text()
        forwards = app.frame.locator("[data-test=summary-forwards]")
        assert translations("en")["forwards.state.unknown"] in forwards.inner_text()
        assert "nethvoice1" in app.frame.locator("[data-test=summary-nethvoice]").inner_text()
        app.screenshot("status-firewalld-down")
    finally:
        sandbox.firewalld.start_daemon()
        removed = run_action(sandbox, "remove-port-forward", {"id": added["output"]["forward"]["id"]})
        assert removed["exit_code"] == 0, removed["error"]


def test_status_shows_the_last_self_check_and_check_now_updates_it(app, sandbox):
    tile = app.frame.locator("[data-test=self-check]")
    tile.wait_for()
    times = tile.locator("[data-test=self-check-time]")
    before = times.inner_text() if times.count() else None
    result = sandbox.state_dir / "selfcheck.json"
    app.frame.locator("[data-test=check-now]").click()
    wait_for(lambda: times.count() and times.inner_text() != before, what="a new self-check on the page")
    last = json.loads(result.read_text())
    assert times.inner_text() == last["checked_at"]
    en = translations("en")
    assert tile.locator("[data-test=self-check-result]").inner_text() == en[f"status.self_check_result.{last['result']}"]
    assert str(last["repairs_total"]) in tile.locator("[data-test=self-check-repairs]").inner_text()
    app.screenshot("status-self-check")


def test_add_forward_previews_then_applies(app, sandbox):
    remove_forward_if_present(sandbox, E2E_FORWARD_ID)
    before = forward_rules(rich_rules(sandbox), E2E_SOURCE)
    assert not before
    app.go("forwards")
    assert "page=forwards" in app.page.evaluate("window.location.hash")
    frame = app.frame
    frame.locator("[data-test=add-forward]").click()
    frame.locator("input[data-test=source-input]").fill(E2E_SOURCE)
    frame.locator("input[data-test=description-input]").fill("e2e test device")
    app.modal_primary("add-modal").click()

    # the dry run: its plan on screen, nothing in firewalld yet
    preview = frame.locator("[data-test=add-preview]")
    preview.wait_for()
    rule = frame.locator("[data-test=preview-rule]").inner_text()
    assert f'source address="{E2E_SOURCE}"' in rule and 'forward-port port="5060"' in rule
    ops = frame.locator("[data-test=add-preview] .plan-change")
    assert {ops.nth(i).get_attribute("data-op") for i in range(ops.count())} >= {"add_rule"}
    assert frame.locator("[data-test=add-preview] [data-op=add_rule]").count() == 2  # runtime + permanent
    assert not forward_rules(rich_rules(sandbox), E2E_SOURCE)
    assert not forward_rules(rich_rules(sandbox, permanent=True), E2E_SOURCE)
    app.screenshot("forwards-preview")

    app.modal_primary("add-modal").click()
    row = frame.locator(f'[data-forward-id="{E2E_FORWARD_ID}"]')
    row.wait_for()
    frame.locator("[data-test=add-modal]").wait_for(state="hidden")  # closed (after its fade-out)
    assert E2E_SOURCE in row.inner_text()
    state = frame.locator("tr", has=row).locator(".state-tag")
    assert state.get_attribute("data-state") == "in_sync"
    assert forward_rules(rich_rules(sandbox), E2E_SOURCE) == {rule.strip()}
    assert forward_rules(rich_rules(sandbox, permanent=True), E2E_SOURCE) == {rule.strip()}
    wait_for(lambda: not app.pending_task_listeners(), 10, "task listeners to be released")
    app.screenshot("forwards")


@pytest.mark.parametrize("lang", ["en", "it"])
def test_invalid_source_shows_the_translated_error_and_changes_nothing(page, sandbox, ui_dist, lang):
    app = App(page, sandbox)
    app.open(f"/apps/{MODULE_ID}?page=forwards", query=f"?lang={lang}")
    app.login()
    frame = app.frame
    frame.locator(".forwards-page [data-test=add-forward]").click()
    runtime, permanent = rich_rules(sandbox), rich_rules(sandbox, permanent=True)
    listed = run_action(sandbox, "list-port-forwards", {})["output"]["forwards"]

    bad = "192.0.2.10/24"
    frame.locator("input[data-test=source-input]").fill(bad)
    app.modal_primary("add-modal").click()
    error = frame.locator("[data-test=field-source] .bx--form-requirement")
    error.wait_for()
    assert error.inner_text().strip() == message(lang, "validation.source_host_bits_set", value=bad)
    assert frame.locator("[data-test=add-preview]").is_hidden()  # no plan for a refused input
    assert frame.locator("[data-test=add-modal] .bx--modal-header__heading").inner_text() == \
        message(lang, "forwards.add_forward")
    app.screenshot(f"forwards-invalid-{lang}")

    # a wrong family is refused too, with its own message
    frame.locator("input[data-test=source-input]").fill("2001:db8::10")
    frame.locator("[data-test=family-ipv4] + label, label:has(input[data-test=family-ipv4])").first.click()
    app.modal_primary("add-modal").click()
    wait_for(lambda: error.inner_text().strip() == message(lang, "validation.source_wrong_family",
                                                             value="2001:db8::10"),
               20, "the wrong-family message")

    assert rich_rules(sandbox) == runtime
    assert rich_rules(sandbox, permanent=True) == permanent
    assert run_action(sandbox, "list-port-forwards", {})["output"]["forwards"] == listed


def test_toggle_trunk_bypass_changes_the_database(app, sandbox):
    # start from the trunk going through the proxy (what a NethVoice install has)
    assert run_action(sandbox, "configure-bypass", {"trunks": []})["exit_code"] == 0
    proxy_value = outbound_proxy(sandbox, TRUNK_ID)
    assert proxy_value.startswith("sip:"), proxy_value

    app.go("trunks")
    frame = app.frame
    row = frame.locator("tr", has=frame.locator(f'[data-trunk-name="{TRUNK_NAME}"]'))
    row.wait_for()
    toggle = row.locator(f'input[data-trunk-toggle="{TRUNK_ID}"]')
    assert not toggle.is_checked()
    assert row.locator("[data-trunk-state]").get_attribute("data-trunk-state") == "proxy"

    row.locator(f'label[for="{toggle.get_attribute("id")}"]').click()
    modal = frame.locator("[data-test=configure-modal]")
    modal.locator("[data-test=plan-preview]").wait_for()
    assert modal.locator(".plan-change").count() == 1
    change = modal.locator(".plan-change[data-op=bypass_trunk]")
    assert TRUNK_NAME in change.inner_text() and proxy_value in change.inner_text()
    assert outbound_proxy(sandbox, TRUNK_ID) == proxy_value  # only a preview so far
    app.screenshot("trunks-preview")

    app.modal_primary("configure-modal").click()
    wait_for(lambda: outbound_proxy(sandbox, TRUNK_ID) == "", 30, "the trunk's outbound proxy to be removed")
    wait_for(lambda: row.locator("[data-trunk-state]").get_attribute("data-trunk-state") == "bypassed",
               30, "the page to show the trunk bypassed")
    assert toggle.is_checked()
    modal.wait_for(state="hidden")
    app.screenshot("trunks")

    # and back through the proxy
    row.locator(f'label[for="{toggle.get_attribute("id")}"]').click()
    modal.locator(".plan-change[data-op=restore_trunk]").wait_for()
    app.modal_primary("configure-modal").click()
    wait_for(lambda: outbound_proxy(sandbox, TRUNK_ID) == proxy_value, 30, "the outbound proxy to come back")
    wait_for(lambda: row.locator("[data-trunk-state]").get_attribute("data-trunk-state") == "proxy",
               30, "the page to show the trunk via the proxy")


def managed_trunk(sandbox, trunk_id):
    status = run_action(sandbox, "get-status", None)["output"]
    return next(t for t in status["bypass"]["trunks"]["nethvoice1"] if str(t["id"]) == trunk_id)["managed"]


def test_a_trunk_bypassed_by_hand_is_handed_to_the_module(app, sandbox):
    assert run_action(sandbox, "configure-bypass", {"trunks": []})["exit_code"] == 0
    proxy_value = outbound_proxy(sandbox, TRUNK_ID)
    # the manual procedure: the outbound proxy removed in FreePBX
    sandbox.sql(f"UPDATE pjsip SET data='' WHERE id='{TRUNK_ID}' AND keyword='outbound_proxy'")
    try:
        app.go("trunks")
        frame = app.frame
        row = frame.locator("tr", has=frame.locator(f'[data-trunk-name="{TRUNK_NAME}"]'))
        manage = row.locator(f'[data-trunk-manage="{TRUNK_ID}"]')
        manage.wait_for()
        toggle = row.locator(f'input[data-trunk-toggle="{TRUNK_ID}"]')
        assert toggle.is_checked() and toggle.is_disabled()

        manage.click()
        modal = frame.locator("[data-test=configure-modal]")
        change = modal.locator(".plan-change[data-op=manage_trunk]")
        change.wait_for()
        assert modal.locator(".plan-change").count() == 1 and TRUNK_NAME in change.inner_text()
        assert managed_trunk(sandbox, TRUNK_ID) is False  # only a preview so far

        app.modal_primary("configure-modal").click()
        modal.wait_for(state="hidden")
        wait_for(lambda: manage.count() == 0, 30, "the page to show the trunk managed")
        assert toggle.is_checked() and not toggle.is_disabled()
        assert managed_trunk(sandbox, TRUNK_ID) is True and outbound_proxy(sandbox, TRUNK_ID) == ""
    finally:
        assert run_action(sandbox, "configure-bypass", {"trunks": []})["exit_code"] == 0
        sandbox.sql(f"UPDATE pjsip SET data='{proxy_value}' WHERE id='{TRUNK_ID}' AND keyword='outbound_proxy'")


def test_nat_form_shows_errors_under_its_fields(app, sandbox):
    externip = lambda: sandbox.sql(  # noqa: E731
        "SELECT val FROM kvstore_Sipsettings WHERE `key`='externip' AND id='noid'")
    before = externip()
    app.go("trunks")
    frame = app.frame
    frame.locator("input[data-test=external-address-input]").fill("192.168.1.1")
    frame.locator("textarea[data-test=local-networks-input]").fill("192.0.2.0/24\n10.1.2.300/24")
    frame.locator("[data-test=nat-preview]").click()
    address_error = frame.locator('[data-test="field-nat.external_address"] .bx--form-requirement')
    networks_error = frame.locator('[data-test="field-nat.local_networks"] .bx--form-requirement')
    address_error.wait_for()
    assert address_error.inner_text().strip() == message("en", "validation.nat_external_address_private",
                                                         value="192.168.1.1")
    assert networks_error.inner_text().strip() == message("en", "validation.nat_local_networks_format",
                                                          value="10.1.2.300/24")
    assert frame.locator("[data-test=configure-modal]").is_hidden()
    assert externip() == before


def test_domain_aliases_preview_apply_and_field_errors(app, sandbox):
    def routed(domain):  # in the proxy stand-in's tables
        return domain in [r["domain"] for r in sandbox.proxy_routes()]

    alias = "pbx.e2e.example"
    assert run_action(sandbox, "configure-bypass", {"domain_aliases": []})["exit_code"] == 0
    assert not routed(alias)
    app.go("trunks")
    frame = app.frame
    field = frame.locator("textarea[data-test=domain-aliases-input]")
    error = frame.locator("[data-test=field-domain_aliases] .bx--form-requirement")
    modal = frame.locator("[data-test=configure-modal]")

    own_host = sandbox.environments["nethvoice1"]["NETHVOICE_HOST"]
    field.fill(f"{own_host}\nnot a domain!")
    frame.locator("[data-test=aliases-preview]").click()
    error.wait_for()
    assert error.inner_text().strip() == "; ".join([
        message("en", "validation.domain_aliases_owned_by_nethvoice", value=own_host),
        message("en", "validation.domain_aliases_invalid_character", value="not a domain!")])
    assert modal.is_hidden()

    field.fill(alias)
    frame.locator("[data-test=aliases-preview]").click()
    change = modal.locator(".plan-change[data-op=add_route]")
    change.wait_for()
    assert alias in change.inner_text()
    assert not routed(alias)  # a preview only
    app.modal_primary("configure-modal").click()
    wait_for(lambda: routed(alias), 30, "the proxy to route the alias")
    listed = frame.locator(f'[data-alias="{alias}"]')
    listed.wait_for()
    assert listed.get_attribute("data-present") == "true"

    assert run_action(sandbox, "configure-bypass", {"domain_aliases": []})["exit_code"] == 0
    assert not routed(alias)


def test_remove_forward_asks_for_confirmation(app, sandbox):
    listed = run_action(sandbox, "list-port-forwards", {})["output"]["forwards"]
    if not any(f["id"] == E2E_FORWARD_ID for f in listed):
        added = run_action(sandbox, "add-port-forward", {"source": E2E_SOURCE, "description": "e2e"})
        assert added["exit_code"] == 0, added["error"]
    rules = forward_rules(rich_rules(sandbox), E2E_SOURCE)
    assert len(rules) == 1

    app.go("forwards")
    frame = app.frame
    frame.locator(f'[data-forward-id="{E2E_FORWARD_ID}"]').wait_for()
    frame.locator(f'[data-remove="{E2E_FORWARD_ID}"]').click()
    modal = frame.locator("[data-test=remove-modal]")
    shown = modal.locator("[data-test=remove-rule]")
    shown.wait_for()
    assert shown.inner_text().strip() == next(iter(rules))
    app.screenshot("forwards-remove")
    assert forward_rules(rich_rules(sandbox), E2E_SOURCE) == rules  # not before the confirmation

    app.modal_primary("remove-modal").click()
    wait_for(lambda: frame.locator(f'[data-forward-id="{E2E_FORWARD_ID}"]').count() == 0, 30,
               "the forward to leave the table")
    assert not forward_rules(rich_rules(sandbox), E2E_SOURCE)
    assert not forward_rules(rich_rules(sandbox, permanent=True), E2E_SOURCE)
    ids = [f["id"] for f in run_action(sandbox, "list-port-forwards", {})["output"]["forwards"]]
    assert E2E_FORWARD_ID not in ids


def test_about_page(app):
    app.go("about")
    frame = app.frame
    assert frame.locator(".about-page h3").inner_text() == "NethVoice proxy bypass"
    assert frame.locator(".about-page .app-logo img").evaluate("img => img.complete && img.naturalWidth") > 0
    assert re.search(MODULE_ID, frame.locator(".about-page").inner_text())
    app.screenshot("about")
