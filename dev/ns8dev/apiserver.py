"""A stand-in for NS8's api-server (NethServer/ns8-core core/api-server, Go + gin).

The subset the module, its UI and the cluster-admin stand-in use, with the real
paths, JSON shapes, status codes and error bodies:

    POST /api/login                          {"username","password"} -> {"code":200,"expire","token"}
    POST /api/logout                         {"code":200}
    POST /api/{cluster|node/<id>|module/<id>}/tasks          201 + the queued task
    GET  /api/{cluster|node/<id>|module/<id>}/task/<tid>/status   output/error/exit_code
    GET  /api/{...}/task/<tid>/context
    GET  /ws                                 progress/* relayed to authorized sessions
    GET  /, /apps/<module_id>/...            static files (cluster-admin page, module UIs)

Login is a Redis AUTH with the given credentials (UI users and module agents alike:
a module logs in as REDIS_USER=module/<id> with its REDIS_PASSWORD). Tokens are
HS256 JWTs valid 14 days, read from "Authorization: Bearer" or ?jwt=. GET requests
need a valid token only; a POST needs a role: HGET roles/<user> <entity> gives the
role, SMEMBERS <entity>/roles/<role> the action glob patterns (middleware.go,
methods/auth.go). A denial is gin-jwt's 403 before anything else is looked at, so a
module nobody holds a role on answers 403, not 404; 404 comes from the "client idle
check" when the target agent has not talked to Redis for 8 s.

Command line (the sandbox starts it like this):
    python -m ns8dev.apiserver --listen 127.0.0.1:PORT --redis-address 127.0.0.1:6379 \
        --redis-user cluster --redis-password PW [--static DIR] [--app MODULE_ID=DIR ...]
It prints "api-server listening on http://HOST:PORT" on stderr once it accepts requests.

seed_cluster() writes the roles and grants NS8 would have written (add-module, the
proxy's create-module/30grants, the image's org.nethserver.authorizations label) and
the cluster-admin user.
"""

import argparse
import asyncio
import base64
import fnmatch
import hashlib
import hmac
import json
import secrets
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ns8dev.validation import go_json, task_from_json

DEV = Path(__file__).resolve().parents[1]
DEFAULT_STATIC = DEV / "cluster-admin"
TOKEN_TTL = 14 * 24 * 3600   # gin-jwt Timeout: 2 weeks
IDLE_LIMIT = 8               # CheckClientIdle(..., 8) in createTask
REALM = "nethserver"

# gin-jwt v2 messages, as the Unauthorized callback puts them in the body
MSG_MISSING_LOGIN = "missing Username or Password"
MSG_FAILED_AUTH = "incorrect Username or Password"
MSG_FORBIDDEN = "you don't have permission to access this resource"
MSG_EMPTY_AUTH = "auth header is empty"
MSG_INVALID_AUTH = "auth header is invalid"
MSG_EXPIRED = "token is expired"
MSG_REDIS_DOWN = "redis is not running"

BUILTIN_ROLES = {  # cluster/add-module/50update
    "owner": ["*"],
    "reader": ["list-*", "get-*", "show-*", "read-*"],
}
PROXY_ROLES = {  # nethvoice-proxy create-module/30grants
    "routeadm": ["add-route", "get-route", "remove-route", "list-routes"],
}


