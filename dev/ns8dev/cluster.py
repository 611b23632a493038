# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster side of the node: /etc/nethserver/agent.env, the roles and grants in
Redis, the nethvoice-proxy stand-in's agent (dev/proxy-standin) and the api-server
stand-in (ns8dev.apiserver: login, tasks, the cluster-admin page and the module's UI).
"""

import functools
import importlib.util
import secrets
import shutil
import sys

from . import apiserver, procs
from .node import (
    ADDRESSES,
    API_ENDPOINT_ENV,
    CAPTURE_NETNS_ENV,
    CLUSTER_NETWORK,
    DEV,
    MODULE_ID,
    NETHVOICE_ID,
    NODE_ID,
    PORTS,
    PROFILES,
    PROXY_ID,
    REPO,
    SYSTEM_PATH,
    SYSTEMD_DIR_ENV,
    Started,
    alive_or_raise,
    free_port,
    runner_env,
    tail,
    write_env,
)


@functools.cache
def proxy_standin():
    """dev/proxy-standin/standin.py, loaded by path (the directory is no package)."""
    spec = importlib.util.spec_from_file_location("ns8dev_proxy_standin", DEV / "proxy-standin/standin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def node_tools(sb):
    """<root>/usr/local/bin: tools that must act on the node namespace.

    Actions run in the root namespace (they reach Redis and MariaDB on 127.0.0.1),
    but the node's conntrack table is the node namespace's: the real conntrack,
    run there, is what `conntrack` means on the node's PATH.
    """
    bin_dir = sb.root / "usr/local/bin"
    bin_dir.mkdir(parents=True)
    for tool in ("conntrack", "nft"):
        real = shutil.which(tool, path=SYSTEM_PATH)
        if real:  # without it the module sees what a node without the tool shows
            wrapper = bin_dir / tool
            wrapper.write_text(f"#!/bin/sh\n# Sandbox: the node's {tool} state is the one of "
                               f"namespace {sb.netns['node']}.\n"
                               f'exec ip netns exec {sb.netns["node"]} {real} "$@"\n')
            wrapper.chmod(0o755)
    return bin_dir


def write_node_env(sb):
    """/etc/nethserver/agent.env of the node, with the api-server's address."""
    node_path = f"{PROFILES[sb.profile] / 'bin'}:{DEV / 'bin'}:{node_tools(sb)}:{SYSTEM_PATH}"
    sb.api_url = sb.state["api_url"] = f"http://127.0.0.1:{free_port()}"
    sb.save()
    write_env(sb.env_file, {
        "REDIS_ADDRESS": sb.redis["address"],
        "REDIS_REPLICA_ADDRESS": sb.redis["replica_address"],
        "NODE_ID": NODE_ID,
        "NS8_SANDBOX_ROOT": sb.root,
        "NS8_SANDBOX_NETNS": sb.netns["node"],
        "AGENT_BASEACTIONS_DIR": DEV / "base-actions",  # the core's actions, e.g. get-status
        "DBUS_SYSTEM_BUS_ADDRESS": sb.bus_address,
        "PATH": node_path,
        API_ENDPOINT_ENV: sb.api_url,
        SYSTEMD_DIR_ENV: sb.root / "etc/systemd/system",  # the module's units, for dev/bin/systemctl
        CAPTURE_NETNS_ENV: sb.netns["node"],
    })
    (sb.root / "etc/systemd/system").mkdir(parents=True)


def seed_roles(sb):
    """Roles and grants (add-module, the proxy's routeadm role, the image labels) and
    the cluster-admin UI user: before anything can log in or submit tasks."""
    r = sb.redis_client("cluster")
    try:
        apiserver.seed_cluster(r, admin=(sb.admin["username"], sb.admin["password"]))
    finally:
        r.close()


def install_proxy_standin(sb):
    """The nethvoice-proxy stand-in, rootless: ~nethvoice-proxy1/.config, with the
    route NethVoice's configure-module adds for its own host name."""
    envs, standin = sb.environments, proxy_standin()
    proxy_state = standin.install(sb.proxy["install_dir"], envs[PROXY_ID], sb.redis["passwords"][PROXY_ID])
    standin.seed_route(proxy_state, **standin.nethvoice_route(envs[NETHVOICE_ID], envs[PROXY_ID]))
    return proxy_state


def start_proxy_agent(sb):
    """The proxy stand-in under the same agent runner as the module."""
    argv = proxy_standin().agent_argv(sb.proxy["install_dir"], sb.env_file)
    popen = sb.spawn("proxy-agent", argv, env=runner_env(sb.env_file), cwd=sb.proxy["state_dir"])
    return Started({"proxy-agent": popen}, lambda: wait_polling(sb, "proxy-agent", f"module/{PROXY_ID}"))


def start_apiserver(sb):
    """The api-server stand-in: the cluster-admin page (dev/cluster-admin) at /, the
    module's UI (ui/dist) at /apps/<module_id>/; missing directories answer 404."""
    name = "api-server"
    popen = sb.spawn(name, [
        sys.executable, "-m", "ns8dev.apiserver",
        "--listen", sb.api_url.removeprefix("http://"),
        "--redis-address", sb.redis["address"],
        "--redis-user", "cluster", "--redis-password", sb.redis["cluster"]["password"],
        "--static", REPO / "dev/cluster-admin", "--app", f"{MODULE_ID}={REPO / 'ui/dist'}",
    ], env=runner_env(sb.env_file))

    def listening():
        alive_or_raise(popen, name, sb.log_dir / f"{name}.log")
        return "api-server listening on http://" in tail(sb.log_dir / f"{name}.log")
    return Started({name: popen}, lambda: procs.wait_for(listening, 15, name))


def wait_polling(sb, name, agent_id, timeout=15):
    """Until agent_id waits on its task queue: a Redis client named agent_id (what
    the api-server's client idle check looks for) blocked in BRPOP."""
    from .node import BLOCKING_POPS

    popen = sb.procs[name]
    r = sb.redis_client("cluster")

    def polling():
        alive_or_raise(popen, name, sb.log_dir / f"{name}.log")
        return any(c.get("name") == agent_id and c.get("cmd") in BLOCKING_POPS for c in r.client_list())
    try:
        procs.wait_for(polling, timeout, f"{name} to wait on {agent_id}/tasks")
    finally:
        r.close()


def seed_redis(sb):
    """What add-module, add-node and the modules' own create-module wrote in Redis."""
    from .modules import IMAGES

    envs, proxy = sb.environments, sb.environments[PROXY_ID]
    r = sb.redis_client("cluster")
    p = r.pipeline()
    p.set("cluster/network", CLUSTER_NETWORK)
    p.hset(f"node/{NODE_ID}/vpn", mapping={
        "ip_address": ADDRESSES["service_ip"], "public_key": secrets.token_hex(16),
        "destinations": ADDRESSES["service_ip"] + "/32",
        "endpoint": f"{ADDRESSES['public_ip']}:55820", "listen_port": "55820"})
    for module_id, image in IMAGES.items():
        p.hset("cluster/module_node", module_id, NODE_ID)
        p.hset(f"module/{module_id}", mapping={"image": image, "image_url_override": "", "redis_sha256": ""})
        p.hset(f"module/{module_id}/environment", mapping=envs[module_id])
        p.sadd(f"module/{module_id}/flags", "rootfull" if module_id == MODULE_ID else "rootless")
        p.set(f"cluster/module_sequence/{image}", 1)
        p.set(f"cluster/default_instance/{image}", module_id)
        p.set(f"node/{NODE_ID}/default_instance/{image}", module_id)
    p.sadd(f"cluster/authorizations/module/{NETHVOICE_ID}", "traefik@any:fulladm", "node:fwadm,portsadm",
           "nethvoice-proxy@any:routeadm", "cluster:accountconsumer", "self:selfadm")
    p.sadd(f"cluster/authorizations/module/{PROXY_ID}", "node:fwadm", "traefik@any:certadm", "self:selfadm")
    for transport in ("udp", "tcp"):  # the proxy's configure-module/90srv
        p.hset(f"module/{PROXY_ID}/srv/{transport}/sip", mapping={
            "port": str(PORTS["proxy_sip"]), "host": proxy["SERVICE_IP"],
            "address": proxy["PRIVATE_IP"], "public_address": proxy["PUBLIC_IP"],
            "fqdn": proxy["KML_DEFAULT_FQDN"], "node": NODE_ID, "module_uuid": proxy["MODULE_UUID"]})
    p.execute()
    r.close()
