# SPDX-License-Identifier: GPL-3.0-or-later
"""The NethVoice proxy's Kamailio, through its JSON-RPC on the node's loopback.

The proxy (host network) answers `POST http://127.0.0.1:<port>/RPC` on its TCP SIP
socket (xhttp + jsonrpcs, event_route[xhttp:request]), for source 127.0.0.1 only;
<port> is the proxy's SIP port (`module/<proxy>/srv/tcp/sip` field `port`, 5060 by
default: ClusterView.proxy_srv["tcp"]["port"]). Answers as Kamailio 5.6.3 gives them:

- domain.dump: {"domains": [{"domain", "did"}], "attributes": []}
- dialplan.dump <dpid>: {"DPID", "ENTRIES": [{"ENTRY": {"PRIO", "MATCHOP", "MATCHEXP",
  "MATCHLEN", "SUBSTEXP", "REPLEXP", "ATTRS"}}]}; REPLEXP is the dispatcher set
- dispatcher.list: {"NRSETS", "RECORDS": [{"SET": {"ID", "TARGETS": [{"DEST": {"URI",
  "FLAGS", "PRIORITY"}}]}}]}; FLAGS "AX": A active, I inactive, D disabled, T
  trying, P probing, X not set
- siptrace.status on|off|check: "Enabled" or "Disabled"
- dialplan.reload / dispatcher.reload within reload_delta (5 s) of the last one:
  error 500 "ongoing reload" (dialplan) or "Ongoing reload" (dispatcher)
- dialplan.dump of a dpid without rules: error 500 "Dialplan ID not matched"
- an unknown method: error 500 "Method Not Found"

Every call is bounded (a few seconds) and fails as one line.
"""

import http.client
import json

from .errors import Failure

HOST = "127.0.0.1"
DEFAULT_PORT = 5060
TIMEOUT = 3.0
ONGOING = "ongoing reload"


class RpcError(Failure):
    """Kamailio answered the call with an error (`code`, `message`)."""

    def __init__(self, method, code, message, port):
        self.method, self.code, self.rpc_message = method, code, message
        super().__init__(f"the proxy's RPC at {HOST}:{port} refused {method}: {code} {message}")


def srv_port(proxy_srv):
    """The proxy's SIP port from its srv key ({"tcp": {"port": ...}}), else 5060."""
    port = str(((proxy_srv or {}).get("tcp") or {}).get("port") or "")
    return int(port) if port.isdigit() else DEFAULT_PORT


def call(port, method, *params, timeout=TIMEOUT):
    """The "result" of one call; RpcError when Kamailio answers with an error,
    Failure when it does not answer."""
    where = f"{HOST}:{port}"
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/RPC", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        status, raw = response.status, response.read()
    except TimeoutError:
        raise Failure(f"the proxy's RPC at {where} did not answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise Failure(f"the proxy's RPC at {where} refused the connection: is the proxy running?") from None
    except (OSError, http.client.HTTPException) as err:
        raise Failure(f"the proxy's RPC at {where} failed: {err or type(err).__name__}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        raise Failure(f"the proxy's RPC at {where} answered HTTP {status} without JSON "
                      f"(not from 127.0.0.1, or not Kamailio)") from None
    if "error" in answer:
        error = answer["error"] or {}
        raise RpcError(method, error.get("code"), error.get("message", ""), port)
    return answer.get("result")


def live_domains(port, timeout=TIMEOUT):
    """The domains Kamailio treats as its own now (domain.dump): [domain]."""
    result = call(port, "domain.dump", timeout=timeout) or {}
    return [d["domain"] for d in result.get("domains") or []]


def dialplan(port, dpid, timeout=TIMEOUT):
    """The live rules of a dialplan (1: domains, 2: trunk rules):
    [{"match": MATCHEXP, "match_op": MATCHOP, "setid": REPLEXP, "priority": PRIO}]."""
    try:
        result = call(port, "dialplan.dump", dpid, timeout=timeout) or {}
    except RpcError as err:
        if err.rpc_message == "Dialplan ID not matched":  # no rule at all with that dpid
            return []
        raise
    return [{"match": e["ENTRY"]["MATCHEXP"], "match_op": e["ENTRY"]["MATCHOP"],
             "setid": e["ENTRY"]["REPLEXP"], "priority": e["ENTRY"]["PRIO"]}
            for e in result.get("ENTRIES") or []]


def dispatcher_list(port, timeout=TIMEOUT):
    """The live destinations: [{"uri", "setid", "flags", "active", "probing"}]."""
    try:
        result = call(port, "dispatcher.list", timeout=timeout) or {}
    except RpcError as err:
        if "no destination sets" in err.rpc_message.lower():
            return []
        raise
    out = []
    for record in result.get("RECORDS") or []:
        dset = record["SET"]
        for target in dset.get("TARGETS") or []:
            dest = target["DEST"]
            flags = dest.get("FLAGS", "")
            out.append({"uri": dest["URI"], "setid": dset["ID"], "flags": flags,
                        "active": flags.startswith("A"), "probing": "P" in flags})
    return out


def siptrace(port, action="check", timeout=TIMEOUT):
    """Switch or read the HEP mirror to 127.0.0.1:5065: True when on."""
    if action not in ("check", "on", "off"):
        raise ValueError(f"siptrace action must be check, on or off, not {action!r}")
    result = call(port, "siptrace.status", action, timeout=timeout)
    return str(result).lower() == "enabled"


def reload(port, *modules, timeout=TIMEOUT):
    """`<module>.reload` for each ("domain", "dialplan", "dispatcher"):
    {module: "reloaded" | "ongoing"}. "ongoing" is Kamailio's refusal of a second
    reload within reload_delta (5 s): the tables as they were before stay live."""
    out = {}
    for module in modules or ("domain", "dialplan", "dispatcher"):
        try:
            call(port, f"{module}.reload", timeout=timeout)
            out[module] = "reloaded"
        except RpcError as err:
            if err.rpc_message.lower() != ONGOING:
                raise
            out[module] = "ongoing"
    return out
