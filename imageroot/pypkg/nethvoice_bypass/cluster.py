# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster Redis: NethVoice instances and the node's proxy, and the module's own
metrics keys.

Read as user `default` (password `nopass`) from the replica when there is one, the
way every NS8 agent reads cluster state; written only with the module's own
credentials, on the leader, and only the module's own keys.
"""

import contextlib
import functools
import json
import os

from .errors import Failure

NETHVOICE_IMAGE = "nethvoice"
PROXY_IMAGE = "nethvoice-proxy"


def redis_address():
    return os.environ.get("REDIS_REPLICA_ADDRESS") or os.environ.get("REDIS_ADDRESS") or "127.0.0.1:6379"


def _client(address, username, password):
    import redis  # lazy: keeps actions that do not need Redis fast to start
    from redis.backoff import ConstantBackoff
    from redis.retry import Retry

    host, _, port = address.rpartition(":")
    # bounded: a Redis that is down or hung costs a few seconds, not redis-py's default retries
    return redis.Redis(host=host or "127.0.0.1", port=int(port), username=username, password=password,
                       decode_responses=True, socket_timeout=3, socket_connect_timeout=2,
                       retry=Retry(ConstantBackoff(0.2), 1))


def connect():
    return _client(redis_address(), "default", "nopass")


@contextlib.contextmanager
def redis_errors(message):
    """redis-py's errors as one-line Failures (matched by module: redis is imported lazily)."""
    try:
        yield
    except Exception as err:
        if type(err).__module__.startswith("redis"):
            raise Failure(f"{message}: {err}") from err
        raise


def image_name(image_url):
    """`ghcr.io/nethesis/nethvoice:1.8.0` -> `nethvoice`."""
    name = (image_url or "").rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


class ClusterView:
    """What this node runs, read in two pipelined round trips."""

    def __init__(self, node_id, modules, proxy_id, proxy_srv, cluster_network=None):
        self.node_id = node_id
        self.modules = modules          # module id -> environment dict, this node only
        self.proxy_id = proxy_id
        self.proxy_srv = proxy_srv      # {"udp": {...}, "tcp": {...}}
        self.cluster_network = cluster_network

    @functools.cached_property
    def nethvoice(self):
        """NethVoice instances on this node, by module id."""
        return {mid: env for mid, env in sorted(self.modules.items())
                if image_name(env.get("IMAGE_URL")) == NETHVOICE_IMAGE}

    @property
    def proxy(self):
        return self.modules.get(self.proxy_id) if self.proxy_id else None


def read_cluster(rdb=None, node_id=None):
    node_id = str(node_id or os.environ.get("NODE_ID", ""))
    with redis_errors(f"cannot read the cluster Redis at {redis_address()}"):
        rdb = rdb or connect()
        placement = rdb.hgetall("cluster/module_node")
        local = [mid for mid, node in placement.items() if str(node) == node_id]
        pipe = rdb.pipeline(transaction=False)
        for mid in local:
            pipe.hgetall(f"module/{mid}/environment")
        pipe.get(f"node/{node_id}/default_instance/{PROXY_IMAGE}")
        pipe.get("cluster/network")
        *envs, proxy_id, network = pipe.execute()
        srv = {}
        if proxy_id:
            pipe = rdb.pipeline(transaction=False)
            for transport in ("udp", "tcp"):
                pipe.hgetall(f"module/{proxy_id}/srv/{transport}/sip")
            srv = dict(zip(("udp", "tcp"), pipe.execute(), strict=True))
    return ClusterView(node_id, dict(zip(local, envs, strict=True)), proxy_id, srv, network)


# --- writing: the module's own keys, with its own credentials, on the leader --------

def connect_as_module():
    user, password = os.environ.get("REDIS_USER"), os.environ.get("REDIS_PASSWORD")
    if not user or not password:
        raise Failure("REDIS_USER/REDIS_PASSWORD are not set: run inside the module's agent")
    return _client(os.environ.get("REDIS_ADDRESS") or "127.0.0.1:6379", user, password)


def vpn_address(node_id, rdb=None):
    with redis_errors(f"cannot read the cluster Redis at {redis_address()}"):
        return (rdb or connect()).hget(f"node/{node_id}/vpn", "ip_address") or ""


def vpn_endpoint_port(node_id, rdb=None):
    """node id -> the UDP port of its cluster VPN endpoint, or None when none is recorded.

    node/<id>/vpn has public_key, ip_address, destinations and endpoint `host:port`
    (ns8-core cluster/actions/create-cluster/50update, add-node/50update), no listen
    port: WireGuard listens on 55820 (cluster/vpn.py initialize_wgconf), which the
    endpoint's port differs from only behind a port forward.
    """
    with redis_errors(f"cannot read the cluster Redis at {redis_address()}"):
        endpoint = (rdb or connect()).hget(f"node/{node_id}/vpn", "endpoint") or ""
    port = endpoint.rpartition(":")[2]
    return int(port) if port.isascii() and port.isdigit() and 0 < int(port) < 65536 else None


def publish_metrics(module_id, field, targets_yaml, rules_yaml, event_payload):
    """The metrics module's contract: the scrape target and the alert rules of this
    module, each announced by its event (rules after targets)."""
    _write_metrics(module_id, event_payload, [
        ("hset", f"module/{module_id}/metrics_targets", field, targets_yaml, "metrics-target-changed"),
        ("hset", f"module/{module_id}/metrics_alert_rules", field, rules_yaml, "metrics-alert-rules-changed")])


def withdraw_metrics(module_id, field, event_payload):
    """The reverse, in the reverse order: rules first, then targets."""
    _write_metrics(module_id, event_payload, [
        ("hdel", f"module/{module_id}/metrics_alert_rules", field, None, "metrics-alert-rules-changed"),
        ("hdel", f"module/{module_id}/metrics_targets", field, None, "metrics-target-changed")])


def _write_metrics(module_id, event_payload, writes):
    with redis_errors(f"cannot publish the metrics of {module_id} on the cluster Redis"):
        rdb = connect_as_module()
        with rdb.pipeline(transaction=True) as pipe:
            for op, key, field, value, event in writes:
                pipe.hset(key, field, value) if op == "hset" else pipe.hdel(key, field)
                payload = event_payload if event == "metrics-target-changed" else {}
                pipe.publish(f"module/{module_id}/event/{event}", json.dumps(payload))
            pipe.execute()
