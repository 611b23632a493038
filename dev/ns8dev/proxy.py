# SPDX-License-Identifier: GPL-3.0-or-later
"""The NethVoice proxy's SIP side: Debian's Kamailio in the node namespace, configured
by dev/proxy-standin/kamailio/kamailio.cfg to make the proxy's routing decisions, with
its tables in the proxy stand-in's state dir (<state>/kamailio-db, db_text) where the
stand-in's route actions write them.

It listens as the proxy behind NAT does (bootstrap.sh): udp/tcp 127.0.0.1:5060, the
VPN address 10.5.4.1:5060, the private address 192.0.2.1:5060 (advertised as the
public 203.0.113.5) and the LAN port 192.0.2.1:6060 (advertised as 192.0.2.1:5060,
where the proxy's firewalld rules send the LAN). No TLS.

On a node the proxy shares the host's network, so the module's actions reach it at
127.0.0.1:5060 (SIP, and JSON-RPC at /RPC) and its siptrace mirror reaches
127.0.0.1:5065. Here the root namespace's loopback and the node's are joined for those
ports by ns8dev.loopback_relay, which holds sockets in both: what the root namespace
sends to 127.0.0.1:5060 arrives at Kamailio from the node's 127.0.0.1 (so the RPC and
the keepalive answer it), and what Kamailio sends to its 127.0.0.1:5065 goes on to the
root namespace's 127.0.0.1:5065 (lost when nobody listens there).
"""

import http.client
import json
import sys
from pathlib import Path

from . import procs
from .node import DEV, PROXY_ID, Started, alive_or_raise, run_in_netns
from .sip_responder import PROXY_SCANNER_UA

CONFIG = DEV / "proxy-standin/kamailio/kamailio.cfg"
RPC_TIMEOUT = 3.0


def local_cfg(env, db_dir, port=5060, lan_port=6060):
    """What the proxy's bootstrap.sh renders from its environment (local template and
    the listen= lines), for our kamailio.cfg."""
    lines = [
        f'#!define SERVICE_NET "{env["SERVICE_NET"]}"',
        f'#!define SERVICE_IP "{env["SERVICE_IP"]}"',
        f'#!define DBURL "text://{db_dir}"',
        f'#!define SCANNER_UA "{PROXY_SCANNER_UA}"',
        f'server_header="Server: {env["KML_SERVER_HEADER"]}"',
        f'user_agent_header="User-Agent: {env["KML_UA_HEADER"]}"',
    ]
    listen = [("127.0.0.1", port, None), (env["SERVICE_IP"], port, None)]
    if env.get("BEHIND_NAT") == "true":
        listen += [(env["PRIVATE_IP"], port, f"{env['PUBLIC_IP']}:{port}"),
                   (env["PRIVATE_IP"], lan_port, f"{env['PRIVATE_IP']}:{port}")]
    else:
        listen.append((env["PUBLIC_IP"], port, None))
    for host, p, advertise in listen:
        for proto in ("udp", "tcp"):
            lines.append(f"listen={proto}:{host}:{p}" + (f" advertise {advertise}" if advertise else ""))
    return "\n".join(lines) + "\n"


def start(sb):
    """Kamailio in the node namespace and the loopback relay in the root namespace."""
    env, p = sb.environments[PROXY_ID], sb.ports
    state = Path(sb.proxy["state_dir"])
    conf_dir = state / "kamailio"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "kamailio.cfg").symlink_to(CONFIG)
    (conf_dir / "local.cfg").write_text(local_cfg(env, state / "kamailio-db", p["proxy_sip"], p["proxy_lan_sip"]))
    kamailio = sb.spawn("kamailio", ["ip", "netns", "exec", sb.netns["node"], "kamailio",
                                     "-f", conf_dir / "kamailio.cfg", "-DD", "-E", "-m", "48", "-M", "8"])
    relay = sb.spawn("proxy-relay", [sys.executable, "-m", "ns8dev.loopback_relay", "--netns", sb.netns["node"],
                                     "--sip-port", p["proxy_sip"], "--hep-port", p["proxy_hep"], "--shared"],
                     env={"PYTHONPATH": str(DEV), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    sb.proxy.update(kamailio_dir=str(conf_dir))
    sb.state["proxy"] = sb.proxy
    sb.save()

    def ready():
        alive_or_raise(kamailio, "kamailio", sb.log_dir / "kamailio.log")
        alive_or_raise(relay, "proxy-relay", sb.log_dir / "proxy-relay.log")
        if "ready" not in (sb.log_dir / "proxy-relay.log").read_text(errors="replace"):
            return False
        try:
            return "result" in rpc(sb.netns["node"], "core.psx")
        except OSError:
            return False
    return Started({"kamailio": kamailio, "proxy-relay": relay},
                   lambda: procs.wait_for(ready, 15, "Kamailio's RPC"))


def rpc(netns, method, *params, port=5060, timeout=RPC_TIMEOUT):
    """One JSON-RPC call to the proxy's Kamailio from the node's 127.0.0.1 (what its
    xhttp route answers): the decoded answer, {"result": ...} or {"error": ...}."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})

    def call():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/RPC", body, {"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read() or b"{}")
        finally:
            conn.close()
    return run_in_netns(netns, call)
