"""The simulator's own machinery (network, world, checker), driven by tiny fake nodes."""

from __future__ import annotations

import random
from enum import Enum

import pytest

from tchat.core.effects import (
    Broadcast,
    ChatDelivered,
    Deliver,
    DurableState,
    JoinGroup,
    LeaveGroup,
    Multicast,
    Persist,
    Send,
    Sent,
)
from tchat.core.messages import (
    Chat,
    ClientBeat,
    Dot,
    Entry,
    Epoch,
    Heartbeat,
    RoomCreated,
    RoomInvited,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    ServerJoined,
    UserOffline,
    UserOnline,
)
from tchat.core.vclock import VectorClock
from tchat.sim.expected import expected_deliveries, order_conflict
from tchat.sim.invariants import Violation
from tchat.sim.network import Network, NetworkFaults
from tchat.sim.world import World


class Role(Enum):
    LEADER = 1
    BACKUP = 2


class ClientState(Enum):
    SERVING = 1


class FakeLog:
    def __init__(self) -> None:
        self.items: list[Entry] = []

    def entries(self) -> list[Entry]:
        return self.items

    def get(self, dot: object) -> Entry | None:
        return None  # holds no chat: the checker's read-access judges skip it


class FakeServer:
    """Heartbeats everyone every 50 ms; the highest id it heard of leads; logs what it hears."""

    def __init__(self, config, durable: DurableState | None = None, rng=None) -> None:
        self.server_id = config.server_id
        self.addr = config.addr
        self.rng = rng
        self.durable = durable or DurableState()
        self.known = {self.server_id}
        self.log = FakeLog()
        self.log.items.extend(self.durable.entries)
        self.known.update(e.body.server_id for e in self.durable.entries)  # epochs never shrink
        self.seq = 0
        self.deadline: float | None = None
        self.heard_from: list[str] = []

    @property
    def role(self) -> Role:
        return Role.LEADER if self.server_id == max(self.known) else Role.BACKUP

    @property
    def epoch(self) -> Epoch:
        return Epoch(1, max(self.known))

    def start(self, now: float):
        self.deadline = now + 0.05
        return []

    def next_deadline(self) -> float | None:
        return self.deadline

    def tick(self, now: float):
        self.deadline = now + 0.05 + self.rng.random() * 0.01
        self.seq += 1
        beat = Heartbeat(self.server_id, self.addr, self.epoch, self.seq, ())
        return [Broadcast(beat), Multicast("239.0.0.1:1", beat)]

    def handle(self, message, src: str, now: float):
        self.heard_from.append(src)
        if isinstance(message, Heartbeat):
            self.known.add(message.src)
            n = len(self.log.items) + 1
            entry = Entry(
                Dot(self.server_id, n),
                VectorClock({self.server_id: n}),
                now,
                None,
                ServerJoined(message.src, message.addr),
            )
            self.log.items.append(entry)
            return [Persist((entry,)), Send(src, ClientBeat("x", self.epoch, 0))]
        return []


class FakeClient:
    def __init__(self, config, rng=None) -> None:
        self.name = config.name
        self.state = ClientState.SERVING
        self.heard: list[tuple[str, object]] = []
        self.joined = False

    def start(self, now: float):
        self.joined = True
        return [JoinGroup("239.0.0.1:1")]

    def next_deadline(self) -> float | None:
        return None

    def tick(self, now: float):
        return []

    def handle(self, message, src: str, now: float):
        self.heard.append((src, message))
        return []


def fake_world(seed: int, faults: NetworkFaults | None = None) -> World:
    return World(seed, faults=faults, server_factory=FakeServer, client_factory=FakeClient)


def entry(server: int, counter: int, clock: dict[int, int], body=None) -> Entry:
    body = body or Chat("ann", "lobby", None, "hi", False, VectorClock())
    return Entry(Dot(server, counter), VectorClock(clock), 0.0, None, body)


# -- network -------------------------------------------------------------------------
def test_partition_and_cut_reachability() -> None:
    net = Network(random.Random(1))
    assert net.reachable("a", "b")
    net.partition(["a"])
    assert not net.reachable("a", "b") and net.reachable("b", "c")
    net.heal()
    net.cut("b", "a")
    assert not net.reachable("a", "b") and net.reachable("a", "c")
    net.uncut("a", "b")
    assert net.reachable("a", "b")


def test_arrivals_drop_and_duplicate_are_seeded() -> None:
    def run(seed: int) -> list[list[float]]:
        net = Network(random.Random(seed), NetworkFaults(drop=0.2, dup=0.2))
        return [net.arrivals("a", "b", 1.0) for _ in range(200)]

    first = run(7)
    assert first == run(7)
    assert any(not a for a in first) and any(len(a) == 2 for a in first)
    assert all(1.0 < t < 1.1 for a in first for t in a)


def test_fifo_links_never_reorder() -> None:
    net = Network(random.Random(3), NetworkFaults(fifo=True, spike_p=0.5, spike_max=0.1))
    times = [t for i in range(100) for t in net.arrivals("a", "b", i * 0.0001)]
    assert times == sorted(times)


