"""The route table of the nethvoice-proxy stand-in: a JSON file in its state dir.

The real proxy keeps routes in Postgres (nethvoice_proxy_routes + dispatcher sets)
and reloads Kamailio; the stand-in keeps the same observable behaviour:

- domains are stored lower-case (the proxy canonicalises them, one route per domain
  whatever the casing of later requests);
- add-route replaces the address list of an existing domain (same dispatcher set,
  new destinations) or creates the route;
- get-route of an unknown domain prints {}; remove-route of one is a no-op;
- remove-route with "address" removes those URIs only and drops the route when none
  is left (the older proxy behaviour; the current one may ignore "address");
- a description longer than 64 characters fails like the varchar(64) column does.
"""

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

FILE_NAME = "routes.json"
DESCRIPTION_MAX = 64


class RouteError(Exception):
    pass


def state_dir():
    return Path(os.environ.get("AGENT_STATE_DIR") or os.getcwd())


def canonical(domain):
    return domain.strip().lower()


def _load(path):
    try:
        return json.loads(path.read_text()).get("routes", [])
    except FileNotFoundError:
        return []


def _save(path, routes):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"routes": routes}, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def table(directory=None, write=False):
    """The route list, under a lock; saved on exit when write=True."""
    path = Path(directory or state_dir()) / FILE_NAME
    with open(path.with_name(FILE_NAME + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        routes = _load(path)
        yield routes
        if write:
            _save(path, routes)


def _find(routes, domain):
    for route in routes:
        if route["domain"] == domain:
            return route
    return None


def add_route(domain, address, directory=None):
    address = [{"uri": a["uri"], "description": a.get("description", "")} for a in address]
    for item in address:
        if len(item["description"]) > DESCRIPTION_MAX:
            raise RouteError("ERROR:  value too long for type character varying(64)")
    domain = canonical(domain)
    with table(directory, write=True) as routes:
        route = _find(routes, domain)
        if route is None:
            routes.append({"domain": domain, "address": address})
        else:
            route["address"] = address


def get_route(domain, directory=None):
    with table(directory) as routes:
        route = _find(routes, canonical(domain))
    return {"address": route["address"]} if route else {}


def remove_route(domain, address=None, directory=None):
    domain = canonical(domain)
    with table(directory, write=True) as routes:
        route = _find(routes, domain)
        if route is None:
            return
        if address:
            gone = {a["uri"] for a in address}
            route["address"] = [a for a in route["address"] if a["uri"] not in gone]
        if not address or not route["address"]:
            routes.remove(route)


def list_routes(directory=None):
    with table(directory) as routes:
        return routes


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
