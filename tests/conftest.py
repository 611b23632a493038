"""Shared fixtures.

`sandbox`: one sandbox node (dev/ns8dev/sandbox.py) for the whole session, started
on first use; tests that do not ask for it never start it.
`remote`: run a command in the sandbox's remote namespace (the LAN side where the
Mediant lives), e.g. remote("sipsak", "-s", "sip:192.0.2.1:20040").
To run Python code there instead (sockets from 192.0.2.10):
sandbox.in_netns("remote", fn, *args).
`cluster_api`: the sandbox's api-server stand-in, as the UI sees it (login, submit a
task, wait for its status), e.g. cluster_api.run_task("module/nethvoice-proxy1",
"list-routes", {}, token=cluster_api.login()).
"""

import os
import time

import pytest
from ns8dev import httpjson
from ns8dev.sandbox import DEFAULT_PROFILE, Sandbox

# The node profile the sandbox runs the module on (ns8dev.sandbox.PROFILES).
PROFILE = os.environ.get("NODE_PROFILE", DEFAULT_PROFILE)


def pytest_report_header(config):
    return f"sandbox node profile: {PROFILE}"


class ClusterApi:
    """A small stdlib client for the api-server at `url` (sandbox.api_url)."""

    def __init__(self, url, admin):
        self.url = url
        self.admin = admin

    def call(self, method, path, data=None, token=None):
        """(HTTP status, JSON body) of one request; errors are returned, not raised."""
        return httpjson.request(self.url + path, method, data, token)

    def login(self, username=None, password=None):
        """A token for username (default: the sandbox's UI admin); fails the test otherwise."""
        if username is None:
            username, password = self.admin["username"], self.admin["password"]
        status, body = self.call("POST", "/api/login", {"username": username,
                                                        "password": password})
        assert status == 200, body
        return body["token"]

    def run_task(self, agent, action, data, token, timeout=20):
        """Submit a task to agent ("module/<id>", "cluster", ...) and return the "data"
        of its final status ({"output", "error", "exit_code", "file"})."""
        status, body = self.call("POST", f"/api/{agent}/tasks",
                                 {"action": action, "data": data}, token)
        assert status == 201, body
        task_id = body["data"]["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.call("GET", f"/api/{agent}/task/{task_id}/status", token=token)
            if status == 200:
                return body["data"]
            assert status == 400, body  # "redis: nil" while the task runs
            time.sleep(0.1)
        raise AssertionError(f"{agent}/{action} (task {task_id}) did not finish in {timeout} s")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the sandbox node needs root (network namespaces, firewalld, nftables): "
                    "run the integration tests as root, e.g. `sudo make test`", pytrace=False)
    sb = Sandbox(tmp_path_factory.mktemp("sandbox") / "node", profile=PROFILE)
    sb.up()
    yield sb
    sb.down()


@pytest.fixture
def remote(sandbox):
    """remote(*argv, check=True, **subprocess_kwargs) -> CompletedProcess (text output)."""
    return sandbox.remote


@pytest.fixture(scope="session")
def cluster_api(sandbox):
    """The sandbox's api-server stand-in: call(), login(), run_task() (see ClusterApi)."""
    return ClusterApi(sandbox.api_url, sandbox.admin)