def test_groups_forget_a_vanished_member() -> None:
    net = Network(random.Random(1))
    net.join("c1", "g")
    net.join("c2", "g")
    net.leave("c2", "g")
    net.join("c3", "g")
    assert net.members("g") == ["c1", "c3"]
    net.forget("c1")
    assert net.members("g") == ["c3"]


# -- world ---------------------------------------------------------------------------
def _busy_world(seed: int) -> World:
    world = fake_world(seed, NetworkFaults(drop=0.05, dup=0.05))
    for sid in (5, 9, 2):
        world.add_server(sid)
    world.add_client("ann")
    world.run_until(1.0)
    return world


def test_same_seed_same_fingerprint_other_seed_differs() -> None:
    a, b, c = _busy_world(11), _busy_world(11), _busy_world(12)
    assert a.fingerprint() == b.fingerprint()
    assert a.steps == b.steps
    assert a.fingerprint() != c.fingerprint()


def test_broadcast_and_multicast_reach_the_right_nodes() -> None:
    world = fake_world(1)
    for sid in (1, 2, 3):
        world.add_server(sid)
    client = world.add_client("ann")
    world.run_until(0.2)
    assert all(
        s.node.role.name == ("LEADER" if sid == 3 else "BACKUP") for sid, s in world.servers.items()
    )
    # Every server's heartbeat reached the client twice per beat: broadcast + multicast.
    srcs = {src for src, _ in client.node.heard}
    assert srcs == {world.servers[sid].addr for sid in (1, 2, 3)}
    world._apply(client, [LeaveGroup("239.0.0.1:1")])
    before = len(client.node.heard)
    world.run_until(0.4)
    beats = len(client.node.heard) - before
    assert 0 < beats <= 3 * 5  # broadcasts only now (about 4 beats each in 0.2 s)


def test_partition_isolates_and_crash_loses_in_flight() -> None:
    world = fake_world(2)
    for sid in (1, 2, 3):
        world.add_server(sid)
    world.run_until(0.3)
    s3 = world.servers[3]
    world.partition([s3.addr])
    mark = len(s3.node.heard_from)
    world.run_until(1.0)
    assert set(s3.node.heard_from[mark + 4 :]) <= {s3.addr}  # only in-flight stragglers
    world.heal()
    world.run_until(1.3)
    assert world.servers[1].addr in s3.node.heard_from[mark + 4 :]
    world.crash_server(3)
    assert world.running_servers() == [world.servers[1], world.servers[2]]
    world.run_until(1.5)
    assert all(
        s.node.role.name == ("LEADER" if s.server_id == 3 else "BACKUP")
        for s in world.running_servers()
    )  # fake nodes never forget


def test_restart_gets_durable_state_back() -> None:
    world = fake_world(4)
    for sid in (1, 2):
        world.add_server(sid)
    world.run_until(0.5)
    stored = len(world.servers[1].durable.entries)
    assert stored > 0 and len(world.servers[1].durable_ids) == stored
    world.crash_server(1)
    world.run_until(0.8)
    assert len(world.servers[1].durable.entries) == stored  # nothing persisted while down
    world.start_server(1)
    assert len(world.servers[1].node.log.entries()) == stored
    assert world.servers[1].incarnation == 2


def test_node_exception_is_a_violation() -> None:
    class Exploding(FakeServer):
        def handle(self, message, src, now):
            raise RuntimeError("boom")

    world = World(1, server_factory=Exploding, client_factory=FakeClient)
    world.add_server(1)
    world.add_server(2)
    with pytest.raises(Violation) as info:
        world.run_until(0.5)
    assert info.value.invariant == "node-exception" and "boom" in info.value.detail


def test_bad_effect_from_client_is_a_violation() -> None:
    world = fake_world(1)
    client = world.add_client("ann")
    with pytest.raises(Violation, match="Persist"):
        world._apply(client, [Persist(())])


# -- checker -------------------------------------------------------------------------
def test_exactly_once_and_causal_order_violations_are_caught() -> None:
    world = fake_world(1)
    world.add_server(1)
    client = world.add_client("ann")
    a = entry(1, 1, {1: 1})
    b = entry(1, 2, {1: 2})
    world.checker.on_client_event(client, ChatDelivered(b))
    with pytest.raises(Violation) as info:
        world.checker.on_client_event(client, ChatDelivered(a))
    assert info.value.invariant == "causal-order"
    other = world.add_client("bob")
    world.checker.on_client_event(other, ChatDelivered(a))
    with pytest.raises(Violation) as info:
        world.checker.on_client_event(other, ChatDelivered(a))
    assert info.value.invariant == "exactly-once"
    # concurrent entries may come in either order
    world.checker.on_client_event(other, ChatDelivered(entry(2, 1, {2: 3})))
    world.checker.on_client_event(other, ChatDelivered(entry(3, 1, {3: 1})))


def test_ack_of_an_entry_nobody_stored_is_a_violation() -> None:
    world = fake_world(1)
    world.add_server(1)
    client = world.add_client("ann")
    world.run_until(0.2)
    with pytest.raises(Violation) as info:
        world._apply(client, [Deliver(Sent(1, "1.999"))])
    assert info.value.invariant == "ack-durable"


