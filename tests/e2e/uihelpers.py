"""Helpers of the UI tests (imported by conftest.py and the tests): the App driver,
the UI's translations, direct checks on the sandbox (firewalld, MariaDB) and a small
client of the api-server stand-in."""

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "ui/dist"
ARTIFACTS = REPO / "tests/artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
MODULE_ID = "nethvoice-bypass1"
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 30_000


def translations(lang):
    """The UI's messages for lang, flattened: {"validation.source_format": "...", ...}."""
    data = json.loads((REPO / f"ui/public/i18n/{lang}/translation.json").read_text())
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value
    walk(data, "")
    return flat


def message(lang, key, **params):
    text = translations(lang)[key]
    for name, value in params.items():
        text = text.replace("{" + name + "}", str(value))
    return text


class App:
    """The cluster-admin stand-in with the module UI in its iframe."""

    def __init__(self, page, sandbox):
        self.page = page
        self.sandbox = sandbox
        self.url = sandbox.api_url

    @property
    def frame(self):
        return self.page.frame_locator("#app-frame")

    def open(self, hash_path=f"/apps/{MODULE_ID}", query=""):
        self.page.goto(f"{self.url}/{query}#{hash_path}")

    def login(self):
        """Log in through the form, as a user would."""
        admin = self.sandbox.admin
        self.page.fill("#login-username", admin["username"])
        self.page.fill("#login-password", admin["password"])
        self.page.click("#login-submit")
        self.page.wait_for_selector("#app-frame:not([hidden])")

    def go(self, page_name):
        """Navigate with the app's side menu."""
        self.frame.locator(f"[data-page={page_name}]").click()
        self.frame.locator(f".{page_name}-page").wait_for()

    def app_frame(self):
        return self.page.query_selector("#app-frame").content_frame()

    def pending_task_listeners(self):
        """Task event handlers still registered on window.core (leaks show up here)."""
        return self.page.evaluate(
            "Object.keys(window.core._handlers).filter(k => /-(completed|aborted|validation-failed)-/.test(k))")

    def screenshot(self, name):
        """The whole app, not only what fits in the viewport (the iframe scrolls)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        height = self.app_frame().evaluate("document.documentElement.scrollHeight")
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": max(height + 48,
                                                                              VIEWPORT["height"])})
        time.sleep(0.3)  # layout after the resize
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(VIEWPORT)
        return path

    def modal_primary(self, modal):
        """The modal's primary button (the last one; kind "danger" in a danger modal)."""
        return self.frame.locator(f"[data-test={modal}] .bx--modal-footer .bx--btn:last-child")


# ------------------------------------------------------------- direct checks on the sandbox

def rich_rules(sandbox, permanent=False):
    args = ["--list-rich-rules"] + (["--permanent"] if permanent else [])
    return set(sandbox.firewalld.firewall_cmd(*args).stdout.splitlines())


def outbound_proxy(sandbox, trunk_id):
    rows = sandbox.sql(f"SELECT data FROM pjsip WHERE id='{trunk_id}' AND keyword='outbound_proxy'")
    return rows[0][0] if rows and rows[0] else ""


def run_action(sandbox, action, data, timeout=30.0):
    """Run an action of the module through the api-server, as the UI does; its status data."""
    def call(method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(sandbox.api_url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    status, body = call("POST", "/api/login", sandbox.admin)
    assert status == 200, body
    token = body["token"]
    task = {"action": action, "data": data,  # no toast in the page under test
            "extra": {"title": f"{action} (test set-up)", "isNotificationHidden": True}}
    status, body = call("POST", f"/api/module/{MODULE_ID}/tasks", task, token)
    assert status == 201, body
    task_id = body["data"]["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call("GET", f"/api/module/{MODULE_ID}/task/{task_id}/status", token=token)
        if status == 200:
            return body["data"]
        time.sleep(0.2)
    raise AssertionError(f"{action} did not finish in {timeout} s")
