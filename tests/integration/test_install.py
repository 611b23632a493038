"""Installed the way the platform expects: one instance per node, whatever add-module
is given (max-per-node is advisory for add-module with an image URL)."""

import pytest
from nodetools import REPO
from ns8dev import agent
from ns8dev.sandbox import module_environment, write_env

pytestmark = pytest.mark.integration


@pytest.fixture
def new_instance(sandbox, tmp_path):
    """What add-module has done before it runs create-module: the module's install
    dir and environment on a node, its place in cluster/module_node."""
    rdb = sandbox.redis_client("cluster")
    made = []

    def install(module_id, node_id):
        install_dir = tmp_path / module_id
        (install_dir / "state").mkdir(parents=True)
        for part in ("pypkg", "etc"):
            (install_dir / part).symlink_to(REPO / "imageroot" / part)
        # create-module's own check, alone: the rest of create-module (units, metrics)
        # would act for a module the sandbox does not run
        (install_dir / "actions/create-module").mkdir(parents=True)
        (install_dir / "actions/create-module/04one_per_node").symlink_to(
            REPO / "imageroot/actions/create-module/04one_per_node")
        write_env(install_dir / "state/environment",
                  dict(module_environment(module_id, "ghcr.io/nethserver/nethvoice-bypass:latest"),
                       NODE_ID=node_id))
        write_env(install_dir / "state/agent.env", {"PYTHONPATH": install_dir / "pypkg"})
        rdb.hset("cluster/module_node", module_id, node_id)
        made.append(module_id)
        sandbox.sync_replica()
        env = agent.build_agent_env(f"module/{module_id}", str(install_dir), [str(sandbox.env_file)])
        return agent.Agent(f"module/{module_id}", str(install_dir), str(REPO / "dev/base-actions"), env=env)

    yield install
    rdb.hdel("cluster/module_node", *made)
    rdb.close()


def test_a_second_instance_on_the_node_is_refused(new_instance):
    result = new_instance("nethvoice-bypass2", "1").run("create-module", {"images": [], "volumes": {}})
    assert (result.exit_code, result.status) == (1, "aborted")
    lines = result.error.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.error
    assert "nethvoice-bypass1 already runs on node 1" in lines[0]
    assert "remove-module --no-preserve nethvoice-bypass2" in lines[0]


def test_the_only_instance_of_a_node_is_accepted(new_instance, actions):
    result = new_instance("nethvoice-bypass3", "2").run("create-module", {"images": [], "volumes": {}})
    assert result.exit_code == 0, result.error
    actions.run("create-module", {"images": [], "volumes": {}})  # the sandbox's own instance, again
