"""conntrack flushing without the tool, and the parsing of its listing."""

import pytest
from nethvoice_bypass import conntrack

pytestmark = pytest.mark.unit

SPEC = {"protocol": "udp", "port": 5060, "family": "ipv4", "source": "192.0.2.10"}


def test_missing_tool_is_reported_not_fatal(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert conntrack.flush_many([SPEC, dict(SPEC, source=None)]) == [conntrack.UNAVAILABLE] * 2
    assert conntrack.flush("udp", 5060, "ipv4")["status"] == "unavailable"


def test_listing_decides_which_forwards_need_a_delete(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    tool = tmp_path / "conntrack"
    # a conntrack that lists one flow from 192.0.2.10 and records every call
    tool.write_text(f"""#!/bin/sh
echo "$@" >> {calls}
case "$1" in
  -L) echo "udp      17 29 src=192.0.2.10 dst=192.0.2.1 sport=5060 dport=5060 src=192.0.2.1 dst=192.0.2.10 sport=20040 dport=5060 mark=0 use=1";
      echo "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown." >&2 ;;
  -D) echo "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted." >&2; exit 0 ;;
esac
""")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    results = conntrack.flush_many([SPEC, dict(SPEC, source="198.51.100.7"), dict(SPEC, source="192.0.2.0/24")])
    assert [r["deleted"] for r in results] == [1, 0, 1]
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("-L -p udp --orig-port-dst 5060 -f ipv4")
    assert [line for line in lines if line.startswith("-D")] == [
        "-D -p udp --orig-port-dst 5060 -f ipv4 -s 192.0.2.10", "-D -p udp --orig-port-dst 5060 -f ipv4 -s 192.0.2.0/24"]
