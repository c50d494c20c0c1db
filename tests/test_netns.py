"""Multi-host tests on a LAN of network namespaces: the fixture itself, then tchat across hosts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import netns
from tests.cluster_harness import Client, Cluster, Daemon

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        netns.unavailable_reason() is not None, reason=netns.unavailable_reason() or ""
    ),
]

# A tiny UDP agent run inside a namespace: commands on stdin, what it receives on stdout.
#   listen PORT [GROUP]   bind 0.0.0.0:PORT (joining GROUP on this host's address); prints "ok"
#   send ADDR PORT TEXT   one datagram (broadcast and multicast allowed, multicast TTL 1)
# Received datagrams print as "got PORT SRC HEX" (hex: tchat's frames are binary).
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
            print("got", r.getsockname()[1], src[0], data.hex(), flush=True)
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
        self.proc = lan.popen(
            label, [sys.executable, "-c", AGENT, self.addr], stdin=subprocess.PIPE
        )
        self.reader = netns.LineReader(self.proc)
        self._cursor = 0

    def do(self, line: str) -> None:
        assert self.proc.stdin is not None
        start = len(self.reader.lines)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        self.reader.wait_for(lambda s: s == "ok", 5.0, start=start)

    def expect(self, text: str, timeout: float = 3.0) -> str:
        """The source address of a datagram whose bytes contain text."""
        needle = text.encode().hex()
        _, line = self.reader.wait_for(lambda s: s.startswith("got ") and needle in s, timeout)
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
    lan: netns.Lan, agents: dict[str, Agent]
) -> None:
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
    lan.hosts["y2"] = netns.Host(
        label="y2", ns=lan.hosts["y2"].ns, addr="not-an-address", segment="a", port="p2"
    )
    with pytest.raises(RuntimeError, match="not-an-address"):
        lan.create()
    leftover = {lan.switch, *(h.ns for h in lan.hosts.values())} & set(netns.our_namespaces())
    assert not leftover


def _root_links() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


# --------------------------------------------------------------------------------------------
# tchat across hosts: real broadcast discovery, real multicast, real partitions.

NODE_PORT = 47480
ROOM = "lobby"
UP = 25.0  # generous: a leader and registered clients well within this on a loaded CI box


class TchatLan:
    """The runtime's test Cluster, with each daemon and client inside its own host."""

    def __init__(self, lan: netns.Lan, tmp_path: Path, timing: dict[str, float]) -> None:
        self.lan = lan
        extra: list[str] = []
        if timing:  # through a config file: the command line has no option for every timer
            config = tmp_path / "tchat.toml"
            config.write_text("[timing]\n" + "".join(f"{k} = {v}\n" for k, v in timing.items()))
            extra = ["--config", str(config)]
        self.cluster = Cluster(tmp_path, extra=extra)
        self.clients: dict[str, Client] = {}
        self.daemons: list[Daemon] = []

    def _prefix(self, label: str) -> list[str]:
        return self.lan.command(label, [])

    def daemon(self, label: str, server_id: int) -> Daemon:
        daemon = self.cluster.daemon(
            server_id=server_id,
            host=self.lan.hosts[label].addr,
            prefix=self._prefix(label),
            args=["--port", str(NODE_PORT)],
            wait=False,
        )
        self.daemons.append(daemon)
        return daemon

    def client(self, label: str, user: str) -> Client:
        client = self.clients[user] = self.cluster.client(
            user, host=self.lan.hosts[label].addr, prefix=self._prefix(label)
        )
        return client

    def status(self, label: str) -> dict[str, Any] | None:
        """`tchat status --json` run on host label: what that host's side of the LAN says."""
        argv = self.cluster.status_argv(0.4, self.lan.hosts[label].addr)
        done = subprocess.run(
            self.lan.command(label, argv),
            capture_output=True,
            text=True,
            env=self.cluster.status_env(),
            timeout=15,
        )
        return json.loads(done.stdout) if done.returncode == 0 else None  # type: ignore[no-any-return]

    def wait_status(
        self, label: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """Poll `tchat status --json` from host label until predicate holds."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.status(label)
            if last is not None and predicate(last):
                return last
        raise AssertionError(
            f"no {what} seen from {label} within {timeout}s; last status: "
            f"{last}\n{self.diagnostics()}"
        )

    def wait(
        self, user: str, kind: str, what: str, timeout: float = 15.0, **fields: Any
    ) -> dict[str, Any]:
        try:
            return self.clients[user].wait_event(kind, timeout, **fields)
        except AssertionError as exc:
            raise AssertionError(f"{user}: no {what}: {exc}\n{self.diagnostics()}") from None

    def say(self, user: str, line: str) -> str:
        """Send a chat line and return its id once the leader acknowledged it."""
        client = self.clients[user]
        start = len(client.events)
        client.send(line)
        try:
            sent = client.wait_event("sent", 15.0, start=start)
        except AssertionError as exc:
            raise AssertionError(f"no ack of {line!r}: {exc}\n{self.diagnostics()}") from None
        return str(sent["id"])

    def diagnostics(self) -> str:
        parts = [f"--- {d.name} stderr:\n{d.tail(15)}" for d in self.daemons]
        for user, client in self.clients.items():
            parts.append(f"--- {user} events:\n" + "\n".join(client.stdout_lines[-15:]))
        return "\n".join(parts)


def settled(servers: int) -> Callable[[dict[str, Any]], bool]:
    """A status where `servers` servers answered: one leader (the one named), the rest backups."""

    def check(status: dict[str, Any]) -> bool:
        answered = [s for s in status["servers"] if s["answered"]]
        roles = sorted(s["role"] for s in answered)
        leader = [s["id"] for s in answered if s["role"] == "leader"]
        return (
            len(answered) == servers
            and roles == ["backup"] * (servers - 1) + ["leader"]
            and leader == [status["leader"]]
        )

    return check


def only_user(name: str) -> Callable[[dict[str, Any]], bool]:
    """A status whose user list is exactly [name]."""
    return lambda status: [u["name"] for u in status["users"]] == [name]


def message_ids(client: Client, room: str | None = ROOM) -> list[str]:
    return [str(e["id"]) for e in client.of("message") if e.get("room") == room]


@pytest.fixture
def tchat_lan_factory(tmp_path: Path) -> Iterator[Callable[..., TchatLan]]:
    made: list[TchatLan] = []

    def make(labels: list[str], segment_b: list[str] | None = None, **timing: float) -> TchatLan:
        netns.remove_stale_namespaces()
        lan = netns.Lan(labels, segment_b=segment_b or []).create()
        made.append(TchatLan(lan, tmp_path, timing))
        return made[-1]

    yield make
    for t in made:
        t.cluster.close()
        t.lan.close()


def test_cluster_on_five_hosts_discovers_registers_and_chats(
    tchat_lan_factory: Callable[..., TchatLan],
) -> None:
    t = tchat_lan_factory(["s1", "s2", "s3", "c1", "c2", "w1"])
    for index in (1, 2, 3):
        t.daemon(f"s{index}", index)
    status = t.wait_status("c1", settled(3), UP, "a leader known to all 3 servers")
    assert {s["addr"] for s in status["servers"]} == {
        f"{t.lan.hosts[f's{i}'].addr}:{NODE_PORT}" for i in (1, 2, 3)
    }
    alice, bob = t.client("c1", "alice"), t.client("c2", "bob")
    for user in ("alice", "bob"):
        assert t.wait(user, "ready", "ready", UP)["user"] == user
        started = t.wait(user, "status", "start status", state="started")
        assert started.get("connection") == "multicast", started
    # One after the other: alice then hears of bob's join as a members event.
    alice.send(f"/join {ROOM}")
    joined = t.wait("alice", "joined", "join", room=ROOM)
    bob.send(f"/join {ROOM}")
    t.wait("bob", "joined", "join", room=ROOM)
    alice.wait_event("members", 15.0, room=ROOM, where=lambda e: "bob" in e["members"])

    # A watcher host that runs no tchat joins the room's group: the room message must be on
    # the wire as one multicast datagram from the leader, not only unicast to each member.
    group_ip, group_port = str(joined["group"]).rsplit(":", 1)
    watcher = Agent(t.lan, "w1")
    watcher.do(f"listen {group_port} {group_ip}")
    room_id = t.say("alice", f"/say {ROOM} hello-from-host-4")
    heard = t.wait("bob", "message", "room message", id=room_id)
    assert (heard["from"], heard["room"], heard["text"]) == ("alice", ROOM, "hello-from-host-4")
    leader = t.status("c2")
    assert leader is not None
    # Sealed under the room's key (0xD5): the watcher sees the leader's datagram on the
    # group, but not the text, which only members can open.
    sealed = f"got {group_port} {leader['leader_addr'].split(':')[0]} d5"
    watcher.reader.wait_for(lambda s: s.startswith(sealed), 5.0)
    assert not watcher.received("hello-from-host-4", within=0.5)

    private_id = t.say("bob", "/msg alice psst-from-host-5")
    whisper = t.wait("alice", "message", "private message", id=private_id)
    assert (whisper["from"], whisper["to"], whisper["room"]) == ("bob", "alice", None)
    users = t.wait_status("c2", lambda s: len(s["users"]) == 2, 10.0, "both users registered")
    assert {(u["name"], u["addr"].split(":")[0]) for u in users["users"]} == {
        ("alice", t.lan.hosts["c1"].addr),
        ("bob", t.lan.hosts["c2"].addr),
    }
    assert alice.alive() and bob.alive()


def partition_scenario(t: TchatLan, drop_clients: bool) -> None:
    """Both sides of a partition chat; after healing both clients hold the merged history.

    Segment a: s1, s2, c1 (alice). Segment b: s3, c2 (bob). The partition is the trunk
    between the two switch segments going down; healing brings it back up. With
    drop_clients, the partition lasts until each side's leader has logged out the other
    side's client (client_timeout), as any partition of more than a few seconds does.
    """
    for index in (1, 2, 3):
        t.daemon(f"s{index}", index)
    t.wait_status("c1", settled(3), UP, "a leader known to all 3 servers")
    t.client("c1", "alice")
    t.client("c2", "bob")
    for user in ("alice", "bob"):
        t.wait(user, "ready", "ready", UP)
        t.clients[user].send(f"/join {ROOM}")
        t.wait(user, "joined", "join", room=ROOM)
    # alice joined first: she hears of bob's join (so bob is a member before anyone speaks).
    t.clients["alice"].wait_event("members", UP, room=ROOM, where=lambda e: "bob" in e["members"])
    acked = [t.say("alice", f"/say {ROOM} before-split")]
    t.wait("bob", "message", "the message before the split", id=acked[0])

    t.lan.partition()
    side_a = t.wait_status("c1", settled(2), UP, "a leader on side a (s1, s2)")
    side_b = t.wait_status("c2", settled(1), UP, "a leader on side b (s3)")
    assert side_a["leader"] in (1, 2) and side_b["leader"] == 3
    for n in range(3):
        acked.append(t.say("alice", f"/say {ROOM} side-a-{n}"))
        acked.append(t.say("bob", f"/say {ROOM} side-b-{n}"))
    if drop_clients:
        for label, user in (("c1", "alice"), ("c2", "bob")):
            t.wait_status(label, only_user(user), UP, f"{user} alone on {user}'s side")
    else:  # nobody was logged out: the timeout is far longer than this test
        assert len(t.status("c2")["users"]) == 2  # type: ignore[index]

    t.lan.heal()
    healed = t.wait_status("c1", settled(3), UP, "one leader for all 3 servers after healing")
    seen_from_b = t.wait_status("c2", settled(3), UP, "the same leader seen from side b")
    assert seen_from_b["leader"] == healed["leader"]
    for user in ("alice", "bob"):
        for entry_id in acked:
            t.wait(user, "message", f"message {entry_id} in the merged history", id=entry_id)
    for user in ("alice", "bob"):
        ids = message_ids(t.clients[user])
        duplicates = {i for i in ids if ids.count(i) > 1}
        assert not duplicates, f"{user} got {sorted(duplicates)} more than once"
        assert set(acked) <= set(ids)
        assert not t.clients[user].of("left"), f"{user} was taken out of {ROOM}"
    # The room still works for both after healing.
    after = t.say("bob", f"/say {ROOM} after-heal")
    t.wait("alice", "message", "a message sent after healing", id=after)


def test_short_partition_both_sides_chat_then_heal_merges_history(
    tchat_lan_factory: Callable[..., TchatLan],
) -> None:
    t = tchat_lan_factory(
        ["s1", "s2", "s3", "c1", "c2"], segment_b=["s3", "c2"], client_timeout=120.0
    )
    partition_scenario(t, drop_clients=False)


def test_long_partition_logs_clients_out_then_heal_merges_history(
    tchat_lan_factory: Callable[..., TchatLan],
) -> None:
    t = tchat_lan_factory(["s1", "s2", "s3", "c1", "c2"], segment_b=["s3", "c2"])
    partition_scenario(t, drop_clients=True)
