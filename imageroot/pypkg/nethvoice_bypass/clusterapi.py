# SPDX-License-Identifier: GPL-3.0-or-later
"""Run another module's action through the cluster HTTP API, as agent.tasks does.

A module may not push onto another agent's Redis queue (its ACL forbids it). Like
agent.tasks.run() (core/imageroot/usr/local/agent/pypkg/agent/tasks/apiclient.py) we:

- log in with POST /api/login {"username": REDIS_USER, "password": REDIS_PASSWORD},
  caching the JWT in <AGENT_STATE_DIR>/apitoken.cache (the file agent.tasks uses) and
  logging in again on a 401;
- POST /api/module/<id>/tasks {"action", "data", "parent": AGENT_TASK_ID, "extra"}
  (201 with the queued task in "data");
- GET /api/module/<id>/task/<task id>/status until it stops answering 400/404
  ("redis: nil" while the task runs), then return its output (already JSON-decoded by
  the api-server when it is JSON), error and exit_code.

The endpoint is agent.tasks' fixed http://cluster-leader:9311 (cluster-leader is in
every node's /etc/hosts); NETHVOICE_BYPASS_API_ENDPOINT overrides it for the sandbox.
The api-server checks the roles granted by the image label
org.nethserver.authorizations: nethvoice-proxy@node:routeadm allows add-route,
get-route, remove-route and list-routes on the node's default nethvoice-proxy.

Every problem is raised as nethvoice_bypass.step.Failure with a one-line message.
aiohttp is imported inside the functions: most actions never call another module.
"""

import asyncio
import contextlib
import os
import re
import time

from .errors import Failure

DEFAULT_ENDPOINT = "http://cluster-leader:9311"
ENDPOINT_ENV = "NETHVOICE_BYPASS_API_ENDPOINT"
TOKEN_CACHE = "apitoken.cache"
DEFAULT_TIMEOUT = 60.0
REQUEST_TIMEOUT = 20.0
CONNECT_ATTEMPTS = 3
TRANSIENT_STATUS = (502, 503, 504)
# What our image label grants, by target image: named in the 403 message.
AUTHORIZATIONS = {"nethvoice-proxy": "nethvoice-proxy@node:routeadm"}


