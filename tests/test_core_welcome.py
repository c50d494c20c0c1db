"""Logins and room joins as the committed log has them: a refused login gets no Welcome, a
Welcome shows only committed users, a join of a room the account is in is answered with
the room, and a terminal back from away does not rejoin a room its account left."""

from __future__ import annotations

from core_bus import Bus, answer, key_for
from test_core_nodes import chats, cluster, leaders, serving, settled
from test_core_rename import grow_the_majority

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import Failed, OpFailed, RoomEntered, RoomExited, Sent
from tchat.core.messages import (
    Admit,
    Append,
    JoinRoom,
    LeaveRoom,
    LobbyFrame,
    Message,
    Rejected,
    Resync,
    RoomFrame,
    RoomJoined,
    SendChat,
    SessionFrame,
    UserList,
    UserOnline,
    Welcome,
)
from tchat.core.server import ServerNode


def _joins(server: ServerNode, room: str, name: str) -> int:
    return sum(
        1
        for e in server.log.entries()
        if isinstance(e.body, RoomJoined) and e.body.room == room and e.body.name == name
    )


def _entered(bus: Bus, client: ClientNode, room: str) -> int:
    return sum(
        1
        for e in bus.events[client.config.addr]
        if isinstance(e, RoomEntered) and e.info.room == room
    )


def _to(bus: Bus, client: ClientNode, kind: type[Message]) -> list[Message]:
    return [m for _, dst, m in bus.sent if dst == client.config.addr and isinstance(m, kind)]


# -- 3: a join is idempotent ---------------------------------------------------------
def test_a_second_terminal_joining_a_room_its_account_is_in_gets_the_room() -> None:
    """A second terminal of alice types /join #ops, which her account is in (its Welcome
    listed it): it was refused ("you are already in room"); it is answered with the room
    as a join would be, and the log gets no second membership."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    first, bob = serving(bus, "alice", "bob")
    assert answer(bus, first, JoinRoom("ops")) == ""
    assert answer(bus, bob, JoinRoom("ops")) == ""
    (second,) = serving(bus, "alice")
    assert "ops" in second.rooms  # the account's room, from its Welcome
    shown = _entered(bus, second, "ops")

    assert answer(bus, second, JoinRoom("ops")) == ""
    assert _entered(bus, second, "ops") == shown + 1  # the room, as a join shows it
    assert second.rooms["ops"].members == ("alice", "bob")
    assert _joins(leader, "ops", "alice") == 1
    bus.submit(bob, SendChat("ops", None, "still one alice", False))
    bus.run_until(lambda: chats(bus, first) == chats(bus, second) == ["still one alice"], 2)


def test_two_terminals_joining_one_room_at_once_both_get_it_once() -> None:
    """Both terminals type /join #new at the same moment: the second's join reaches the
    leader while the first's is still being replicated. Both are answered, one entry."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    first, second = serving(bus, "alice", "alice")
    one = bus.submit(first, JoinRoom("new"))
    two = bus.submit(second, JoinRoom("new"))

    def answered(client: ClientNode, cmid: int) -> bool:
        return any(
            isinstance(e, Sent | OpFailed) and e.cmid == cmid
            for e in bus.events[client.config.addr]
        )

    bus.run_until(lambda: answered(first, one) and answered(second, two), 2)
    failed = [
        e for c in (first, second) for e in bus.events[c.config.addr] if isinstance(e, OpFailed)
    ]
    assert failed == []
    assert _joins(leader, "new", "alice") == 1
    assert "new" in first.rooms and "new" in second.rooms


