"""The api-server stand-in against a real redis-server and the proxy stand-in's agent.

One MiniCluster per module: redis-server with NS8's ACLs and grants, the
nethvoice-proxy stand-in under dev/ns8dev/agent.py, the api-server; all stopped by PID.
"""

import asyncio
import base64
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from ns8dev import httpjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dev/proxy-standin"))

from minicluster import BYPASS_ID, INTRUDER_ID, NETHVOICE_ID, PROXY_ID, MiniCluster  # noqa: E402

pytestmark = pytest.mark.integration

PROXY = f"module/{PROXY_ID}"
TASK_KEYS = {"id", "action", "data", "extra", "queue", "user", "timestamp", "parent"}
FORBIDDEN = {"code": 403, "message": "you don't have permission to access this resource", "data": None}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    (root / "static").mkdir()
    (root / "static/index.html").write_text("<title>cluster-admin stand-in</title>")
    (root / "ui").mkdir()
    (root / "ui/index.html").write_text("<title>bypass UI</title>")
    (root / "ui/js").mkdir()
    (root / "ui/js/app.js").write_text("console.log('app')")
    (root / "secret.txt").write_text("outside")
    with MiniCluster(root, api_args=["--static", root / "static",
                                     "--app", f"{BYPASS_ID}={root / 'ui'}"]) as mc:
        yield mc


def call(cluster, method, path, data=None, token=None, raw=None, headers=None):
    return httpjson.request(cluster.api_endpoint + path, method, data, token, raw, headers)


def login(cluster, user, password):
    status, body = call(cluster, "POST", "/api/login", {"username": user, "password": password})
    assert status == 200, body
    return body["token"]


def module_token(cluster, module_id):
    return login(cluster, f"module/{module_id}", cluster.passwords[module_id])