def log(msg):
    print(f"[api-server] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- JWT (HS256)

def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    pass


def jwt_encode(claims, key):
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def jwt_decode(token, key, now=None):
    """The claims of a valid token; TokenError with jwt-go/gin-jwt's message otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token contains an invalid number of segments")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        sig = _unb64(parts[2])
    except (ValueError, TypeError) as err:
        raise TokenError(f"illegal base64 data or JSON: {err}") from None
    if header.get("alg") != "HS256":
        raise TokenError("signing method (alg) is unavailable.")
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(sig, expected):
        raise TokenError("signature is invalid")
    if not isinstance(claims, dict) or "exp" not in claims:
        raise TokenError("missing exp field")
    if not isinstance(claims["exp"], int | float):
        raise TokenError("exp must be float64 format")
    if claims["exp"] < (now or time.time()):
        raise TokenError(MSG_EXPIRED)
    return claims


# ---------------------------------------------------------------- Go-shaped JSON

def go_time(dt):
    """time.Time as encoding/json writes it (RFC 3339, fraction trimmed, Z for UTC)."""
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    offset = dt.utcoffset()
    if offset is None or not offset:
        return text + "Z"
    return text + dt.strftime("%z")[:3] + ":" + dt.strftime("%z")[3:]


def task_json(task):
    """json.Marshal(models.Task): struct field order, Go encoding of the values."""
    keys = ("id", "action", "data", "extra", "queue", "user", "timestamp", "parent")
    return "{" + ",".join(f'"{k}":{go_json(task[k])}' for k in keys) + "}"


def body(code, message, data=None):
    return {"code": code, "message": message, "data": data}


# ---------------------------------------------------------------- Redis helpers

def split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def redis_auth(address, username, password, timeout=5.0):
    """RedisAuthentication(): a bare AUTH on a fresh connection (UI users have no commands)."""
    host, port = split_address(address)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(_resp("AUTH", username, password))
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), timeout)
        return reply.startswith(b"+OK")
    finally:
        writer.close()


def parse_client_list(text):
    clients = []
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
        if fields:
            clients.append(fields)
    return clients


# ---------------------------------------------------------------- the server

class ApiServer:
    def __init__(self, redis_address, redis_user, redis_password, secret=None,
                 static_dir=None, apps=None):
        self.redis_address = redis_address
        self.redis_user = redis_user
        self.redis_password = redis_password
        self.key = (secret or secrets.token_hex(32)).encode()
        self.static_dir = Path(static_dir).resolve() if static_dir else None
        self.apps = {k: Path(v).resolve() for k, v in (apps or {}).items()}
        self.rdb = None
        self.sessions = {}  # websocket -> {"exp": int}
        self._relay = None

    # -- wiring

    def make_app(self):
        from aiohttp import web

        @web.middleware
        async def errors(request, handler):
            return await self._errors(request, handler)

        app = web.Application(middlewares=[errors])
        r = app.router
        r.add_post("/api/login", self.login)
        r.add_post("/api/logout", self.logout)
        for prefix in ("/api/cluster", "/api/node/{node_id}", "/api/module/{module_id}"):
            r.add_post(prefix + "/tasks", self.create_task)
            r.add_get(prefix + "/task/{task_id}/status", self.task_status)
            r.add_get(prefix + "/task/{task_id}/context", self.task_context)
        r.add_get("/ws", self.websocket)
        r.add_route("*", "/{tail:.*}", self.static)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app):
        import redis.asyncio as aioredis

        host, port = split_address(self.redis_address)
        self.rdb = aioredis.Redis(host=host, port=port, username=self.redis_user,
                                  password=self.redis_password, decode_responses=True,
                                  client_name="api-server")
        self._relay = asyncio.create_task(self._relay_progress())

    async def _cleanup(self, app):
        if self._relay:
            self._relay.cancel()
            await asyncio.gather(self._relay, return_exceptions=True)
        for ws in list(self.sessions):
            await ws.close()
        if self.rdb is not None:
            await self.rdb.aclose()

    @staticmethod
    def json(status, payload, headers=None):
        from aiohttp import web

        return web.json_response(payload, status=status, headers=headers)

    def unauthorized(self, code, message):
        """gin-jwt's unauthorized(): our Unauthorized callback body plus its realm header."""
        if message == MSG_REDIS_DOWN:
            return self.json(503, body(503, message))
        return self.json(code, body(code, message),
                         headers={"WWW-Authenticate": f'JWT realm="{REALM}"'})

    async def _errors(self, request, handler):
        import redis

        try:
            return await handler(request)
        except (redis.RedisError, OSError) as err:  # gin handlers answer 400 with the error
            log(f"{request.method} {request.path}: Redis error: {err}")
            return self.json(400, body(400, "redis error", str(err)))

    # -- authentication

    async def login(self, request):
        try:
            if request.content_type == "application/json":
                creds = await request.json()
            else:
                creds = dict(await request.post())
        except ValueError:
            creds = None
        if not isinstance(creds, dict) or not isinstance(creds.get("username"), str) \
                or not isinstance(creds.get("password"), str) \
                or not creds["username"] or not creds["password"]:
            return self.unauthorized(401, MSG_MISSING_LOGIN)
        username, password = creds["username"], creds["password"]
        try:
            await self.rdb.ping()
        except Exception:  # noqa: BLE001 - RedisLive() is a bare ping
            return self.unauthorized(503, MSG_REDIS_DOWN)
        ok = False
        if username != "default":  # RedisAuthentication(): "User is disabled"
            try:
                ok = await redis_auth(self.redis_address, username, password)
            except (OSError, TimeoutError):
                ok = False
        if not ok:
            log(f"[AUTH] login-fail user={username} source={request.remote}")
            return self.unauthorized(401, MSG_FAILED_AUTH)
        now = int(time.time())
        claims = {"2fa": False, "actions": [], "exp": now + TOKEN_TTL, "id": username,
                  "orig_iat": now, "role": ""}
        expire = datetime.fromtimestamp(now + TOKEN_TTL).astimezone()
        log(f"[AUTH] login-ok user={username} source={request.remote}")
        return self.json(200, {"code": 200, "expire": go_time(expire),
                               "token": jwt_encode(claims, self.key)})

    async def logout(self, request):
        return self.json(200, {"code": 200})

    def claims(self, request):
        """gin-jwt MiddlewareFunc(): (claims, None) or (None, error response)."""
        header = request.headers.get("Authorization", "")
        token = None
        if header:
            parts = header.split(" ", 1)
            if len(parts) != 2 or parts[0] != "Bearer":
                return None, self.unauthorized(401, MSG_INVALID_AUTH)
            token = parts[1]
        elif request.query.get("jwt"):
            token = request.query["jwt"]
        if not token:
            return None, self.unauthorized(401, MSG_EMPTY_AUTH)
        try:
            return jwt_decode(token, self.key), None
        except TokenError as err:
            return None, self.unauthorized(401, str(err))

    @staticmethod
    def entity(request):
        """The agent a path targets: (roles hash field, roles key prefix, agent id)."""
        info = request.match_info
        if "module_id" in info:
            agent = f"module/{info['module_id']}"
        elif "node_id" in info:
            agent = f"node/{info['node_id']}"
        else:
            agent = "cluster"
        return agent

    async def authorized_actions(self, username, agent):
        """RedisAuthorization(): HGET roles/<user> <agent>, SMEMBERS <agent>/roles/<role>."""
        role = await self.rdb.hget(f"roles/{username}", agent)
        if role is None:
            return []
        return sorted(await self.rdb.smembers(f"{agent}/roles/{role}"))

    # -- tasks

    async def create_task(self, request):
        claims, denied = self.claims(request)
        if denied:
            return denied
        agent = self.entity(request)
        raw = await request.read()
        try:  # the Authorizator binds the body into models.Task first
            req = task_from_json(raw)
        except ValueError as err:
            log(f"[AUTH] error unmarshalling task obj: {err}")
            return self.unauthorized(403, MSG_FORBIDDEN)
        action = req.get("action") or ""
        patterns = await self.authorized_actions(claims["id"], agent)
        # filepath.Match: action names hold no "/", so fnmatchcase is the same
        if not any(fnmatch.fnmatchcase(action, p) for p in patterns):
            log(f"[AUTH] {claims['id']} may not run {agent}/{action}")
            return self.unauthorized(403, MSG_FORBIDDEN)

        role = await self.rdb.execute_command("ROLE")
        if not role or role[0] != "master":
            return self.json(403, body(403, "task submission is forbidden in a worker node", ""))
        try:
            await self.check_client_idle(agent)
        except LookupError as err:
            return self.json(404, body(404, "client idle check failed", str(err)))

        queue = f"{agent}/tasks"
        task = {"id": str(uuid.uuid4()), "action": action, "data": req.get("data"),
                "extra": req.get("extra"), "queue": queue, "user": claims["id"],
                "timestamp": go_time(datetime.now(UTC)), "parent": req.get("parent") or ""}
        encoded = task_json(task)
        await self.rdb.lpush(queue, encoded)
        log(f"create-task {claims['id']} -> {queue} {action} {task['id']}")
        return self.json(201, body(201, "task queued successfully", json.loads(encoded)))

    async def check_client_idle(self, agent):
        text = await self.rdb.execute_command("CLIENT", "LIST", "TYPE", "normal")
        for client in parse_client_list(text):
            if client.get("name") == agent and int(client.get("idle", "0")) <= IDLE_LIMIT:
                return
        raise LookupError(f"Client name {agent} not found")

    def task_path(self, request):
        return f"task/{self.entity(request)}/{request.match_info['task_id']}"

    async def task_status(self, request):
        claims, denied = self.claims(request)
        if denied:
            return denied
        path = self.task_path(request)
        error, output, exit_code = await self.rdb.mget(f"{path}/error", f"{path}/output",
                                                       f"{path}/exit_code")
        for name, value in (("error", error), ("output", output), ("exit code", exit_code)):
            if value is None:  # still running, unknown or expired: go-redis says "redis: nil"
                return self.json(400, body(400, f"error getting {name} status from redis",
                                           "redis: nil"))
        try:
            code = int(exit_code)
        except ValueError as err:
            return self.json(500, body(500, "error in exit code value", str(err)))
        try:
            decoded = json.loads(output)  # JSON-decoded when it is JSON, else as is
        except ValueError:
            decoded = output
        return self.json(200, body(200, "success", {"error": error, "output": decoded,
                                                    "exit_code": code, "file": path}))

    async def task_context(self, request):
        claims, denied = self.claims(request)
        if denied:
            return denied
        path = self.task_path(request)
        context = await self.rdb.get(f"{path}/context")
        if context is None:
            return self.json(400, body(400, "error getting context status from redis",
                                       "redis: nil"))
        try:
            context = json.loads(context)
        except ValueError:
            pass
        return self.json(200, body(200, "success", {"context": context, "file": path}))

    # -- websocket: progress/* to authorized sessions (socket/socket.go, action.go)

    async def websocket(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sessions[ws] = {"exp": 0}
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    action = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(action, dict) or action.get("action") != "authorize":
                    continue  # logs-start/logs-stop need Loki: not here
                token = (action.get("payload") or {}).get("jwt", "")
                try:
                    claims = jwt_decode(str(token), self.key)
                except TokenError as err:
                    await ws.send_str(json.dumps({"type": "authorize-error", "payload": str(err)}))
                    await ws.close(message=b"Bye")
                    break
                self.sessions[ws]["exp"] = int(claims["exp"])
        finally:
            self.sessions.pop(ws, None)
        return ws

    async def _relay_progress(self):
        import redis

        while True:
            try:
                pubsub = self.rdb.pubsub()
                await pubsub.psubscribe("progress/*")
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    try:
                        payload = json.loads(message["data"])
                    except ValueError:
                        payload = None
                    event = json.dumps({"name": message["channel"], "type": "task",
                                        "payload": payload,
                                        "timestamp": go_time(datetime.now(UTC))})
                    now = time.time()
                    for ws, session in list(self.sessions.items()):
                        if session["exp"] > now and not ws.closed:
                            await ws.send_str(event)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as err:
                log(f"progress relay: {err}; retrying")
                await asyncio.sleep(1)

    # -- static files

    async def static(self, request):
        if request.method in ("GET", "HEAD"):
            path = self.static_file(request.path)
            if path is not None:
                from aiohttp import web
                return web.FileResponse(path)
        return self.json(404, body(404, "API not found"))

    def static_file(self, url_path):
        parts = [p for p in url_path.split("/") if p]
        root = self.static_dir
        if len(parts) >= 2 and parts[0] == "apps" and parts[1] in self.apps:
            root, parts = self.apps[parts[1]], parts[2:]
        if root is None or any(p in ("..", ".") for p in parts):
            return None
        path = root.joinpath(*parts).resolve()
        if not path.is_relative_to(root):
            return None
        if path.is_dir():  # gin-contrib/static serves a directory's index.html
            path = path / "index.html"
        return path if path.is_file() else None


# ---------------------------------------------------------------- seeding (sync redis)

def define_roles(rdb, agent_id, roles):
    """SADD <agent_id>/roles/<role> <patterns...> for each role (cluster.grants.grant)."""
    pipe = rdb.pipeline()
    for role, patterns in roles.items():
        pipe.sadd(f"{agent_id}/roles/{role}", *patterns)
    pipe.execute()


def alter_user(rdb, user, role, on_clause):
    """cluster.grants.alter_user(): HSET roles/<user> <agent> <role> for every agent
    matching on_clause that defines the role (a glob: module/nethvoice-proxy*)."""
    granted = []
    for key in rdb.scan_iter(f"{on_clause}/roles/{role}"):
        key = key.decode() if isinstance(key, bytes) else key
        agent_id = key[:key.find(f"/roles/{role}")]
        rdb.hset(f"roles/{user}", agent_id, role)
        granted.append(agent_id)
    return granted


def grant_authorizations(rdb, module_id, authorizations, node_id="1"):
    """What add-module does with org.nethserver.authorizations (cluster.grants
    add_module_permissions): "nethvoice-proxy@any:routeadm" grants the role on every
    nethvoice-proxy*, "nethvoice-proxy@node:routeadm" only on the default instance of
    the module's node (node/<node_id>/default_instance/<image>), nothing while there is
    none. The roles must already be defined on the targets."""
    granted = {}
    for authz in authorizations:
        if "*" in authz or ":" not in authz:
            raise ValueError(f"bad authorization {authz!r}")
        selector, role = authz.split(":")
        if selector.endswith("@any"):
            on = f"module/{selector.removesuffix('@any')}*"
        elif selector.endswith(("@node", "@cluster")):
            image, _, scope = selector.partition("@")
            default = rdb.get(f"node/{node_id}/default_instance/{image}" if scope == "node"
                              else f"cluster/default_instance/{image}")
            on = f"module/{default}" if default else None
        elif selector == "self":
            on = f"module/{module_id}"
        elif selector == "node":
            on = f"node/{node_id}"
        elif selector == "cluster":
            on = "cluster"
        else:
            raise ValueError(f"selector {selector!r} is not supported by the stand-in")
        granted[authz] = alter_user(rdb, f"module/{module_id}", role, on) if on else []
        rdb.sadd(f"cluster/authorizations/module/{module_id}", authz)
    return granted


def add_cluster_admin(rdb, user, password):
    """A cluster-admin UI user: an ACL user with no commands (add-user/50update), owner
    of the cluster and of every module that has an owner role."""
    rdb.execute_command("ACL", "DELUSER", user)
    rdb.execute_command("ACL", "SETUSER", user, "ON", f">{password}", "resetkeys",
                        "resetchannels", "nocommands")
    rdb.hset(f"user/{user}", mapping={"display_name": user, "email": ""})
    define_roles(rdb, "cluster", {"owner": ["*"]})
    rdb.hset(f"roles/{user}", "cluster", "owner")
    alter_user(rdb, user, "owner", "module/*")
    alter_user(rdb, user, "owner", "node/*")


def seed_cluster(rdb, module_ids=("nethvoice-bypass1", "nethvoice1", "nethvoice-proxy1"),
                 proxy_id="nethvoice-proxy1",
                 authorizations=(("nethvoice-bypass1", "nethvoice-proxy@node:routeadm"),
                                 ("nethvoice1", "nethvoice-proxy@any:routeadm")),
                 admin=("admin", "Nethesis,1234"), node_id="1"):
    """Roles and grants as a node that installed these modules would hold them.

    rdb: a redis.Redis connected as the cluster user. Order matters as on a node: the
    proxy's routeadm role, and its default instance keys, exist before the grants that
    scan for them.
    """
    for module_id in module_ids:
        image = module_id.rstrip("0123456789")  # the first instance of its image is the default
        rdb.set(f"cluster/default_instance/{image}", module_id, nx=True)
        rdb.set(f"node/{node_id}/default_instance/{image}", module_id, nx=True)
        define_roles(rdb, f"module/{module_id}", BUILTIN_ROLES)
    if proxy_id:
        define_roles(rdb, f"module/{proxy_id}", PROXY_ROLES)
    granted = {}
    for module_id, authz in authorizations:
        granted.setdefault(module_id, {}).update(
            grant_authorizations(rdb, module_id, [authz], node_id))
    if admin:
        add_cluster_admin(rdb, *admin)
    return granted


# ---------------------------------------------------------------- command line

def _parser():
    p = argparse.ArgumentParser(prog="python -m ns8dev.apiserver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:9311", help="HOST:PORT (api-server: :9311)")
    p.add_argument("--redis-address", default="127.0.0.1:6379")
    p.add_argument("--redis-user", default="cluster")
    p.add_argument("--redis-password", default=None)
    p.add_argument("--secret", default=None, help="JWT key (default: random per start)")
    p.add_argument("--static", default=None,
                   help=f"served at / (default {DEFAULT_STATIC} when it exists)")
    p.add_argument("--app", action="append", default=[], metavar="MODULE_ID=DIR",
                   help="served at /apps/MODULE_ID/ (e.g. nethvoice-bypass1=ui/dist)")
    return p


async def _serve(server, host, port):
    from aiohttp import web

    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log(f"api-server listening on http://{host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv=None):
    args = _parser().parse_args(argv)
    apps = {}
    for item in args.app:
        module_id, sep, directory = item.partition("=")
        if not sep or not module_id:
            raise SystemExit(f"--app wants MODULE_ID=DIR, not {item!r}")
        apps[module_id] = directory
    static = args.static or (str(DEFAULT_STATIC) if DEFAULT_STATIC.is_dir() else None)
    server = ApiServer(args.redis_address, args.redis_user, args.redis_password,
                       secret=args.secret, static_dir=static, apps=apps)
    host, port = split_address(args.listen)
    asyncio.run(_serve(server, host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
