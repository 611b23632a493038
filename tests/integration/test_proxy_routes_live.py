"""Route changes go live on the sandbox's real Kamailio: the proxy's add-route reloads its
tables without looking, and Kamailio refuses a second reload within 5 s, so several
aliases in one task would leave all but the first written and not live. The module
looks with dialplan.dump and dispatcher.list and reloads again (bounded)."""

import pytest
from nethvoice_bypass import kamailio

pytestmark = pytest.mark.integration

ALIASES = ["one.customer.example", "two.customer.example", "three.customer.example"]


def live(sandbox):
    rules = sandbox.in_netns("node", kamailio.dialplan, 5060, 1)
    return {r["match"] for r in rules}


def test_several_aliases_in_one_task_are_all_live(actions, sandbox):
    try:
        out = actions.run("configure-bypass", {"domain_aliases": ALIASES})
        assert [c["op"] for c in out["plan"]] == ["add_route"] * 3
        assert set(ALIASES) <= live(sandbox)
        dests = {d["uri"] for d in sandbox.in_netns("node", kamailio.dispatcher_list, 5060)}
        assert "sip:10.5.4.1:20040" in dests
        out = actions.run("configure-bypass", {"domain_aliases": ALIASES[:1]})
        assert not {ALIASES[1], ALIASES[2]} & live(sandbox) and ALIASES[0] in live(sandbox)
    finally:
        actions.run("configure-bypass", {"domain_aliases": []})
    assert not set(ALIASES) & live(sandbox)