def wait_status(cluster, token, agent, task_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(cluster, "GET", f"/api/{agent}/task/{task_id}/status", token=token)
        if status == 200:
            return body
        assert status == 400, body  # "redis: nil" while the task runs
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish")


def claims_of(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_login_gives_a_two_week_jwt_to_modules_and_ui_users(cluster):
    status, body = call(cluster, "POST", "/api/login",
                        {"username": f"module/{BYPASS_ID}", "password": cluster.passwords[BYPASS_ID]})
    assert status == 200
    assert set(body) == {"code", "expire", "token"} and body["code"] == 200
    claims = claims_of(body["token"])
    assert claims["id"] == f"module/{BYPASS_ID}" and claims["role"] == "" and claims["actions"] == []
    assert 13.9 * 86400 < claims["exp"] - time.time() <= 14 * 86400
    assert abs(datetime.fromisoformat(body["expire"].replace("Z", "+00:00")).timestamp() - claims["exp"]) < 2
    assert claims_of(login(cluster, *cluster.admin))["id"] == "admin"


@pytest.mark.parametrize("creds, message", [
    ({"username": f"module/{BYPASS_ID}", "password": "wrong"}, "incorrect Username or Password"),
    ({"username": "admin", "password": "wrong"}, "incorrect Username or Password"),
    ({"username": "default", "password": "nopass"}, "incorrect Username or Password"),
    ({"username": "admin"}, "missing Username or Password"),
])
def test_login_failures_are_401_with_gin_jwt_bodies(cluster, creds, message):
    status, body = call(cluster, "POST", "/api/login", creds)
    assert status == 401
    assert body == {"code": 401, "message": message, "data": None}


def test_api_calls_need_a_valid_token(cluster):
    path = f"/api/{PROXY}/task/x/status"
    assert call(cluster, "GET", path) == (401, {"code": 401, "message": "auth header is empty", "data": None})
    token = module_token(cluster, BYPASS_ID)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    status, body = call(cluster, "GET", path, token=forged)
    assert status == 401 and body["message"] == "signature is invalid"
    status, body = call(cluster, "POST", f"/api/{PROXY}/tasks", {"action": "list-routes"},
                        headers={"Authorization": f"Token {token}"})
    assert status == 401 and body["message"] == "auth header is invalid"


def test_task_round_trip_through_the_proxy_agent(cluster):
    token = module_token(cluster, BYPASS_ID)
    status, body = call(cluster, "POST", f"/api/{PROXY}/tasks",
                        {"action": "list-routes", "data": {}, "extra": {"title": "t"}, "parent": "p1"},
                        token=token)
    assert status == 201 and body["code"] == 201 and body["message"] == "task queued successfully"
    task = body["data"]
    assert set(task) == TASK_KEYS
    assert task["queue"] == f"{PROXY}/tasks" and task["user"] == f"module/{BYPASS_ID}"
    assert task["action"] == "list-routes" and task["parent"] == "p1" and task["extra"] == {"title": "t"}
    assert task["timestamp"].endswith("Z")

    result = wait_status(cluster, token, PROXY, task["id"])
    assert result["code"] == 200 and result["message"] == "success"
    assert result["data"] == {
        "error": "", "exit_code": 0, "file": f"task/{PROXY}/{task['id']}",
        "output": [{"domain": "voice.example.org",
                    "address": [{"uri": "sip:10.5.4.1:20024", "description": NETHVOICE_ID}]}]}
    # the agent saw the task the api-server pushed, with its user
    status, body = call(cluster, "GET", f"/api/{PROXY}/task/{task['id']}/context", token=token)
    assert status == 200 and body["data"]["context"]["user"] == f"module/{BYPASS_ID}"


def test_node_selector_grants_the_role_on_the_nodes_default_instance_only(cluster):
    """cluster.grants: <image>@node resolves through node/<id>/default_instance/<image>
    of the module's node; @any takes every instance; no default instance, no grant."""
    from ns8dev import apiserver

    r = cluster.redis()
    apiserver.define_roles(r, "module/nethvoice-proxy2", apiserver.PROXY_ROLES)
    r.set("node/2/default_instance/nethvoice-proxy", "nethvoice-proxy2")
    try:
        for module, authz, node, expected in (
                ("tester1", "nethvoice-proxy@node:routeadm", "2", {"module/nethvoice-proxy2"}),
                ("tester2", "nethvoice-proxy@node:routeadm", "1", {PROXY}),
                ("tester3", "nethvoice-proxy@node:routeadm", "3", set()),
                ("tester4", "nethvoice-proxy@any:routeadm", "1", {PROXY, "module/nethvoice-proxy2"})):
            apiserver.grant_authorizations(r, module, [authz], node_id=node)
            assert set(r.hgetall(f"roles/module/{module}")) == expected, module
    finally:
        r.delete("module/nethvoice-proxy2/roles/routeadm", "node/2/default_instance/nethvoice-proxy",
                 *[f"roles/module/tester{i}" for i in range(1, 5)],
                 *[f"cluster/authorizations/module/tester{i}" for i in range(1, 5)])


def test_status_of_an_unknown_task_is_400_redis_nil(cluster):
    token = module_token(cluster, BYPASS_ID)
    status, body = call(cluster, "GET", f"/api/{PROXY}/task/no-such-task/status", token=token)
    assert status == 400
    assert body == {"code": 400, "message": "error getting error status from redis", "data": "redis: nil"}


def test_roles_come_from_redis_and_deny_with_403(cluster):
    r = cluster.redis()
    assert r.hgetall(f"roles/module/{BYPASS_ID}") == {PROXY: "routeadm"}
    assert r.smembers(f"{PROXY}/roles/routeadm") == {"add-route", "get-route", "remove-route", "list-routes"}
    before = len(r.keys(f"task/{PROXY}/*"))

    intruder = module_token(cluster, INTRUDER_ID)
    assert call(cluster, "POST", f"/api/{PROXY}/tasks", {"action": "list-routes", "data": {}},
                token=intruder) == (403, FORBIDDEN)
    # routeadm holds four action names, not everything
    bypass = module_token(cluster, BYPASS_ID)
    assert call(cluster, "POST", f"/api/{PROXY}/tasks", {"action": "configure-module", "data": {}},
                token=bypass) == (403, FORBIDDEN)
    # a body the Authorizator cannot bind is a denial too
    assert call(cluster, "POST", f"/api/{PROXY}/tasks", raw=b"not json", token=bypass)[0] == 403
    time.sleep(0.5)
    assert r.llen(f"{PROXY}/tasks") == 0 and len(r.keys(f"task/{PROXY}/*")) == before


def test_an_agent_that_does_not_poll_is_404_and_a_module_without_roles_403(cluster):
    admin = login(cluster, *cluster.admin)
    status, body = call(cluster, "POST", f"/api/module/{NETHVOICE_ID}/tasks", {"action": "get-status"},
                        token=admin)
    assert status == 404
    assert body == {"code": 404, "message": "client idle check failed",
                    "data": f"Client name module/{NETHVOICE_ID} not found"}
    assert cluster.redis().llen(f"module/{NETHVOICE_ID}/tasks") == 0
    # nobody holds a role on an unknown module: the Authorizator answers before the idle check
    assert call(cluster, "POST", "/api/module/ghost1/tasks", {"action": "get-status"},
                token=admin) == (403, FORBIDDEN)


def test_proxy_schema_rejects_a_bad_add_route_with_exit_10(cluster):
    token = module_token(cluster, BYPASS_ID)
    status, body = call(cluster, "POST", f"/api/{PROXY}/tasks",
                        {"action": "add-route", "data": {"domain": "", "address": []}}, token=token)
    assert status == 201
    data = wait_status(cluster, token, PROXY, body["data"]["id"])["data"]
    assert data["exit_code"] == 10
    assert sorted(data["output"], key=lambda e: e["field"]) == [
        {"parameter": "address", "error": "address_array_min_items", "value": [], "field": "address"},
        {"parameter": "domain", "error": "domain_string_gte", "value": "", "field": "domain"},
    ]
    assert data["error"].startswith("Validation errors:")
    status, body = call(cluster, "POST", f"/api/{PROXY}/tasks",
                        {"action": "add-route", "data": {"domain": "x.example.org",
                                                         "address": ["sip:10.5.4.1:20024"]}}, token=token)
    data = wait_status(cluster, token, PROXY, body["data"]["id"])["data"]
    assert data["exit_code"] == 10
    assert {(e["field"], e["error"]) for e in data["output"]} == {("address.0", "address_invalid_type")}


async def test_websocket_relays_progress_to_authorized_sessions(cluster):
    import aiohttp

    token = module_token(cluster, BYPASS_ID)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{cluster.api_endpoint}/ws") as ws:
            await ws.send_json({"action": "authorize", "payload": {"jwt": token}})
            await asyncio.sleep(0.3)
            async with session.post(f"{cluster.api_endpoint}/api/{PROXY}/tasks",
                                    json={"action": "get-route", "data": {"domain": "voice.example.org"}},
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                task_id = (await resp.json())["data"]["id"]
            statuses = []
            async with asyncio.timeout(15):
                async for msg in ws:
                    event = json.loads(msg.data)
                    if event["name"] == f"progress/{PROXY}/task/{task_id}":
                        assert event["type"] == "task"
                        statuses.append(event["payload"]["status"])
                        if event["payload"]["status"] == "completed":
                            break
            assert statuses[-1] == "completed" and "running" in statuses

        async with session.ws_connect(f"{cluster.api_endpoint}/ws") as ws:
            await ws.send_json({"action": "authorize", "payload": {"jwt": "bad"}})
            msg = await ws.receive(timeout=5)
            assert json.loads(msg.data)["type"] == "authorize-error"


def test_static_files_for_cluster_admin_and_module_ui(cluster):
    def get(path):
        try:
            with urllib.request.urlopen(cluster.api_endpoint + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    assert get("/") == (200, "<title>cluster-admin stand-in</title>")
    assert get(f"/apps/{BYPASS_ID}/") == (200, "<title>bypass UI</title>")
    assert get(f"/apps/{BYPASS_ID}/js/app.js") == (200, "console.log('app')")
    for path in ("/nope.html", "/../secret.txt", "/%2e%2e/secret.txt", f"/apps/{BYPASS_ID}/../../secret.txt"):
        status, text = get(path)
        assert status == 404 and "outside" not in text, path
    assert json.loads(get("/api/nothing")[1]) == {"code": 404, "message": "API not found", "data": None}
