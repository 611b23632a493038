# SPDX-License-Identifier: GPL-3.0-or-later
"""The record of an older version of the module, brought to this one: once, on
update-module (and by the first change that finds it, e.g. after a restore), with the
facts read from the node at that time (record_v1 says which, and what is assumed)."""

from . import keeper, record_v1
from .errors import Failure
from .step import critical, log
from .store import Store


def read_facts():
    """What the node says now; each part that cannot be read leaves the assumptions."""
    from .bypass_plan import proxy_outbound_value
    from .cluster import read_cluster
    from .firewalld import Firewalld
    from .freepbx import READ_TIMEOUT, read_trunks

    try:
        cluster = read_cluster()
    except Failure as err:
        log(f"migration: the cluster is not readable ({err}): assumptions only")
        return record_v1.Facts()
    trunks = {}
    for instance in cluster.nethvoice:
        try:
            trunks[instance] = {t["id"]: t for t in read_trunks(instance, READ_TIMEOUT)}
        except Failure as err:
            log(f"migration: the trunks of {instance} are not readable ({err})")
    try:
        fw = Firewalld()
        zone = fw.default_zone()
        observed = {zone: {c: fw.rich_rules(zone, c) for c in ("runtime", "permanent")}}
    except Failure as err:
        log(f"migration: firewalld is not readable ({err})")
        observed = None
    return record_v1.Facts(frozenset(cluster.nethvoice), trunks,
                           {i: proxy_outbound_value(env) for i, env in cluster.nethvoice.items()}, observed)


def migrate_record(_data=None):
    """update-module: migrate the record if it is an older version (a no-op otherwise)."""
    store = Store()
    with store.locked(), critical():
        keeper.load_for_change(store, read_facts)
