"""nethvoice_bypass.clusterapi against the api-server stand-in and the proxy stand-in.

The client runs here with the environment an action step of the module would have
(REDIS_USER/REDIS_PASSWORD, AGENT_STATE_DIR); the endpoint comes from
NETHVOICE_BYPASS_API_ENDPOINT as in the sandbox.
"""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nethvoice_bypass import clusterapi
from nethvoice_bypass.errors import Failure

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev/proxy-standin"))

from minicluster import BYPASS_ID, INTRUDER_ID, NETHVOICE_ID, PROXY_ID, MiniCluster  # noqa: E402

pytestmark = pytest.mark.integration

NV_ROUTE = {"domain": "voice.example.org", "address": [{"uri": "sip:10.5.4.1:20024", "description": NETHVOICE_ID}]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with MiniCluster(tmp_path_factory.mktemp("cluster")) as mc:
        yield mc


@pytest.fixture
def as_module(cluster, monkeypatch, tmp_path):
    """Become an action step of a module: its credentials, a state dir, the endpoint."""
    def become(module_id=BYPASS_ID, **extra):
        for key, value in cluster.module_env(module_id, AGENT_STATE_DIR=str(tmp_path),
                                             AGENT_TASK_ID="parent-task-1", **extra).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv(clusterapi.ENDPOINT_ENV, cluster.api_endpoint)
        return tmp_path
    return become


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_add_list_replace_and_remove_a_route(cluster, as_module):
    as_module()
    other = {"domain": "Trunk.Example.NET", "address": [{"uri": "sip:10.5.4.1:20040", "description": "bypass"}]}
    result = clusterapi.run_task(PROXY_ID, "add-route", other)
    assert result == {"output": "", "error": "", "exit_code": 0}

    routes = clusterapi.run_task(PROXY_ID, "list-routes", {})["output"]
    assert routes == [NV_ROUTE, other]  # stored as given, as the real proxy does

    # add-route replaces the destinations of an existing domain; another casing is
    # another domain to the proxy (its lookup is target='<domain>')
    new = [{"uri": "sip:10.5.4.1:20041", "description": "bypass"}]
    assert clusterapi.run_task(f"module/{PROXY_ID}", "add-route",
                               {"domain": "Trunk.Example.NET", "address": new})["exit_code"] == 0
    assert clusterapi.run_task(PROXY_ID, "get-route", {"domain": "Trunk.Example.NET"})["output"] == {"address": new}
    assert clusterapi.run_task(PROXY_ID, "get-route", {"domain": "trunk.example.net"})["output"] == {}

    assert clusterapi.run_task(PROXY_ID, "remove-route", {"domain": "Trunk.Example.NET"})["exit_code"] == 0
    assert clusterapi.run_task(PROXY_ID, "list-routes", {})["output"] == [NV_ROUTE]
    assert clusterapi.run_task(PROXY_ID, "get-route", {"domain": "trunk.example.net"})["output"] == {}
    # the proxy saw who asked and under which parent task
    contexts = [json.loads(cluster.redis().get(k)) for k in cluster.redis().keys(f"task/module/{PROXY_ID}/*/context")]
    assert contexts and all(c["user"] == f"module/{BYPASS_ID}" for c in contexts)
    assert {c["parent"] for c in contexts} == {"parent-task-1"}


async def test_async_variant_and_validation_failure(cluster, as_module):
    as_module()
    result = await clusterapi.run_task_async(PROXY_ID, "add-route", {"domain": "", "address": []})
    assert result["exit_code"] == 10
    assert {e["error"] for e in result["output"]} == {"domain_string_gte", "address_array_min_items"}
    with pytest.raises(Failure, match=r"^module/nethvoice-proxy1/add-route failed \(exit code 10\): Validation errors"):
        await clusterapi.run_task_async(PROXY_ID, "add-route", {"domain": "", "address": []}, check=True)


def test_token_is_cached_like_agent_tasks_and_renewed_on_401(cluster, as_module):
    state = as_module()
    cache = state / clusterapi.TOKEN_CACHE
    clusterapi.run_task(PROXY_ID, "list-routes", {})
    token = cache.read_text()
    assert token.count(".") == 2 and stat.S_IMODE(cache.stat().st_mode) == 0o600
    clusterapi.run_task(PROXY_ID, "list-routes", {})
    assert cache.read_text() == token  # reused, no new login

    cache.write_text("stale.token.value")
    assert clusterapi.run_task(PROXY_ID, "list-routes", {})["exit_code"] == 0
    assert cache.read_text() not in ("stale.token.value", "")


def test_missing_role_is_a_clear_failure(cluster, as_module):
    as_module(INTRUDER_ID)
    with pytest.raises(Failure) as err:
        clusterapi.run_task(PROXY_ID, "add-route", NV_ROUTE)
    message = str(err.value)
    assert message.startswith("not authorized:") and "\n" not in message
    assert "the module needs nethvoice-proxy@node:routeadm" in message
    assert cluster.redis().llen(f"module/{PROXY_ID}/tasks") == 0


def test_wrong_password_is_a_clear_failure(cluster, as_module):
    as_module(REDIS_PASSWORD="wrong")
    with pytest.raises(Failure, match=r"refused the login of module/nethvoice-bypass1: HTTP 401 "
                                      r"incorrect Username or Password$"):
        clusterapi.run_task(PROXY_ID, "list-routes", {})


def test_target_agent_down_is_a_clear_failure(cluster, as_module):
    as_module()
    r = cluster.redis()
    r.hset(f"roles/module/{BYPASS_ID}", f"module/{NETHVOICE_ID}", "reader")  # a role, but no agent
    try:
        with pytest.raises(Failure, match=r"^module/nethvoice1 is not running: client idle check failed"):
            clusterapi.run_task(NETHVOICE_ID, "get-status", None)
    finally:
        r.hdel(f"roles/module/{BYPASS_ID}", f"module/{NETHVOICE_ID}")


def test_a_task_that_does_not_finish_in_time_is_a_clear_failure(cluster, as_module):
    as_module()
    agent = cluster.procs["proxy-agent"]
    os.kill(agent.pid, signal.SIGSTOP)  # it still counts as polling for 8 s, but runs nothing
    try:
        started = time.monotonic()
        with pytest.raises(Failure, match=r"^module/nethvoice-proxy1/list-routes did not finish within 1.5 s \(task "):
            clusterapi.run_task(PROXY_ID, "list-routes", {}, timeout=1.5)
        assert time.monotonic() - started < 3
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    assert clusterapi.run_task(PROXY_ID, "list-routes", {})["exit_code"] == 0  # and it recovers


def test_unreachable_api_server_is_a_clear_failure(cluster, as_module, monkeypatch):
    as_module()
    port = closed_port()
    monkeypatch.setenv(clusterapi.ENDPOINT_ENV, f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(Failure) as err:
        clusterapi.run_task(PROXY_ID, "list-routes", {}, timeout=10)
    assert str(err.value).startswith(f"cannot reach the cluster API at http://127.0.0.1:{port}: ")
    assert "\n" not in str(err.value)
    assert time.monotonic() - started < 5  # a few quick retries, not the whole timeout


def test_missing_credentials_are_a_clear_failure(monkeypatch):
    for key in ("REDIS_USER", "AGENT_ID", "REDIS_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(Failure, match="REDIS_USER/REDIS_PASSWORD are not set"):
        clusterapi.run_task(PROXY_ID, "list-routes", {})


def test_default_endpoint_is_agent_tasks_one(monkeypatch):
    monkeypatch.delenv(clusterapi.ENDPOINT_ENV, raising=False)
    assert clusterapi.endpoint() == "http://cluster-leader:9311"


def test_import_does_not_load_aiohttp():
    code = "import sys, nethvoice_bypass.clusterapi; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "imageroot/pypkg")})
    assert out.stdout.strip() == "False"
