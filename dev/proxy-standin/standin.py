"""A stand-in for the nethvoice-proxy module (nethesis/ns8-nethvoice-proxy), agent side.

Its actions add-route, get-route, remove-route, list-routes and add-trunk, get-trunk,
remove-trunk, list-trunks carry the proxy's input and output schemas, write the rows
the real ones write into the db_text tables Kamailio reads (<state>/kamailio-db) and
reload Kamailio as they do (pypkg/proxy_routes.py says what behaviour is mirrored).
It runs under dev/ns8dev/agent.py like any module:

    install(install_dir, environment, redis_password)   # lay out ~nethvoice-proxy1/.config
    seed_route(state_dir, **nethvoice_route(nv_env, proxy_env))  # NethVoice's own route
    argv = agent_argv(install_dir, node_env_file)        # then start it with env=agent_env()

or from a shell:
    python dev/proxy-standin/standin.py seed-route --state-dir DIR --domain D \
        --uri sip:10.5.4.1:20024 --description nethvoice1
"""

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV = HERE.parent
PROXY_ID = "nethvoice-proxy1"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

sys.path.insert(0, str(HERE / "pypkg"))
import proxy_routes  # noqa: E402


def write_env(path, values, mode=0o644):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(mode)


def install(install_dir, environment, redis_password, module_id=PROXY_ID, agent_env=None):
    """A rootless module home as node add-module leaves it: actions/ and pypkg/ from the
    image (linked here), state/environment, state/agent.env with the Redis credentials."""
    install_dir = Path(install_dir)
    state = install_dir / "state"
    state.mkdir(parents=True, exist_ok=True)
    for name in ("actions", "pypkg"):
        link = install_dir / name
        if not link.exists():
            link.symlink_to(HERE / name)
    write_env(state / "environment", environment)
    proxy_routes.create(state)
    write_env(state / "agent.env", {
        "REDIS_USER": f"module/{module_id}",
        "REDIS_PASSWORD": redis_password,
        "PYTHONPATH": install_dir / "pypkg",
        **(agent_env or {}),
    }, 0o600)
    return state


def nethvoice_route(nethvoice_env, proxy_env):
    """The route NethVoice's configure-module/60sip_proxy adds for itself: to Asterisk's UDP
    listener, ASTERISK_SIP_UDP_PORT since 1.8 (update-module.d/90repoint_sip_proxy)."""
    port = nethvoice_env.get("ASTERISK_SIP_UDP_PORT") or nethvoice_env["ASTERISK_SIP_PORT"]
    return {"domain": nethvoice_env["NETHVOICE_HOST"],
            "address": [{"uri": f"sip:{proxy_env['SERVICE_IP']}:{port}",
                         "description": nethvoice_env["MODULE_ID"]}]}


def seed_route(state_dir, domain, address):
    """A route written before Kamailio starts (it reads the tables then)."""
    proxy_routes.add_route(domain, address, directory=state_dir)


def agent_argv(install_dir, env_file, module_id=PROXY_ID, python=None):
    """The agent runner's command line for the stand-in (start it with agent_env())."""
    return [python or sys.executable, "-m", "ns8dev.agent", "serve",
            "--agent-id", f"module/{module_id}", "--install-dir", str(install_dir),
            "--base-actions", str(DEV / "base-actions"), "--env-file", str(env_file)]


def agent_env(path=None):
    """What the runner needs from its own environment; the rest comes from env files."""
    return {"PATH": path or f"{Path(sys.executable).parent}:{SYSTEM_PATH}",
            "PYTHONPATH": str(DEV), "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    seed = sub.add_parser("seed-route", help="add (or replace) a route in the stand-in's tables")
    seed.add_argument("--state-dir", required=True)
    seed.add_argument("--domain", required=True)
    seed.add_argument("--uri", required=True)
    seed.add_argument("--description", default="")
    show = sub.add_parser("list-routes", help="print the stand-in's routes")
    show.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "seed-route":
        seed_route(args.state_dir, args.domain, [{"uri": args.uri, "description": args.description}])
    else:
        print(json.dumps(proxy_routes.list_routes(args.state_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
