"""Conflicts, ownership and the self-check on the module's page, against the sandbox node.

A conflict is made the way an admin makes one: the module bypasses a trunk, then someone
sets another outbound proxy in FreePBX's database (or removes a forward's rule with
firewall-cmd). The page shows both values and both ways out; each way out is previewed
(reconcile-bypass with dry_run), then applied, and the database or firewalld is checked
directly. Every test leaves the sandbox as it found it.
"""

import pytest
from ns8dev.procs import wait_for
from uihelpers import outbound_proxy, rich_rules, run_action, translations

pytestmark = pytest.mark.e2e

TRUNK_ID, TRUNK_NAME = "2", "Custom-Voip"
TRUNK_KEY = f"trunk:nethvoice1:{TRUNK_ID}"
ADMIN_PROXY = "sip:192.0.2.99:5060;lr"  # what an admin sets by hand: not NethVoice's proxy
E2E_SOURCE = "198.51.100.77"  # a device no other test uses
E2E_FORWARD_ID = f"udp-ipv4-5060-{E2E_SOURCE}"


def set_outbound_proxy(sandbox, value):
    sandbox.sql(f"UPDATE pjsip SET data='{value}' WHERE id='{TRUNK_ID}' AND keyword='outbound_proxy'")


def bypass_status(sandbox):
    status = run_action(sandbox, "get-status", None)
    assert status["exit_code"] == 0, status["error"]
    return status["output"]["bypass"]


def the_trunk(sandbox):
    return next(t for t in bypass_status(sandbox)["trunks"]["nethvoice1"] if str(t["id"]) == TRUNK_ID)


def configure(sandbox, data):
    done = run_action(sandbox, "configure-bypass", data)
    assert done["exit_code"] == 0, done["error"]
    return done["output"]


@pytest.fixture
def bypassed_trunk(sandbox):
    """Custom-Voip bypassed by the module; yields NethVoice's outbound proxy value (what the
    trunk had before). Afterwards: un-bypassed, and the trunk's value as it was."""
    configure(sandbox, {"trunks": []})
    original = outbound_proxy(sandbox, TRUNK_ID)
    assert original.startswith("sip:"), original
    configure(sandbox, {"trunks": [TRUNK_NAME]})
    assert outbound_proxy(sandbox, TRUNK_ID) == ""
    yield original
    configure(sandbox, {"trunks": []})
    set_outbound_proxy(sandbox, original)
    assert not bypass_status(sandbox)["conflicts"]


def wait_gone(locator, what):
    wait_for(lambda: locator.count() == 0, 30, what)


def test_trunk_conflict_on_the_status_page_with_both_ways_out(app, sandbox, bypassed_trunk):
    en = translations("en")
    frame = app.frame
    set_outbound_proxy(sandbox, ADMIN_PROXY)  # someone sets another outbound proxy
    frame.locator("[data-test=refresh-status]").click()
    conflict = frame.locator(f'[data-test=checks] .conflict[data-conflict="{TRUNK_KEY}"]')
    conflict.wait_for()
    assert conflict.get_attribute("data-check") == "conflict_trunk_proxy_changed"
    assert conflict.get_attribute("data-severity") == "warning"
    assert conflict.locator(".title").inner_text() == en["checks.conflict_trunk_proxy_changed"]
    assert ADMIN_PROXY in conflict.locator(".bx--inline-notification__subtitle").inner_text()  # the message
    assert conflict.locator("[data-test=conflict-ours] .value").inner_text() == en["conflicts.no_outbound_proxy"]
    assert conflict.locator("[data-test=conflict-theirs] .value").inner_text() == ADMIN_PROXY
    assert TRUNK_NAME in conflict.locator("[data-test=conflict-subject] .value").inner_text()
    trunks = frame.locator("[data-test=summary-trunks]")
    assert trunks.locator(".bx--tag", has_text=en["trunks.conflict"]).count() == 1
    app.screenshot("conflicts")

    # put ours back: previewed, then applied
    conflict.locator("[data-test=put-ours-back]").click()
    modal = frame.locator("[data-test=resolve-modal]")
    change = modal.locator(".plan-change[data-op=bypass_trunk]")
    change.wait_for()
    assert modal.locator(".plan-change").count() == 1
    assert TRUNK_NAME in change.inner_text() and ADMIN_PROXY in change.inner_text()
    assert change.locator(".why").inner_text() == "put back as the module set it"
    assert outbound_proxy(sandbox, TRUNK_ID) == ADMIN_PROXY  # only a preview so far
    app.screenshot("conflicts-preview")
    app.modal_primary("resolve-modal").click()
    wait_for(lambda: outbound_proxy(sandbox, TRUNK_ID) == "", 30, "the module's value in the database")
    modal.wait_for(state="hidden")
    wait_gone(conflict, "the conflict to leave the page")
    assert the_trunk(sandbox)["managed"] is True

    # the same conflict again: keep theirs
    set_outbound_proxy(sandbox, ADMIN_PROXY)
    frame.locator("[data-test=refresh-status]").click()
    conflict.wait_for()
    conflict.locator("[data-test=keep-theirs]").click()
    change = modal.locator(".plan-change[data-op=release_trunk]")
    change.wait_for()
    assert change.locator("[data-test=record-only]").count() == 1  # the world stays as it is
    assert modal.locator("[data-test=resolve-intro]").inner_text() == en["conflicts.intro.keep_theirs"]
    app.modal_primary("resolve-modal").click()
    modal.wait_for(state="hidden")
    wait_gone(conflict, "the conflict to leave the page")
    assert outbound_proxy(sandbox, TRUNK_ID) == ADMIN_PROXY
    trunk = the_trunk(sandbox)
    assert trunk["managed"] is False and trunk["conflict"] is False
    assert not bypass_status(sandbox)["conflicts"]
    wait_for(lambda: not app.pending_task_listeners(), 10, "task listeners to be released")


