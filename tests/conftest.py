"""Shared fixtures.

`sandbox`: one sandbox node (dev/ns8dev/sandbox.py) for the whole session, started
on first use; tests that do not ask for it never start it.
`remote`: run a command in the sandbox's remote namespace (the LAN side where the
Mediant lives), e.g. remote("sipsak", "-s", "sip:192.0.2.1:20040").
To run Python code there instead (sockets from 192.0.2.10):
sandbox.in_netns("remote", fn, *args).
"""

import os

import pytest
from ns8dev.sandbox import Sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the sandbox node needs root (network namespaces, firewalld, nftables): "
                    "run the integration tests as root, e.g. `sudo make test`", pytrace=False)
    sb = Sandbox(tmp_path_factory.mktemp("sandbox") / "node")
    sb.up()
    yield sb
    sb.down()


@pytest.fixture
def remote(sandbox):
    """remote(*argv, check=True, **subprocess_kwargs) -> CompletedProcess (text output)."""
    return sandbox.remote
