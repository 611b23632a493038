"""Fixtures for tests on the sandbox node (helpers in nodetools)."""

import pytest
from nodetools import Actions, firewall_state


@pytest.fixture(scope="session")
def actions(sandbox):
    return Actions(sandbox)


@pytest.fixture
def clean_forwards(actions, sandbox):
    """Every test starts and ends with no managed forward and only the proxy's rules."""
    baseline = firewall_state(sandbox)
    yield baseline
    listed = actions.run("list-port-forwards")
    ids = [f["id"] for f in listed["forwards"]]
    if ids:
        actions.run("remove-port-forward", {"ids": ids})
    assert firewall_state(sandbox) == baseline


@pytest.fixture
def nethvoice_env(sandbox):
    """Change NethVoice's environment in the cluster Redis; restored afterwards."""
    rdb = sandbox.redis_client("cluster")
    key = "module/nethvoice1/environment"
    saved = rdb.hgetall(key)
    placement = rdb.hgetall("cluster/module_node")
    yield rdb
    rdb.delete(key)
    rdb.hset(key, mapping=saved)
    rdb.delete("cluster/module_node")
    rdb.hset("cluster/module_node", mapping=placement)


@pytest.fixture
def reinstalled(actions):
    """For a test that runs destroy-module: the module is created again afterwards (its
    units, its published metrics), as add-module would."""
    yield
    actions.run("create-module", {"images": [], "volumes": {}})
