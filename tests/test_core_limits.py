"""Limits on rooms per user and members per room: refused on the leader with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_bus import Bus
from test_core_nodes import leaders, settled

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import OpFailed
from tchat.core.messages import JoinRoom, LeaveRoom, OpError
from tchat.core.server import ServerNode


def limited_cluster(rooms: int, members: int) -> tuple[Bus, list[ServerNode]]:
    bus = Bus(seed=4)
    servers = [
        bus.add_server(i, max_rooms_per_user=rooms, max_room_members=members) for i in (5, 9, 3)
    ]
    bus.run_until(lambda: settled(servers), 5)
    return bus, servers


def serving(bus: Bus, *names: str) -> list[ClientNode]:
    clients = [bus.add_client(name) for name in names]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 5)
    return clients


def failures(bus: Bus, client: ClientNode) -> list[str]:
    return [e.reason for e in bus.events[client.config.addr] if isinstance(e, OpFailed)]


def test_a_user_in_the_most_rooms_is_refused_another_until_it_leaves_one() -> None:
    bus, servers = limited_cluster(rooms=3, members=50)
    (leader,) = leaders(servers)
    (alice,) = serving(bus, "alice")
    for room in ("a", "b", "c", "d"):
        bus.submit(alice, JoinRoom(room))
    bus.run_until(lambda: not alice.pending, 3)
    assert sorted(alice.rooms) == ["a", "b", "c"]
    assert failures(bus, alice) == [
        "you are in 3 rooms, the most a user may be in: /leave one first"
    ]
    assert sorted(leader.state.rooms_of["alice"]) == ["a", "b", "c"]
    assert "d" not in leader.state.rooms  # a refused join creates no room either
    bus.submit(alice, LeaveRoom("a"))
    bus.submit(alice, JoinRoom("e"))
    bus.run_until(lambda: not alice.pending, 3)
    assert sorted(alice.rooms) == ["b", "c", "e"]
    for server in servers:  # the limit holds on every replica, not only in the client
        assert sorted(server.state.rooms_of["alice"]) == ["b", "c", "e"]


def test_a_full_room_refuses_joins_in_flight_deterministically() -> None:
    bus, servers = limited_cluster(rooms=10, members=3)
    (leader,) = leaders(servers)
    clients = serving(bus, "u0", "u1", "u2", "u3", "u4")
    # All five joins reach the leader before any commits: only three may take a place.
    for client in clients:
        bus.submit(client, JoinRoom("hall"))
    bus.run_until(lambda: not any(c.pending for c in clients), 3)
    inside = [c for c in clients if "hall" in c.rooms]
    outside = [c for c in clients if "hall" not in c.rooms]
    assert len(inside) == 3 and len(outside) == 2
    assert sorted(leader.state.members("hall")) == sorted(c.config.name for c in inside)
    for client in outside:
        assert failures(bus, client) == ["room 'hall' is full (3 members)"]
    errors = [m for _s, _d, m in bus.sent if isinstance(m, OpError)]
    assert len(errors) == 2
    # A place freed is a place taken.
    bus.submit(inside[0], LeaveRoom("hall"))
    bus.run_until(lambda: not inside[0].pending, 3)
    bus.submit(outside[0], JoinRoom("hall"))
    bus.run_until(lambda: not outside[0].pending, 3)
    assert "hall" in outside[0].rooms
    assert len(leader.state.members("hall")) == 3


def test_the_default_limits() -> None:
    from tchat.core.config import ServerConfig

    config = ServerConfig(1, "s1")
    # tchat bench fanout puts 400 members in one room: within the default.
    assert config.max_room_members == 1000 >= 400
    assert config.max_rooms_per_user == 100


def test_the_limits_come_from_the_config_file_and_nonsense_is_refused(tmp_path: Path) -> None:
    from tchat.runtime.modes import build_parser
    from tchat.runtime.options import options_from_args

    config = tmp_path / "tchat.toml"

    def load() -> tuple[int, int]:
        args = build_parser().parse_args(["--config", str(config), "--host", "127.0.0.1"])
        opts = options_from_args(args, "daemon")
        return opts.max_rooms_per_user, opts.max_room_members

    config.write_text("max_rooms_per_user = 20\nmax_room_members = 5000\n")
    assert load() == (20, 5000)
    for bad in ("0", "-3", '"many"', "2.5", "true"):
        config.write_text(f"max_room_members = {bad}\n")
        with pytest.raises(SystemExit, match="max_room_members"):
            load()
