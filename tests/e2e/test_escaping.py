# SPDX-License-Identifier: GPL-3.0-or-later
"""Text from tasks and from the status is text on the page: HTML in a check's message or
in a task's error (NsInlineNotification renders both as HTML) is shown, never run.

The HTML reaches the page the way bad text would: a forward's record in bypass.json
edited by hand (or restored from a tampered backup), which the real get-status and
self-check then put in their finding and in their error."""

import contextlib
import json

import pytest
from ns8dev.procs import wait_for
from uihelpers import rich_rules, run_action

pytestmark = pytest.mark.e2e

HTML = '<img src=x onerror="window.__xss=1">'
SOURCE = "198.51.100.24"  # a device no other UI test uses


@contextlib.contextmanager
def forward_record(sandbox):
    """A forward added through the module; yields edit(**fields), which changes its record
    in bypass.json. Afterwards the record as it was, and the forward removed."""
    added = run_action(sandbox, "add-port-forward", {"source": SOURCE})
    assert added["exit_code"] == 0, added["error"]
    fid = added["output"]["forward"]["id"]
    path = sandbox.state_dir / "bypass.json"
    original = path.read_bytes()

    def edit(**fields):
        intent = json.loads(original)
        intent["forwards"][fid].update(fields)
        path.write_text(json.dumps(intent, indent=2))
    try:
        yield edit
    finally:
        path.write_bytes(original)
        removed = run_action(sandbox, "remove-port-forward", {"id": fid})
        assert removed["exit_code"] == 0, removed["error"]
        assert not any(SOURCE in rule for rule in rich_rules(sandbox) | rich_rules(sandbox, permanent=True))


def assert_not_run(app):
    """The markup never became an element, and its handler never ran."""
    frame = app.app_frame()
    assert frame.query_selector("img[src=x]") is None
    with pytest.raises(TimeoutError):  # an image that fails to load calls onerror at once
        wait_for(lambda: frame.evaluate("window.__xss") or app.page.evaluate("window.__xss"), 2,
                 "the handler of the injected markup")


def test_a_self_check_error_with_html_is_shown_as_text(app, sandbox):
    tile = app.frame.locator("[data-test=self-check]")
    tile.wait_for()
    with forward_record(sandbox) as edit:
        edit(source=HTML)  # the self-check fails on it, naming the value
        app.frame.locator("[data-test=check-now]").click()
        error = tile.locator("[data-test=self-check-error]")
        error.wait_for(timeout=60_000)
        assert_not_run(app)
        assert f"not an IP address or network: {HTML}" in error.inner_text()
        app.screenshot("status-self-check-error-escaped")


def test_a_check_message_with_html_is_shown_as_text(app, sandbox):
    with forward_record(sandbox) as edit:
        edit(instance=HTML)  # a forward for an instance this node does not run: a finding names it
        app.frame.locator("[data-test=refresh-status]").click()
        check = app.frame.locator("[data-test=checks] .check", has_text=HTML)
        check.first.wait_for(timeout=30_000)
        assert_not_run(app)
        assert f"targets {HTML}, which is not on this node" in check.first.inner_text()
