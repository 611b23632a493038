# SPDX-License-Identifier: GPL-3.0-or-later
"""The routes of the nethvoice-proxy stand-in, kept where Kamailio reads them.

The real actions (nethesis/ns8-nethvoice-proxy imageroot/actions/{add,get,remove,list}-
route, add-trunk, ...) write Postgres, then 30reload_modules pipes `domain.reload`,
`dialplan.reload`, `dispatcher.reload` into `podman exec -i kamailio kamcmd >
/dev/null`. The stand-in writes the same rows into the sandbox Kamailio's db_text
tables (<state>/kamailio-db, see dbtext.py) and sends the same reloads to Kamailio's
JSON-RPC, answers unread. Mirrored from the real actions:

- a domain is stored as given, never lower-cased: the lookup is `target='<domain>'`,
  so "Voice.Example.org" and "voice.example.org" are two routes; and Kamailio's
  dialplan match (match_op 0) is case-sensitive, so a route written in capitals does
  not take a request for the lower-case host (the earlier stand-in lower-cased);
- add-route of a new domain: a nethvoice_proxy_routes row with the next setid (a
  sequence: numbers are never reused), a dialplan row (dpid 1, match_op 0,
  match_exp the domain, subst_exp '(.*)', repl_exp and attrs the setid) and a domain
  row (domain and did the domain); of a known domain: only its dispatcher rows are
  replaced, the setid kept;
- add-trunk: the same with route_type trunk and dialplan dpid 2, match_op 1,
  match_exp 'sip:<rule>.*@.*' (a regex on the whole Request-URI: "XX" in a rule is
  two literal X), one dispatcher row;
- remove-route/-trunk: every row of that setid; an unknown one is a no-op; remove-route
  takes only "domain" (its schema has additionalProperties false);
- get-route of an unknown domain prints {};
- a value longer than its varchar(64) column (a description, a domain) makes psql
  print an error and skip that INSERT, and the action still succeeds (psql's exit
  status is never read); list-routes then fails on the route left without
  destinations (json_agg of no rows is null), as the real one does;
- reloads: two route changes within 5 s leave the second written but not live,
  because Kamailio refuses a second dialplan/dispatcher reload within reload_delta
  ("ongoing reload") and the answer is not read; Kamailio not answering at all fails
  the step (podman exec fails when the container is not running).

The RPC is Kamailio's on 127.0.0.1:<SIP port>, reached inside the proxy's network
namespace (NS8_SANDBOX_NETNS, the sandbox node's) as `podman exec kamailio` enters
the container: the root namespace's 127.0.0.1:5060 may belong to another sandbox's
proxy. Without NS8_SANDBOX_NETNS (the MiniCluster runs no Kamailio) no reload is sent.
"""

import ctypes
import http.client
import json
import os
import sys
import threading
from pathlib import Path

import dbtext

DB_DIR = "kamailio-db"
VARCHAR = 64
RPC_PORT = 5060  # the proxy's TCP SIP socket on 127.0.0.1 (xhttp + jsonrpcs, /RPC)
RPC_TIMEOUT = 3.0


class RouteError(Exception):
    pass


def state_dir():
    return Path(os.environ.get("AGENT_STATE_DIR") or os.getcwd())


def db_dir(directory=None):
    return Path(directory or state_dir()) / DB_DIR


def create(directory):
    """The empty tables of a new proxy (its Postgres migrations)."""
    dbtext.create(db_dir(directory))


def psql_error(column):
    print(f"ERROR:  value too long for type character varying({VARCHAR}) ({column})", file=sys.stderr)


def _find(db, target, route_type):
    rows = [r for r in dbtext.read(db, "nethvoice_proxy_routes")
            if r["target"] == target and r["route_type"] == route_type]
    return rows[0] if rows else None


def _next_setid(db):
    seq = db / "nethvoice_proxy_routes_setid_seq"
    value = int(seq.read_text()) + 1 if seq.exists() else 1
    seq.write_text(f"{value}\n")
    return value


def _new_route(db, target, route_type, dialplan_row):
    """A nethvoice_proxy_routes row and its dialplan row; the route."""
    if len(target) > VARCHAR:
        psql_error("target")
        raise RouteError("no route was created")  # the real step would crash on the empty RETURNING
    route = {"target": target, "route_type": route_type, "setid": _next_setid(db)}
    dbtext.write(db, "nethvoice_proxy_routes", dbtext.read(db, "nethvoice_proxy_routes") + [route])
    setid = str(route["setid"])
    row = {"pr": 1, "match_len": 0, "subst_exp": "(.*)", "repl_exp": setid, "attrs": setid, **dialplan_row}
    dbtext.write(db, "dialplan", dbtext.read(db, "dialplan") + [row])
    return route


def _set_destinations(db, setid, destinations):
    rows = [r for r in dbtext.read(db, "dispatcher") if r["setid"] != setid]
    for item in destinations:
        if len(item["description"]) > VARCHAR:
            psql_error("description")
            continue
        rows.append({"setid": setid, "destination": item["uri"], "flags": 0, "priority": 0, "attrs": "",
                     "description": item["description"]})
    dbtext.write(db, "dispatcher", rows)