def test_a_conflicts_values_are_shown_as_text_never_as_markup(app, sandbox, bypassed_trunk):
    markup = '<b data-test="injected">x</b>'
    set_outbound_proxy(sandbox, markup)  # FreePBX takes any text there
    frame = app.frame
    frame.locator("[data-test=refresh-status]").click()
    conflict = frame.locator(f'[data-test=checks] .conflict[data-conflict="{TRUNK_KEY}"]')
    conflict.wait_for()
    assert markup in conflict.locator(".bx--inline-notification__subtitle").inner_text()
    assert conflict.locator("[data-test=conflict-theirs] .value").inner_text() == markup
    assert frame.locator("[data-test=injected]").count() == 0
    conflict.locator("[data-test=put-ours-back]").click()
    modal = frame.locator("[data-test=resolve-modal]")
    modal.locator(".plan-change[data-op=bypass_trunk]").wait_for()
    assert markup in modal.inner_text() and frame.locator("[data-test=injected]").count() == 0
    modal.locator(".bx--modal-footer .bx--btn--secondary").click()  # Cancel: nothing changes
    modal.wait_for(state="hidden")
    assert outbound_proxy(sandbox, TRUNK_ID) == markup


def test_trunks_page_shows_the_value_given_back_and_the_conflict(app, sandbox, bypassed_trunk):
    en = translations("en")
    app.go("trunks")
    frame = app.frame
    row = frame.locator("tr", has=frame.locator(f'[data-trunk-name="{TRUNK_NAME}"]'))
    before = row.locator(f'[data-trunk-before="{TRUNK_ID}"]')
    before.wait_for()
    assert bypassed_trunk in before.inner_text()  # what un-bypassing gives back
    assert row.locator(f'[data-trunk-conflict="{TRUNK_ID}"]').count() == 0

    set_outbound_proxy(sandbox, ADMIN_PROXY)
    frame.locator("[data-test=refresh-trunks]").click()
    tag = row.locator(f'[data-trunk-conflict="{TRUNK_ID}"]')
    tag.wait_for()
    assert tag.inner_text() == en["trunks.conflict"]
    conflict = frame.locator(f'[data-test=trunks-conflicts] [data-conflict="{TRUNK_KEY}"]')
    assert conflict.locator("[data-test=conflict-theirs] .value").inner_text() == ADMIN_PROXY
    app.screenshot("trunks-conflict")

    conflict.locator("[data-test=put-ours-back]").click()
    modal = frame.locator("[data-test=resolve-modal]")
    modal.locator(".plan-change[data-op=bypass_trunk]").wait_for()
    app.modal_primary("resolve-modal").click()
    wait_for(lambda: outbound_proxy(sandbox, TRUNK_ID) == "", 30, "the module's value in the database")
    wait_gone(tag, "the conflict tag to go")
    assert conflict.count() == 0


def externip_rows(sandbox):
    return sandbox.sql("SELECT val FROM kvstore_Sipsettings WHERE `key`='externip' AND id='noid'")


