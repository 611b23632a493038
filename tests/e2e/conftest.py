"""Fixtures of the UI tests: headless Debian Chromium driven by Playwright, the
cluster-admin stand-in page of the sandbox, the built UI (ui/dist).

`browser`: one Chromium per test module (Debian's /usr/bin/chromium: no browser
downloads). `page`: a fresh context (empty localStorage, so a fresh login) with
uncaught page errors collected and asserted empty at teardown. `app`: the
logged-in cluster-admin page showing the module UI (uihelpers.App); `app.frame` is
the UI's frame. Screenshots go to tests/artifacts/ (gitignored).
"""

from pathlib import Path

import pytest
from uihelpers import CHROMIUM, CHROMIUM_ARGS, DIST, TIMEOUT_MS, VIEWPORT, App


@pytest.fixture(scope="session")
def ui_dist():
    index = DIST / "index.html"
    if not index.exists():
        pytest.fail("ui/dist is not built: run `make` (cd ui && npm ci && npm run build) first",
                    pytrace=False)
    return DIST


@pytest.fixture(scope="module")
def browser(sandbox):
    """Module scope, not session: while Playwright's sync API runs, the main thread has
    a running asyncio loop and asyncio.run() elsewhere (integration tests) would fail.
    The sandbox is started first for the same reason."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda err: errors.append(str(err)))
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def app(page, sandbox, ui_dist):
    """Logged in, on the module's Status page."""
    application = App(page, sandbox)
    application.open()
    application.login()
    application.frame.locator("[data-test=card-instance]").wait_for()
    return application
