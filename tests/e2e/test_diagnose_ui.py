# SPDX-License-Identifier: GPL-3.0-or-later
"""The Diagnose page against the sandbox's real Kamailio, with real SIP (SIPp) sent from the
remote namespace while the page's window listens: the cause shown first with its ladder's
silence, its fix previewed (nothing changes) and applied (the proxy routes the domain), a
provider that moved fixed by its two fixes in one flow, an empty window said as such, the
window's packets as a pcap file, a hostile User-Agent shown as text, and the action's
validation errors under their fields.
Every test leaves the sandbox as it found it."""

import re
from pathlib import Path

import pytest
from nethvoice_bypass import kamailio
from ns8dev.procs import wait_for
from uihelpers import MODULE_ID, App, message, run_action, translations

pytestmark = pytest.mark.e2e

SIPP = Path(__file__).resolve().parents[2] / "dev/sipp"
MEDIANT, OTHER, NODE = "192.0.2.10", "192.0.2.11", "192.0.2.1"
UNKNOWN = "pbx.unknown.example"
WINDOW = 8  # seconds: long enough for the call and the 4 s after which a UDP request got nothing
RESULT_TIMEOUT_MS = (WINDOW + 60) * 1000


def sipp(sandbox, tmp_path, scenario, ruri, source=MEDIANT):
    return sandbox.remote("sipp", "-sf", SIPP / scenario, "-key", "ruri", ruri, "-m", "1", "-i", source,
                          "-nostdin", "-timeout", "20s", "-timeout_error", f"{NODE}:5060", check=False,
                          cwd=tmp_path, timeout=40).returncode


def trace_on(sandbox):
    return sandbox.in_netns("node", kamailio.siptrace, 5060, "check")


def routed(sandbox, domain):
    return domain in [r["domain"] for r in sandbox.proxy_routes()]


def forward_ids(sandbox):
    return [f["id"] for f in run_action(sandbox, "list-port-forwards", {})["output"]["forwards"]]


@pytest.fixture
def no_aliases(sandbox):
    yield
    done = run_action(sandbox, "configure-bypass", {"domain_aliases": []})
    assert done["exit_code"] == 0, done["error"]
    assert not routed(sandbox, UNKNOWN)


@pytest.fixture
def no_forwards(sandbox):
    """The test's forwards removed afterwards (the sandbox has none of its own)."""
    before = forward_ids(sandbox)
    yield
    added = [fid for fid in forward_ids(sandbox) if fid not in before]
    if added:
        done = run_action(sandbox, "remove-port-forward", {"ids": added})
        assert done["exit_code"] == 0, done["error"]


def start_window(app, sandbox, duration=WINDOW, sources="", include_packets=False):
    """The page's diagnosis started from its form; returns once the proxy's trace is on."""
    app.go("diagnose")
    frame = app.frame
    frame.locator("input[data-test=duration-input]").fill(str(duration))
    frame.locator("textarea[data-test=sources-input]").fill(sources)
    if include_packets:
        frame.locator("[data-test=field-include_packets] label").click()
    frame.locator("[data-test=start-diagnosis]").click()
    running = frame.locator("[data-test=diagnose-running]")
    running.wait_for()
    wait_for(lambda: trace_on(sandbox) or not running.count(), 20,
             "the diagnosis to switch the proxy's trace on")
    if not trace_on(sandbox):  # the task ended first: what the page says, for the failure
        said = frame.locator("[data-test=diagnose-error], [data-test=listened]").first
        pytest.fail(f"the diagnosis never switched the proxy's trace on: {said.inner_text()}")


def problem_card(frame, cause, source=MEDIANT):
    card = frame.locator(f'[data-test=problems] .problem[data-cause="{cause}"][data-source="{source}"]')
    card.wait_for(timeout=RESULT_TIMEOUT_MS)
    return card