# -- 4: the account's membership is the truth on resume -------------------------------
def test_a_terminal_away_while_another_left_a_room_does_not_rejoin_it() -> None:
    """Alice's second terminal joined #ops; it misses the frame of her first terminal's
    /leave #ops (a gap), resumes, and its Welcome no longer lists ops: it took that for the servers
    having dropped it and joined ops again, undoing her /leave."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    first, second, bob = serving(bus, "alice", "alice", "bob")
    for client in (second, bob):  # the terminal that is away later typed the /join
        assert answer(bus, client, JoinRoom("ops")) == ""
    bus.run_until(lambda: "ops" in first.rooms, 2)
    away = second.config.addr
    bus.drop = lambda src, dst, m: dst == away and isinstance(m, SessionFrame)
    assert answer(bus, first, LeaveRoom("ops")) == ""
    bus.run(0.1)
    assert "ops" in second.rooms  # it missed the leave
    bus.drop = None

    def resumed() -> bool:
        return second.state is ClientState.SERVING and "ops" not in second.rooms

    bus.run_until(resumed, 5)  # its next heartbeat shows the gap: it resumes
    bus.run(1.0)
    assert "ops" not in second.rooms and "ops" not in first.rooms
    assert "alice" not in leader.state.rooms["ops"].members
    assert _joins(leader, "ops", "alice") == 1  # nobody joined it again
    assert any(
        isinstance(e, RoomExited) and e.room == "ops" for e in bus.events[second.config.addr]
    )


# -- 2: a Welcome shows committed users only -------------------------------------------
def test_a_welcome_lists_no_user_whose_login_is_not_committed() -> None:
    """Carol's login is sequenced but the backups do not hold it yet when alice resumes:
    alice's Welcome listed carol, who might never get in (a leader dying now loses that
    login). She learns of carol from the lobby frame once the login commits."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    here = leader.config.addr
    (alice,) = serving(bus, "alice")
    stalled = [True]
    bus.drop = lambda src, dst, m: stalled[0] and src == here and isinstance(m, Append | Admit)
    carol = bus.add_client("carol")
    bus.run_until(lambda: "carol" in leader.state.users, 2)
    assert leader.leadership is not None and leader.leadership.pending
    welcomes = len(_to(bus, alice, Welcome))
    lists = len(_to(bus, alice, UserList))
    bus._post(here, alice.config.addr, Resync(leader.epoch, "a test asks it to resume"))
    bus.run_until(lambda: len(_to(bus, alice, Welcome)) > welcomes, 2)
    bus.run_until(lambda: alice.state is ClientState.SERVING, 2)
    shown = [u.name for m in _to(bus, alice, UserList)[lists:] for u in m.users]  # type: ignore[attr-defined]
    assert "carol" not in shown
    assert "carol" not in alice.users

    stalled[0] = False
    bus.run_until(lambda: carol.state is ClientState.SERVING and "carol" in alice.users, 3)


# -- 1: a login the fold refuses gets a Rejected, never a Welcome ----------------------


def test_a_login_a_merge_puts_behind_an_earlier_claim_is_rejected_not_welcomed() -> None:
    """Alice's key claims "alice" on a minority leader; on the majority another key asks
    for "alice", and its login is still being replicated when the healed partition's
    merge puts the minority's claim first in log order. The fold refuses that login; it
    was welcomed all the same (a user list without itself, rooms of nobody's), then sent
    a Resync and renamed. It must get a clear refusal, and no Welcome."""
    bus = Bus(seed=2)
    servers = [bus.add_server(i) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    (old,) = leaders(servers)
    majority = [s for s in servers if s is not old]
    bus.split([old.config.addr], [s.config.addr for s in majority])
    bus.run_until(lambda: settled(majority), 3)
    (new,) = leaders(majority)
    # The majority's log grows first, so its claim of "alice" sorts after the minority's.
    grow_the_majority(bus, old)
    first = bus.add_client("alice")
    bus.split([first.config.addr], [s.config.addr for s in majority])
    bus.run_until(lambda: first.state is ClientState.SERVING, 3)

    # The majority's backup stops getting entries: the other key's login stays pending.
    here = new.config.addr
    stalled = [True]
    bus.drop = lambda src, dst, m: stalled[0] and src == here and isinstance(m, Append | Admit)
    other = bus.add_client("alice", identity=key_for("another alice"))
    bus.split([other.config.addr], [old.config.addr])
    bus.run_until(lambda: "alice" in new.state.users, 3)
    assert new.leadership is not None and new.leadership.pending
    bus.cut = {c for c in bus.cut if old.config.addr not in c or first.config.addr in c}
    # The old leader rejoins, and the new one pulls its log: the merge lands.
    bus.run_until(lambda: new.state.claims.get("alice") == key_for("alice"), 3)
    stalled[0] = False
    bus.run_until(lambda: other.state is ClientState.FAILED, 5)
    bus.run(0.5)

    assert _to(bus, other, Welcome) == []
    assert _to(bus, other, UserList) == _to(bus, other, SessionFrame) == []
    assert _to(bus, other, LobbyFrame) == _to(bus, other, RoomFrame) == []
    refusals = [e.reason for e in bus.events[other.config.addr] if isinstance(e, Failed)]
    assert refusals and "alice" in refusals[0] and "another key" in refusals[0]
    assert [m for m in _to(bus, other, Rejected)]
    (final,) = leaders(servers)
    assert other.client_id not in final.state.session_names
    assert [
        e
        for e in final.log.entries()
        if isinstance(e.body, UserOnline) and e.body.client_id == other.client_id
    ], "its login was logged (and refused by the fold)"
