"""Multi-host tests on a LAN of network namespaces: the fixture itself, then tchat across hosts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests import netns

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(netns.unavailable_reason() is not None,
                       reason=netns.unavailable_reason() or ""),
]

# A tiny UDP agent run inside a namespace: commands on stdin, what it receives on stdout.
#   listen PORT [GROUP]   bind 0.0.0.0:PORT (joining GROUP on this host's address); prints "ok"
#   send ADDR PORT TEXT   one datagram (broadcast and multicast allowed, multicast TTL 1)
# Received datagrams print as "got PORT SRC TEXT".
AGENT = r"""
import select, socket, struct, sys
me = sys.argv[1]
socks = {}
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
while True:
    ready, _, _ = select.select([sys.stdin, *socks.values()], [], [], 30)
    if not ready:
        break
    for r in ready:
        if r is sys.stdin:
            line = sys.stdin.readline()
            if not line:
                raise SystemExit(0)
            cmd, *args = line.split(maxsplit=3)
            if cmd == "listen":
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", int(args[0])))
                if len(args) > 1:
                    mreq = socket.inet_aton(args[1]) + socket.inet_aton(me)
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                socks[int(args[0])] = s
            elif cmd == "send":
                out.sendto(args[2].encode(), (args[0], int(args[1])))
            print("ok", flush=True)
        else:
            data, src = r.recvfrom(2048)
            print("got", r.getsockname()[1], src[0], data.decode(), flush=True)
"""

HOSTS = ["h1", "h2", "h3", "h4"]
SIDE_B = ["h3", "h4"]
PORT = 47470
GROUP = "239.255.42.7"
GROUP_PORT = 47471
QUIET = 0.7  # how long silence must last to count as "not delivered"


class Agent:
    """Drives one AGENT process inside a host."""

    def __init__(self, lan: netns.Lan, label: str) -> None:
        self.addr = lan.hosts[label].addr
        self.proc = lan.popen(label, [sys.executable, "-c", AGENT, self.addr],
                              stdin=subprocess.PIPE)
        self.reader = netns.LineReader(self.proc)
        self._cursor = 0

    def do(self, line: str) -> None:
        assert self.proc.stdin is not None
        start = len(self.reader.lines)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        self.reader.wait_for(lambda s: s == "ok", 5.0, start=start)

    def expect(self, text: str, timeout: float = 3.0) -> str:
        """The source address of the datagram carrying text."""
        _, line = self.reader.wait_for(lambda s: s.startswith("got ") and s.endswith(" " + text),
                                       timeout)
        return line.split()[2]

    def received(self, text: str, within: float = QUIET) -> bool:
        try:
            self.expect(text, within)
        except TimeoutError:
            return False
        return True


@pytest.fixture(scope="module")
def lan() -> Iterator[netns.Lan]:
    netns.remove_stale_namespaces()
    with netns.Lan(HOSTS, segment_b=SIDE_B) as built:
        yield built


@pytest.fixture(scope="module")
def agents(lan: netns.Lan) -> dict[str, Agent]:
    found = {label: Agent(lan, label) for label in HOSTS}
    for agent in found.values():
        agent.do(f"listen {PORT}")
        agent.do(f"listen {GROUP_PORT} {GROUP}")
    return found


def test_unicast_between_hosts_across_the_trunk(agents: dict[str, Agent]) -> None:
    agents["h1"].do(f"send {agents['h4'].addr} {PORT} uni-1-4")
    agents["h4"].do(f"send {agents['h2'].addr} {PORT} uni-4-2")
    assert agents["h4"].expect("uni-1-4") == agents["h1"].addr
    assert agents["h2"].expect("uni-4-2") == agents["h4"].addr


def test_broadcast_reaches_every_other_host(agents: dict[str, Agent]) -> None:
    agents["h1"].do(f"send {netns.BROADCAST} {PORT} bcast-1")
    for label in ["h2", "h3", "h4"]:
        assert agents[label].expect("bcast-1") == agents["h1"].addr


def test_multicast_reaches_every_member(agents: dict[str, Agent]) -> None:
    agents["h3"].do(f"send {GROUP} {GROUP_PORT} mcast-3")
    for label in ["h1", "h2", "h4"]:
        assert agents[label].expect("mcast-3") == agents["h3"].addr


def test_partition_splits_the_segments_and_heal_joins_them(
        lan: netns.Lan, agents: dict[str, Agent]) -> None:
    lan.partition()
    try:
        agents["h1"].do(f"send {netns.BROADCAST} {PORT} split-bcast")
        agents["h4"].do(f"send {GROUP} {GROUP_PORT} split-mcast")
        agents["h1"].do(f"send {agents['h3'].addr} {PORT} split-uni")
        assert agents["h2"].received("split-bcast")
        assert agents["h3"].received("split-mcast")
        # Same-side deliveries above took their time; one quiet period covers every cross-side one.
        assert not agents["h3"].received("split-bcast")
        assert not agents["h4"].received("split-bcast", within=0.05)
        assert not agents["h1"].received("split-mcast", within=0.05)
        assert not agents["h2"].received("split-mcast", within=0.05)
        assert not agents["h3"].received("split-uni", within=0.05)
    finally:
        lan.heal()
    agents["h1"].do(f"send {netns.BROADCAST} {PORT} healed-bcast")
    agents["h4"].do(f"send {GROUP} {GROUP_PORT} healed-mcast")
    for label in ["h2", "h3", "h4"]:
        assert agents[label].received("healed-bcast", within=3.0)
    for label in ["h1", "h2", "h3"]:
        assert agents[label].received("healed-mcast", within=3.0)


def test_teardown_removes_namespaces_links_and_processes() -> None:
    root_links_before = _root_links()
    lan = netns.Lan(["x1", "x2"]).create()
    names = [lan.switch, *(h.ns for h in lan.hosts.values())]
    assert set(names) <= set(netns.our_namespaces())
    sleeper = lan.popen("x1", ["sleep", "60"])
    lan.close()
    assert sleeper.poll() is not None
    assert not set(names) & set(netns.our_namespaces())
    assert _root_links() == root_links_before


def test_failed_build_tears_down_what_it_built() -> None:
    lan = netns.Lan(["y1", "y2"])
    lan.hosts["y2"] = netns.Host(label="y2", ns=lan.hosts["y2"].ns, addr="not-an-address",
                                 segment="a", port="p2")
    with pytest.raises(RuntimeError, match="not-an-address"):
        lan.create()
    leftover = {lan.switch, *(h.ns for h in lan.hosts.values())} & set(netns.our_namespaces())
    assert not leftover


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}