def test_unknown_domain_cause_first_with_its_silence_then_its_fix(app, sandbox, tmp_path, no_aliases):
    en = translations("en")
    assert not routed(sandbox, UNKNOWN)
    start_window(app, sandbox, include_packets=True)
    frame = app.frame
    # the agent's progress moves the bar, and the time left is counted down
    time_left = frame.locator("[data-test=time-left]")
    time_left.wait_for()
    assert 0 <= int(time_left.get_attribute("data-seconds")) <= WINDOW
    sipp(sandbox, tmp_path, "invite-silence.xml", f"sip:0510000099@{UNKNOWN}")

    card = problem_card(frame, "unknown_domain")
    assert not trace_on(sandbox)  # given back as it was
    first = frame.locator(f'[data-test=problems] .problem[data-source="{MEDIANT}"]').first
    assert first.get_attribute("data-cause") == "unknown_domain"
    # cause first: its title and what it means on the proxy, then the action's own message
    assert card.locator("[data-test=cause] .title").inner_text() == en["diagnose.cause.unknown_domain.title"]
    assert en["diagnose.cause.unknown_domain.meaning"] in card.locator("[data-test=cause]").inner_text()
    assert UNKNOWN in card.locator("[data-test=problem-message] .value").inner_text()
    assert "05****99" in card.locator("[data-test=problem-example] .value").inner_text()  # the user masked
    # the ladder: the device's INVITE to the proxy, then nothing back, drawn as silence
    steps = card.locator(".ladder-step")
    assert steps.first.get_attribute("data-from") == "device" and steps.first.get_attribute("data-what") == "INVITE"
    silence = card.locator(".ladder-step[data-silence=true]")
    assert silence.count() == 1
    assert (silence.get_attribute("data-from"), silence.get_attribute("data-to")) == ("proxy", "device")
    assert silence.locator("text").text_content().strip() == en["diagnose.ladder_silence"]
    assert "silence" in silence.locator("line.arrow").get_attribute("class")  # dashed
    assert silence.locator(".no-reply-cross").count() == 1
    # the sources table has the Mediant, its request dropped
    row = frame.locator(f'[data-test=sources-table] .source-row[data-source="{MEDIANT}"]')
    assert UNKNOWN in row.inner_text() and row.locator("[data-outcome=dropped]").count() == 1
    assert frame.locator("[data-test=mirror-state]").get_attribute("data-state") == "ours"

    # the window's packets, as a file made in the page
    with app.page.expect_download() as download:
        frame.locator("[data-test=download-pcap]").click()
    saved = download.value
    assert re.fullmatch(r"diagnose-\d{8}T\d{6}Z\.pcap", saved.suggested_filename), saved.suggested_filename
    head = Path(saved.path()).read_bytes()[:4]
    assert head in (bytes.fromhex("d4c3b2a1"), bytes.fromhex("a1b2c3d4"), bytes.fromhex("4d3cb2a1"),
                    bytes.fromhex("a1b23c4d")), head
    app.screenshot("diagnose")

    # its fix: previewed (the plan routes the domain, nothing changes yet), then applied
    offer = card.locator('.fix-offer[data-fix-actions="configure-bypass"]').first
    offer.locator("[data-test=preview-fix]").click()
    modal = frame.locator("[data-test=fix-modal]")
    change = modal.locator(".plan-change[data-op=add_route]")
    change.wait_for()
    assert UNKNOWN in change.inner_text()
    assert f"routes {UNKNOWN}" in modal.locator("[data-test=fix-why]").inner_text()
    assert not routed(sandbox, UNKNOWN)  # a preview only
    app.screenshot("diagnose-fix-preview")
    app.modal_primary("fix-modal").click()
    wait_for(lambda: routed(sandbox, UNKNOWN), 30, "the proxy to route the domain")
    modal.wait_for(state="hidden")
    card.locator("[data-test=fix-applied]").wait_for()
    wait_for(lambda: not app.pending_task_listeners(), 10, "task listeners to be released")