def endpoint():
    return (os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")


def agent_id(module_id):
    """"nethvoice-proxy1" or "module/nethvoice-proxy1" -> "module/nethvoice-proxy1"."""
    return module_id if module_id.startswith("module/") else f"module/{module_id}"


def image_of(module_id):
    return re.sub(r"\d+$", "", module_id.removeprefix("module/"))


def _token_path():
    state = os.environ.get("AGENT_STATE_DIR")
    return os.path.join(state, TOKEN_CACHE) if state else None


def _read_cached_token():
    path = _token_path()
    if not path:
        return None
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _write_cached_token(token):
    path = _token_path()
    if not path:
        return
    with contextlib.suppress(OSError):  # a cache only: never fail the task over it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)


def _message(body):
    if isinstance(body, dict):
        text = str(body.get("message") or "")
        if body.get("data") and isinstance(body["data"], str):
            text = f"{text} ({body['data']})" if text else body["data"]
        return text
    return ""


class _Api:
    """One logged-in conversation with the api-server, bounded by a deadline."""

    def __init__(self, session, base, user, password, deadline):
        self.session = session
        self.base = base
        self.user = user
        self.password = password
        self.deadline = deadline
        self.token = _read_cached_token()

    def remaining(self):
        return self.deadline - time.monotonic()

    async def _send(self, method, path, payload=None, auth=True):
        """(status, JSON body); retries refused connections, 502-504, and lost replies
        to idempotent requests, a few times while time remains."""
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        last = None
        for attempt in range(CONNECT_ATTEMPTS):
            left = self.remaining()
            if left <= 0:
                break
            timeout = aiohttp.ClientTimeout(total=min(left, REQUEST_TIMEOUT))
            try:
                async with self.session.request(method, self.base + path, json=payload,
                                                headers=headers, timeout=timeout) as resp:
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError:
                        body = None
                    if resp.status not in TRANSIENT_STATUS:
                        return resp.status, body
                    last = f"HTTP {resp.status} {_message(body)}".strip()
            except aiohttp.ClientConnectorError as err:  # nothing was sent: safe to repeat
                last = str(err) or type(err).__name__
            except (aiohttp.ClientConnectionError, TimeoutError) as err:
                last = str(err) or type(err).__name__
                if method == "POST" and path != "/api/login":  # it may have been queued
                    raise Failure(f"no reply from the cluster API at {self.base} to POST {path} "
                                  f"(the task may run anyway): {last}") from None
            if attempt + 1 < CONNECT_ATTEMPTS:
                await asyncio.sleep(min(0.5 * 2 ** attempt, max(self.remaining(), 0)))
        raise Failure(f"cannot reach the cluster API at {self.base}: {last or 'timed out'}")

    async def login(self):
        status, body = await self._send("POST", "/api/login",
                                        {"username": self.user, "password": self.password},
                                        auth=False)
        if status == 200 and isinstance(body, dict) and body.get("token"):
            self.token = body["token"]
            _write_cached_token(self.token)
            return
        raise Failure(f"the cluster API at {self.base} refused the login of {self.user}: "
                      f"HTTP {status} {_message(body)}".rstrip())

    async def call(self, method, path, payload=None):
        """An authenticated request: log in first if needed, and again once on a 401."""
        if not self.token:
            await self.login()
        status, body = await self._send(method, path, payload)
        if status == 401:
            await self.login()
            status, body = await self._send(method, path, payload)
            if status == 401:
                raise Failure(f"the cluster API at {self.base} rejects the token of "
                              f"{self.user}: {_message(body)}")
        return status, body


def _credentials():
    user = os.environ.get("REDIS_USER") or os.environ.get("AGENT_ID")
    password = os.environ.get("REDIS_PASSWORD")
    if not user or not password:
        raise Failure("cannot log in to the cluster API: REDIS_USER/REDIS_PASSWORD are not set "
                      "(run inside the module's agent, or with runagent -m <module_id>)")
    return user, password


async def run_task_async(module_id, action, data, *, timeout=DEFAULT_TIMEOUT, extra=None,
                         api_endpoint=None, check=False):
    """Run `action` on `module_id` and wait: {"output", "error", "exit_code"}.

    check=True also turns a non-zero exit code into a Failure (with the task's last
    error line). Other failures (unreachable api-server, refused login, missing role,
    target agent down, timeout) are always Failures.
    """
    import aiohttp

    target = agent_id(module_id)
    base = (api_endpoint or endpoint()).rstrip("/")
    user, password = _credentials()
    deadline = time.monotonic() + timeout
    extra = {"title": f"{target}/{action}", "isNotificationHidden": True} if extra is None else extra
    async with aiohttp.ClientSession() as session:
        api = _Api(session, base, user, password, deadline)
        status, body = await api.call("POST", f"/api/{target}/tasks", {
            "action": action, "data": data, "parent": os.environ.get("AGENT_TASK_ID", ""),
            "extra": extra})
        if status == 403:
            needs = AUTHORIZATIONS.get(image_of(target), f"{image_of(target)}@any:<role>")
            raise Failure(f"not authorized: {user} may not run {action} on {target}; "
                          f"the module needs {needs} in org.nethserver.authorizations")
        if status == 404:
            raise Failure(f"{target} is not running: {_message(body) or 'not found'}")
        if status != 201 or not isinstance(body, dict) or "id" not in (body.get("data") or {}):
            raise Failure(f"cannot submit {target}/{action}: HTTP {status} {_message(body)}".rstrip())
        task_id = body["data"]["id"]
        result = await _wait(api, target, action, task_id, timeout)
    if check and result["exit_code"] != 0:
        lines = [line for line in str(result["error"]).splitlines() if line.strip()]
        reason = re.sub(r"^<\d>", "", lines[-1]) if lines else "no error output"
        raise Failure(f"{target}/{action} failed (exit code {result['exit_code']}): {reason}")
    return result


async def _wait(api, target, action, task_id, timeout):
    path = f"/api/{target}/task/{task_id}/status"
    interval = 0.2
    while True:
        status, body = await api.call("GET", path)
        if status == 200 and isinstance(body, dict) and isinstance(body.get("data"), dict):
            data = body["data"]
            return {"output": data.get("output"), "error": data.get("error", ""),
                    "exit_code": int(data.get("exit_code", 1))}
        if status not in (400, 404):  # 400 "redis: nil": still running
            raise Failure(f"cannot read the status of {target}/{action}: "
                          f"HTTP {status} {_message(body)}".rstrip())
        if api.remaining() <= interval:
            raise Failure(f"{target}/{action} did not finish within {timeout:g} s "
                          f"(task {task_id})")
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 2.0)


def run_task(module_id, action, data, timeout=DEFAULT_TIMEOUT, **kwargs):
    """Blocking run_task_async() for action steps."""
    return asyncio.run(run_task_async(module_id, action, data, timeout=timeout, **kwargs))