def test_nat_form_tags_owned_settings_and_keeps_an_admins_address(app, sandbox):
    configure(sandbox, {"nat": None})
    original = externip_rows(sandbox)
    try:
        configure(sandbox, {"nat": {"external_address": "203.0.113.5", "local_networks": ["192.0.2.0/24"]}})
        app.go("trunks")
        frame = app.frame
        owned = frame.locator("[data-test=nat-owned]")
        owned.wait_for()
        tags = owned.locator("[data-nat-owned]")
        assert {tags.nth(i).get_attribute("data-nat-owned") for i in range(tags.count())} == \
            {"externip", "localnets"}
        assert translations("en")["plan.setting.externip"] in owned.inner_text()

        # someone sets another external address in FreePBX: a conflict in the NAT form
        sandbox.sql("UPDATE kvstore_Sipsettings SET val='203.0.113.9' WHERE `key`='externip' AND id='noid'")
        frame.locator("[data-test=refresh-trunks]").click()
        conflict = frame.locator('[data-test=nat-conflicts] [data-conflict="nat:nethvoice1:externip"]')
        conflict.wait_for()
        assert conflict.locator("[data-test=conflict-ours] .value").inner_text() == "203.0.113.5"
        assert conflict.locator("[data-test=conflict-theirs] .value").inner_text() == "203.0.113.9"
        conflict.locator("[data-test=keep-theirs]").click()
        modal = frame.locator("[data-test=resolve-modal]")
        modal.locator(".plan-change[data-op=release_nat]").wait_for()
        app.modal_primary("resolve-modal").click()
        wait_gone(conflict, "the conflict to leave the NAT form")
        wait_for(lambda: owned.locator("[data-nat-owned]").count() == 1, 30, "externip no longer owned")
        assert owned.locator("[data-nat-owned=localnets]").count() == 1
        assert externip_rows(sandbox) == [["203.0.113.9"]]
    finally:
        configure(sandbox, {"nat": None})  # gives back what the module still owns
        if original:
            sandbox.sql(f"UPDATE kvstore_Sipsettings SET val='{original[0][0]}' WHERE `key`='externip' "
                        "AND id='noid'")
        else:
            sandbox.sql("DELETE FROM kvstore_Sipsettings WHERE `key`='externip' AND id='noid'")
        assert externip_rows(sandbox) == original


def test_check_now_does_not_repair_unless_asked(app, sandbox, bypassed_trunk):
    en = translations("en")
    env = sandbox.environments["nethvoice1"]
    nethvoice_proxy = f"sip:{env['PROXY_IP']}:{env.get('PROXY_PORT', '5060')};lr"
    set_outbound_proxy(sandbox, nethvoice_proxy)  # NethVoice put its proxy back: drift
    frame = app.frame
    tile = frame.locator("[data-test=self-check]")
    times = tile.locator("[data-test=self-check-time]")
    tile.wait_for()
    before = times.inner_text() if times.count() else None

    frame.locator("[data-test=check-now]").click()
    wait_for(lambda: times.count() and times.inner_text() != before, 60, "a new self-check on the page")
    tile.locator("[data-test=self-check-not-repaired]").wait_for()
    assert outbound_proxy(sandbox, TRUNK_ID) == nethvoice_proxy  # checked, not repaired
    frame.locator("[data-test=checks] .check[data-check=trunk_proxy_returned]").wait_for()
    app.screenshot("status-check-without-repair")

    before = times.inner_text()
    frame.locator("[data-test=check-and-repair]").click()
    wait_for(lambda: outbound_proxy(sandbox, TRUNK_ID) == "", 60, "the self-check to repair the drift")
    wait_for(lambda: times.inner_text() != before, 30, "the repairing self-check on the page")
    repaired = tile.locator("[data-test=self-check-repaired] [data-op=bypass_trunk]")
    repaired.wait_for()
    assert TRUNK_NAME in repaired.inner_text()
    assert tile.locator("[data-test=self-check-not-repaired]").count() == 0
    assert tile.locator("[data-test=self-check-repairs]").inner_text().startswith("1 ")
    wait_gone(frame.locator("[data-test=checks] .check[data-check=trunk_proxy_returned]"),
              "the drift finding to go")
    assert en["status.check_and_repair"] in frame.locator("[data-test=check-and-repair]").inner_text()