def test_a_provider_that_moved_is_fixed_by_both_fixes_in_one_flow(app, sandbox, tmp_path, no_forwards):
    added = run_action(sandbox, "add-port-forward", {"source": OTHER, "description": "provider"})
    assert added["exit_code"] == 0, added["error"]
    old = added["output"]["forward"]["id"]
    start_window(app, sandbox)
    sipp(sandbox, tmp_path, "rejected-404.xml", f"sip:0666@{NODE}")

    card = problem_card(app.frame, "provider_moved")
    offer = card.locator('.fix-offer[data-fix-actions="add-port-forward,remove-port-forward"]')
    assert offer.locator("[data-test=fix-whys] li").count() == 2
    offer.locator("[data-test=preview-fix]").click()
    modal = app.frame.locator("[data-test=fix-modal]")
    steps = modal.locator(".fix-step")
    steps.nth(1).locator("[data-test=fix-preview]").wait_for()  # both previewed, in order
    assert steps.nth(0).get_attribute("data-fix-action") == "add-port-forward"
    assert steps.nth(1).get_attribute("data-fix-action") == "remove-port-forward"
    assert MEDIANT in steps.nth(0).locator(".plan-change[data-op=add_rule]").first.inner_text()
    assert OTHER in steps.nth(1).locator(".plan-change[data-op=remove_rule]").first.inner_text()
    assert forward_ids(sandbox) == [old]  # previews only
    app.screenshot("diagnose-provider-moved")
    app.modal_primary("fix-modal").click()
    wait_for(lambda: forward_ids(sandbox) == [f"udp-ipv4-5060-{MEDIANT}"], 60, "the forward to move")
    modal.wait_for(state="hidden")
    card.locator("[data-test=fix-applied]").wait_for()


def test_a_window_without_sip_from_outside_says_what_was_listened_to(app, sandbox):
    start_window(app, sandbox, duration=2, sources="198.51.100.99")
    empty = app.frame.locator("[data-test=no-problems]")
    empty.wait_for(timeout=RESULT_TIMEOUT_MS)
    text = empty.inner_text()
    assert translations("en")["diagnose.nothing_found"] in text
    assert message("en", "diagnose.nothing_from_outside", duration="2 seconds",
                   only=" (only from 198.51.100.99)") in text
    assert app.frame.locator("[data-test=problems] .problem").count() == 0


SCANNER_INVITE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a scanner's INVITE, no reply">
  <send><![CDATA[
      INVITE [ruri] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <[ruri]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: [ua]
      Content-Length: 0

  ]]></send>
  <pause milliseconds="3000"/>
</scenario>
"""
HTML = '<img src=x onerror="window.__xss=1">'


def test_a_hostile_user_agent_is_shown_as_text_never_as_markup(app, sandbox, tmp_path):
    """The scanner cause quotes the User-Agent the device sent: text from outside the node."""
    scenario = tmp_path / "scanner-invite.xml"
    scenario.write_text(SCANNER_INVITE)
    start_window(app, sandbox)
    sandbox.remote("sipp", "-sf", scenario, "-key", "ruri", f"sip:0510000099@{NODE}", "-key", "ua",
                   f"friendly-scanner {HTML}", "-m", "1", "-i", MEDIANT, "-nostdin", "-timeout", "20s",
                   "-timeout_error", f"{NODE}:5060", check=False, cwd=tmp_path, timeout=40)
    card = problem_card(app.frame, "scanner_user_agent")
    assert HTML in card.locator("[data-test=problem-message] .value").inner_text()
    frame = app.app_frame()
    assert frame.query_selector("img[src=x]") is None
    app.page.wait_for_timeout(1000)  # an image that fails to load calls onerror at once
    assert not frame.evaluate("window.__xss") and not app.page.evaluate("window.__xss")


@pytest.mark.parametrize("lang", ["en", "it"])
def test_refused_input_shows_under_its_fields(page, sandbox, ui_dist, lang):
    app = App(page, sandbox)
    app.open(f"/apps/{MODULE_ID}?page=diagnose", query=f"?lang={lang}")
    app.login()
    frame = app.frame
    duration = frame.locator("[data-test=field-duration] .bx--form-requirement")
    sources = frame.locator("[data-test=field-sources] .bx--form-requirement")

    frame.locator("input[data-test=duration-input]").fill("301")  # the agent's schema refuses it
    frame.locator("[data-test=start-diagnosis]").click()
    duration.wait_for()
    assert duration.inner_text().strip() == message(lang, "validation.duration_number_lte")

    frame.locator("input[data-test=duration-input]").fill("5")  # the action refuses each source
    frame.locator("textarea[data-test=sources-input]").fill("127.0.0.1\nnot-an-address")
    frame.locator("[data-test=start-diagnosis]").click()
    sources.wait_for()
    assert sources.inner_text().strip() == "; ".join([
        message(lang, "validation.sources_loopback", value="127.0.0.1"),
        message(lang, "validation.sources_format", value="not-an-address")])
    assert duration.count() == 0
    assert frame.locator("[data-test=problems]").count() == 0
    assert not trace_on(sandbox)
