# SPDX-License-Identifier: GPL-3.0-or-later
"""The module in NS8's monitoring: its timer and exporter units, the exporter's
address, and the scrape target and alert rules it publishes for the metrics module."""

import os
import secrets

import yaml

from . import cluster, metrics, systemd
from .errors import Failure
from .step import read_env, set_env

FIELD = "bypass"  # the field of module/<id>/metrics_targets and metrics_alert_rules


def event_payload():
    return {"reason": os.environ.get("AGENT_TASK_ACTION", ""), "module_id": os.environ["MODULE_ID"],
            "node_id": int(os.environ["NODE_ID"]), "module_uuid": os.environ.get("MODULE_UUID", "")}


def set_up(_data=None):
    """create-module and update-module: (re)install the units, (re)publish."""
    module_id, node_id = os.environ["MODULE_ID"], os.environ["NODE_ID"]
    port = os.environ.get("TCP_PORT")
    if not port:
        raise Failure("TCP_PORT is not set: the image asks for one TCP port (org.nethserver.tcp-ports-demand=1)")
    address = cluster.vpn_address(node_id)
    if not address:
        raise Failure(f"node {node_id} has no VPN address in the cluster Redis (node/{node_id}/vpn)")
    # a path nobody guesses: the exporter answers nothing else
    path = read_env("METRICS_PATH") or f"/metrics-{secrets.token_urlsafe(18)}"
    set_env(METRICS_ADDRESS=address, METRICS_PATH=path)
    systemd.install_units(module_id)
    targets = yaml.safe_dump(metrics.scrape_target(address, port, node_id, module_id, path), sort_keys=False)
    rules = yaml.safe_dump(metrics.alert_rules(), sort_keys=False, allow_unicode=True)
    cluster.publish_metrics(module_id, FIELD, targets, rules, event_payload())


def tear_down(_data=None):
    """destroy-module: withdraw the rules, then the target; disable the units."""
    module_id = os.environ["MODULE_ID"]
    cluster.withdraw_metrics(module_id, FIELD, event_payload())
    systemd.remove_units(module_id)