def _destinations(db, setid):
    return [{"uri": r["destination"], "description": r["description"] or ""}
            for r in dbtext.read(db, "dispatcher") if r["setid"] == setid]


def add_route(domain, address, directory=None):
    db = db_dir(directory)
    with dbtext.locked(db):
        route = _find(db, domain, "domain")
        if route is None:
            route = _new_route(db, domain, "domain", {"dpid": 1, "match_op": 0, "match_exp": domain})
            dbtext.write(db, "domain", dbtext.read(db, "domain") + [
                {"domain": domain, "did": domain, "last_modified": 0}])
        _set_destinations(db, route["setid"], address)


def remove_route(domain, directory=None):
    db = db_dir(directory)
    with dbtext.locked(db):
        route = _find(db, domain, "domain")
        if route is None:
            return
        _drop(db, route, lambda r: r["match_exp"] == domain)
        dbtext.write(db, "domain", [r for r in dbtext.read(db, "domain")
                                    if not (r["domain"] == domain and r["did"] == domain)])


def _drop(db, route, dialplan_match):
    setid = route["setid"]
    dbtext.write(db, "nethvoice_proxy_routes", [r for r in dbtext.read(db, "nethvoice_proxy_routes")
                                                if r != route])
    dbtext.write(db, "dialplan", [r for r in dbtext.read(db, "dialplan") if not (
        dialplan_match(r) and r["repl_exp"] == str(setid) and r["attrs"] == str(setid))])
    dbtext.write(db, "dispatcher", [r for r in dbtext.read(db, "dispatcher") if r["setid"] != setid])


def get_route(domain, directory=None):
    db = db_dir(directory)
    route = _find(db, domain, "domain")
    if route is None:
        return {}
    return {"address": _listed(db, route)}


def _listed(db, route):
    found = _destinations(db, route["setid"])
    if not found:  # json_agg over no rows is null; the real step iterates it
        raise RouteError("TypeError: 'NoneType' object is not iterable")
    return found


def list_routes(directory=None):
    db = db_dir(directory)
    return [{"domain": r["target"], "address": _listed(db, r)}
            for r in dbtext.read(db, "nethvoice_proxy_routes") if r["route_type"] == "domain"]


def add_trunk(rule, destination, directory=None):
    db = db_dir(directory)
    with dbtext.locked(db):
        route = _find(db, rule, "trunk")
        if route is None:
            route = _new_route(db, rule, "trunk", {"dpid": 2, "match_op": 1, "match_exp": f"sip:{rule}.*@.*"})
        _set_destinations(db, route["setid"], [destination])


def remove_trunk(rule, directory=None):
    db = db_dir(directory)
    with dbtext.locked(db):
        route = _find(db, rule, "trunk")
        if route is not None:
            _drop(db, route, lambda r: r["match_exp"] == f"sip:{rule}.*@.*")


def get_trunk(rule, directory=None):
    db = db_dir(directory)
    route = _find(db, rule, "trunk")
    return {"destination": _listed(db, route)[0]} if route else {}


def list_trunks(directory=None):
    db = db_dir(directory)
    return [{"rule": r["target"], "destination": _listed(db, r)[0]}
            for r in dbtext.read(db, "nethvoice_proxy_routes") if r["route_type"] == "trunk"]


# -- reloads -----------------------------------------------------------------------

def rpc(method, *params, netns=None, port=RPC_PORT, timeout=RPC_TIMEOUT):
    """One JSON-RPC call to Kamailio at 127.0.0.1:port (in netns when given): the
    decoded answer, {"result": ...} or {"error": ...}. OSError when nobody answers."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})

    def exchange():  # Kamailio keeps the connection open: read by Content-Length
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/RPC", body, {"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read() or b"{}")
        except http.client.HTTPException as err:
            raise OSError(f"not an HTTP answer: {err}") from None
        finally:
            conn.close()
    return in_netns(netns, exchange) if netns else exchange()


def reload(*modules):
    """`<module>.reload` for each, as 30reload_modules does: answers unread."""
    netns = os.environ.get("NS8_SANDBOX_NETNS")
    if not netns:  # no Kamailio (the MiniCluster): nothing to reload, nothing said
        return
    for module in modules:
        try:
            rpc(f"{module}.reload", netns=netns)
        except OSError as err:
            raise RouteError(f"Kamailio's RPC at 127.0.0.1:{RPC_PORT} did not answer: {err}") from None


_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def in_netns(netns, fn):
    """fn() in a thread that joined the network namespace (setns changes one thread)."""
    result = {}

    def target():
        try:
            with open(f"/run/netns/{netns}") as f:
                if _libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), f"setns({netns}) failed")
            result["value"] = fn()
        except BaseException as err:
            result["error"] = err
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def step(fn):
    """Run one action step: task data on stdin, one JSON document (or nothing) on stdout."""
    data = json.load(sys.stdin)
    try:
        result = fn(data)
    except RouteError as err:
        print(f"<3>{err}", file=sys.stderr)
        sys.exit(1)
    if result is not None:
        json.dump(result, sys.stdout)