@pytest.fixture
def e2e_forward(sandbox):
    """A forward for E2E_SOURCE, removed afterwards with whatever rule of it is left."""
    yield
    listed = run_action(sandbox, "list-port-forwards", {})["output"]["forwards"]
    if any(f["id"] == E2E_FORWARD_ID for f in listed):
        assert run_action(sandbox, "remove-port-forward", {"id": E2E_FORWARD_ID})["exit_code"] == 0
    for permanent in (False, True):
        for rule in rich_rules(sandbox, permanent):
            if f'source address="{E2E_SOURCE}"' in rule:
                args = ["--permanent"] if permanent else []
                sandbox.firewalld.firewall_cmd(*args, f"--remove-rich-rule={rule}")


def remove_rule(sandbox, rule):
    sandbox.firewalld.firewall_cmd(f"--remove-rich-rule={rule}")
    sandbox.firewalld.firewall_cmd("--permanent", f"--remove-rich-rule={rule}")


def test_removed_forward_rule_is_a_conflict_on_the_forwards_page(app, sandbox, e2e_forward):
    added = run_action(sandbox, "add-port-forward", {"source": E2E_SOURCE})
    assert added["exit_code"] == 0, added["error"]
    rule = added["output"]["forward"]["rule"]
    remove_rule(sandbox, rule)  # someone removes it with firewall-cmd

    app.go("forwards")
    frame = app.frame
    conflict = frame.locator(f'[data-test=forwards-conflicts] [data-conflict="forward:{E2E_FORWARD_ID}"]')
    conflict.wait_for()
    assert conflict.get_attribute("data-kind") == "forward_removed"
    assert conflict.locator("[data-test=conflict-ours] .value").inner_text() == rule
    assert frame.locator(f'[data-forward-conflict="{E2E_FORWARD_ID}"]').count() == 1
    app.screenshot("forwards-conflict")

    conflict.locator("[data-test=put-ours-back]").click()
    modal = frame.locator("[data-test=resolve-modal]")
    modal.locator(".plan-change[data-op=add_rule]").first.wait_for()
    assert modal.locator(".plan-change[data-op=add_rule]").count() == 2  # runtime and permanent
    assert rule not in rich_rules(sandbox)
    app.modal_primary("resolve-modal").click()
    wait_gone(conflict, "the conflict to leave the page")
    assert rule in rich_rules(sandbox) and rule in rich_rules(sandbox, permanent=True)
    state = frame.locator("tr", has=frame.locator(f'[data-forward-id="{E2E_FORWARD_ID}"]')).locator(".state-tag")
    wait_for(lambda: state.get_attribute("data-state") == "in_sync", 30, "the forward in sync again")


def test_adopted_forward_is_tagged_and_its_rule_stays_when_removed(app, sandbox, e2e_forward):
    preview = run_action(sandbox, "add-port-forward", {"source": E2E_SOURCE, "dry_run": True})
    assert preview["exit_code"] == 0, preview["error"]
    rule = preview["output"]["forward"]["rule"]
    # the manual procedure wrote the very rule before the module was installed
    sandbox.firewalld.firewall_cmd(f"--add-rich-rule={rule}")
    sandbox.firewalld.firewall_cmd("--permanent", f"--add-rich-rule={rule}")
    added = run_action(sandbox, "add-port-forward", {"source": E2E_SOURCE})
    assert added["exit_code"] == 0, added["error"]
    assert added["output"]["forward"].get("origin") == "adopted", added["output"]

    app.go("forwards")
    frame = app.frame
    row = frame.locator("tr", has=frame.locator(f'[data-forward-id="{E2E_FORWARD_ID}"]'))
    origin = row.locator("[data-origin=adopted]")
    origin.wait_for()
    en = translations("en")
    assert origin.inner_text() == en["forwards.origin.adopted"]
    assert origin.get_attribute("title") == en["forwards.origin_adopted_description"]

    frame.locator(f'[data-remove="{E2E_FORWARD_ID}"]').click()
    confirm = frame.locator("[data-test=remove-modal] [data-test=remove-confirm]")
    confirm.wait_for()
    assert confirm.inner_text().strip() == en["forwards.remove_confirm_adopted"]
    app.modal_primary("remove-modal").click()
    wait_gone(frame.locator(f'[data-forward-id="{E2E_FORWARD_ID}"]'), "the forward to leave the table")
    assert rule in rich_rules(sandbox) and rule in rich_rules(sandbox, permanent=True)  # it was there before
