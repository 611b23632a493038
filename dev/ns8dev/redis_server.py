# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster's Redis: the leader's redis-server and this node's replica of it, with
NS8's users (node/install-finalize.sh, cluster add-node and add-module). Agents read
from the replica (REDIS_REPLICA_ADDRESS), as on a worker node, and write to the
leader (REDIS_ADDRESS); ACLs are not replicated, NS8 copies them to every node."""

import secrets

from . import procs
from .node import AGENT_ID, METRICS_ID, MODULE_ID, NETHVOICE_ID, NODE_ID, PROXY_ID, Started, free_port, tail
from .seeds import DEFAULT_USER_ACL, module_acl

MODULES = (MODULE_ID, NETHVOICE_ID, PROXY_ID, METRICS_ID)


def users(pw):
    return [
        DEFAULT_USER_ACL,
        f"user cluster on >{pw['cluster']} ~* &* +@all",
        f"user node/{NODE_ID} on >{pw['node']} resetkeys ~node/{NODE_ID}/* ~task/node/{NODE_ID}/* "
        "%R~private/nodes/* %R~private/agents/* %R~cluster/* %R~node/* %R~module/* "
        f"resetchannels &progress/node/{NODE_ID}/* &node/{NODE_ID}/event/* "
        "nocommands +@read +@write +@transaction +@connection +publish -@admin +psync +replconf",
        *[module_acl(m, pw[m]) for m in MODULES],
    ]


def start(sb):
    """Leader and replica; sb.redis gets the addresses and credentials. Waited for here:
    everything after it needs Redis."""
    pw = {"cluster": secrets.token_hex(16), "node": secrets.token_hex(16),
          **{m: secrets.token_hex(16) for m in MODULES}}
    leader, replica = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    popens = {}
    for name, address, extra in (
            ("redis", leader, []),
            ("redis-replica", replica, [f"replicaof 127.0.0.1 {leader.rsplit(':', 1)[1]}",
                                        f"masteruser node/{NODE_ID}", f"masterauth {pw['node']}"])):
        redis_dir = sb.run_dir / name
        redis_dir.mkdir()
        conf = redis_dir / "redis.conf"
        conf.write_text("\n".join(["bind 127.0.0.1", f"port {address.rsplit(':', 1)[1]}", f"dir {redis_dir}",
                                   'save ""', "appendonly no", "daemonize no", *extra, *users(pw)]) + "\n")
        conf.chmod(0o600)
        popens[name] = sb.spawn(name, ["redis-server", conf])
    sb.redis = {
        "address": leader,
        "replica_address": replica,
        "cluster": {"address": leader, "user": "cluster", "password": pw["cluster"]},
        "module": {"address": leader, "user": AGENT_ID, "password": pw[MODULE_ID]},
        "default": {"address": replica, "user": "default", "password": "nopass"},
        "passwords": pw,
    }
    sb.state.update(cluster_redis=sb.redis["cluster"], module_redis=sb.redis["module"], redis=sb.redis)
    sb.save()

    def ready():
        for name, popen in popens.items():
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{tail(sb.log_dir / f'{name}.log')}")
        return replica_linked(sb.redis)

    return Started(popens, lambda: procs.wait_for(ready, 10, "redis-server and its replica"))


def replica_linked(creds):
    import redis

    host, port = creds["replica_address"].split(":")
    try:
        with redis.Redis(host=host, port=int(port), username="cluster",
                         password=creds["cluster"]["password"]) as r:
            return r.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
