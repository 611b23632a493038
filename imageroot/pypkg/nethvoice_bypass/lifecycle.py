# SPDX-License-Identifier: GPL-3.0-or-later
"""The module's own installation: create-module's checks."""

import os

from .cluster import image_name, read_cluster
from .errors import Failure

IMAGE = "nethvoice-bypass"


def refuse_second_instance(_data=None):
    """One per node (org.nethserver.max-per-node=1): the module owns the node's 5060
    forwards, and add-module with an image URL does not enforce the label."""
    module_id = os.environ.get("MODULE_ID", "")
    cluster = read_cluster()
    others = sorted(mid for mid, env in cluster.modules.items()
                    if mid != module_id and image_name(env.get("IMAGE_URL")) == IMAGE)
    if others:
        raise Failure(f"{IMAGE} is one per node and {others[0]} already runs on node {cluster.node_id}: "
                      f"remove this instance with `remove-module --no-preserve {module_id}`")