def test_a_leader_of_someone_elses_epoch_is_caught_after_its_step() -> None:
    class Usurper(FakeServer):
        @property
        def epoch(self) -> Epoch:
            return Epoch(1, 99)

        @property
        def role(self) -> Role:
            return Role.LEADER

    world = World(1, server_factory=Usurper, client_factory=FakeClient)
    with pytest.raises(Violation) as info:
        world.add_server(1)
    assert info.value.invariant == "leader-epoch"


def test_epoch_going_backwards_is_caught() -> None:
    world = fake_world(1)
    world.add_server(1)
    world.add_server(2)
    world.run_until(0.3)
    world.checker.max_epoch[1] = Epoch(5, 2)
    with pytest.raises(Violation) as info:
        world.run_until(0.6)
    assert info.value.invariant == "epoch-monotonic"


def test_order_conflict_ignores_concurrent_pairs() -> None:
    x = entry(1, 1, {1: 1})
    y = entry(1, 2, {1: 2})
    z = entry(2, 1, {2: 1})
    assert order_conflict([x, y], [x, y]) is None
    assert order_conflict([x, y], [y, x]) == (x.id, y.id)
    assert order_conflict([x, z], [z, x]) is None


def test_expected_deliveries_follow_membership_and_sessions() -> None:
    log = [
        entry(1, 1, {1: 1}, UserOnline("ann", "a", "c1")),
        entry(1, 2, {1: 2}, UserOnline("bob", "b", "c2")),
        entry(1, 3, {1: 3}, UserOnline("ann", "x", "c9", b"k" * 32)),  # another key: ignored
        entry(1, 4, {1: 4}, RoomJoined("lobby", "ann")),
        entry(1, 5, {1: 5}, Chat("ann", "lobby", None, "1", False, VectorClock())),
        entry(1, 6, {1: 6}, RoomJoined("lobby", "bob")),
        entry(1, 7, {1: 7}, Chat("bob", "lobby", None, "2", False, VectorClock())),
        entry(1, 8, {1: 8}, RoomLeft("lobby", "ann")),
        entry(1, 9, {1: 9}, Chat("bob", None, "ann", "3", False, VectorClock())),
        entry(1, 10, {1: 10}, UserOffline("bob", "c2", "logout", VectorClock())),
        entry(1, 11, {1: 11}, Chat("ann", "lobby", None, "4", False, VectorClock())),
    ]
    got = expected_deliveries(log, {"c1", "c2", "c9"})
    assert got == {"c1": ["1.5", "1.7", "1.9"], "c2": ["1.7", "1.9"]}
    # With ann's own key, c9 is her second terminal: it gets what came after its login.
    log[2] = entry(1, 3, {1: 3}, UserOnline("ann", "x", "c9"))
    got = expected_deliveries(log, {"c1", "c2", "c9"})
    assert got == {"c1": ["1.5", "1.7", "1.9"], "c2": ["1.7", "1.9"], "c9": ["1.5", "1.7", "1.9"]}


def test_a_kick_a_merge_voids_still_ends_what_is_due() -> None:
    """Seed 66 (chaos, 30 ops): each side of a partition created room "den"; on server 1's
    side kim owned it privately, let lou in and kicked her, then spoke. The merge puts
    ivy's public "den" first, so the fold ignores kim's kick (not the owner) and lou is a
    member throughout; but in the causal past of kim's messages the kick stood: lou was
    told she was out, no server streamed them to her, and her cursor covers them, so no
    catch-up brings them. A message is due where the merged fold and its causal view agree."""
    log = [
        entry(2, 1, {2: 1}, UserOnline("ivy", "i", "c5")),
        entry(2, 2, {2: 2}, RoomCreated("den", "ivy", False)),
        entry(1, 1, {1: 1}, UserOnline("kim", "k", "c4")),
        entry(1, 2, {1: 2}, UserOnline("lou", "l", "c3")),
        entry(1, 3, {1: 3}, RoomCreated("den", "kim", True)),
        entry(1, 4, {1: 4}, RoomInvited("den", "lou", "kim")),
        entry(1, 5, {1: 5}, RoomJoined("den", "lou")),
        entry(1, 6, {1: 6}, Chat("kim", "den", None, "before", False, VectorClock())),
        entry(1, 7, {1: 7}, RoomKicked("den", "lou", "kim")),
        entry(1, 8, {1: 8}, Chat("kim", "den", None, "after", False, VectorClock())),
        entry(1, 9, {1: 9, 2: 2}, Chat("kim", "den", None, "merged", False, VectorClock())),
    ]
    got = expected_deliveries(log, {"c3", "c4"})
    assert "1.6" in got["c3"]  # said while she was a member on every view
    assert "1.8" not in got["c3"]  # after a kick that stood where it was said
    assert "1.8" in got["c4"] and "1.9" in got["c4"]
    # Said after the merge reached kim's side: there too the kick is void, lou a member.
    assert "1.9" in got["c3"]
