"""Core nodes wired together with no network (h11's ConnectionPair style), scenario by scenario."""

from __future__ import annotations

from collections import Counter

import pytest
from core_bus import Bus, key_for

from tchat.core.client import SILENCE_RESEND, ClientNode, ClientState
from tchat.core.effects import (
    ChatDelivered,
    Effect,
    Failed,
    Renamed,
    Send,
    Sent,
    UsersChanged,
)
from tchat.core.fold import ClusterState
from tchat.core.inbox import ORIGIN_MEMORY
from tchat.core.messages import (
    LOBBY,
    Ack,
    Append,
    Chat,
    ClientBeat,
    Election,
    Epoch,
    JoinRoom,
    LeaveRoom,
    LobbyBeat,
    LobbyFrame,
    Logout,
    NewLeader,
    OpError,
    Origin,
    Register,
    RoomFrame,
    SendChat,
    SessionFrame,
    Submit,
    UserOnline,
)
from tchat.core.server import ServerNode, ServerRole
from tchat.core.stream import ClientStreams, Session
from tchat.core.vclock import EMPTY_CLOCK


def leaders(servers: list[ServerNode]) -> list[ServerNode]:
    return [s for s in servers if s.role is ServerRole.LEADER]


def settled(servers: list[ServerNode]) -> bool:
    """One leader, every other server an admitted backup of it."""
    found = leaders(servers)
    if len(found) != 1:
        return False
    epoch = found[0].epoch
    return all(
        s.role is ServerRole.BACKUP and s.epoch == epoch for s in servers if s is not found[0]
    )


def chats(bus: Bus, client: ClientNode) -> list[str]:
    return [
        e.entry.body.text  # type: ignore[attr-defined]
        for e in bus.events[client.config.addr]
        if isinstance(e, ChatDelivered)
    ]


def chat_ids(bus: Bus, client: ClientNode) -> list[str]:
    return [e.entry.id for e in bus.events[client.config.addr] if isinstance(e, ChatDelivered)]


def acked(bus: Bus, client: ClientNode) -> set[str]:
    return {e.entry_id for e in bus.events[client.config.addr] if isinstance(e, Sent)}


def cluster(seed: int = 1, ids: tuple[int, ...] = (5, 9, 3)) -> tuple[Bus, list[ServerNode]]:
    bus = Bus(seed=seed)
    servers = [bus.add_server(i) for i in ids]
    bus.run_until(lambda: settled(servers), 5)
    return bus, servers


def serving(bus: Bus, *names: str) -> list[ClientNode]:
    clients = [bus.add_client(name) for name in names]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 5)
    return clients


def test_fresh_servers_elect_the_highest_id_and_admit_the_rest() -> None:
    bus, servers = cluster(ids=(5, 9, 3, 7))
    (leader,) = leaders(servers)
    assert leader.server_id == 9
    assert leader.live_backups == {3, 5, 7}
    assert sorted(leader.state.servers) == [3, 5, 7, 9]


def test_concurrent_initiators_stay_within_the_lcr_bound() -> None:
    bus = Bus(seed=3)
    servers = [bus.add_server(i) for i in (11, 4, 8, 2, 6)]
    bus.run_until(lambda: settled(servers), 5)
    per_term = Counter(m.term for _, _, m in bus.sent if isinstance(m, Election))
    n = len(servers)
    assert per_term, "an election happened"
    assert max(per_term.values()) <= n * (n + 1) // 2 + n
    assert leaders(servers)[0].server_id == 11


def test_registration_pushes_the_user_list_to_everyone() -> None:
    bus, servers = cluster()
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    bus.run_until(lambda: all(len(c.users) == 3 for c in (alice, bob, carol)), 2)
    bus.run(0.2)
    for server in servers:
        assert sorted(server.state.users) == ["alice", "bob", "carol"]


def test_a_login_storm_reaches_every_client_in_a_few_lobby_frames() -> None:
    bus, servers = cluster()
    leader = leaders(servers)[0].config.addr
    first = serving(bus, "a", "b")
    first.append(bus.add_client("uni", multicast=False))  # gets the lobby over its session
    bus.run_until(lambda: first[-1].state is ClientState.SERVING, 5)
    sent_before = len(bus.sent)
    names = [f"u{i:02d}" for i in range(40)]
    clients = first + [bus.add_client(name) for name in names]
    everyone = sorted([*names, "a", "b", "uni"])
    bus.run_until(lambda: all(sorted(c.users) == everyone for c in clients), 5)

    from_leader = [(dst, m) for src, dst, m in bus.sent[sent_before:] if src == leader]
    lobby = {m.gsn: m for _, m in from_leader if isinstance(m, LobbyFrame)}
    logins = [e for m in lobby.values() for e in m.entries if isinstance(e.body, UserOnline)]
    login_names = [e.body.name for e in logins]  # type: ignore[attr-defined]
    assert set(names) <= set(login_names) and len(login_names) == len(set(login_names))
    # Batched: far fewer frames than logins, and no per-client frame for any of them.
    assert len(lobby) <= len(names) // 4, len(lobby)
    assert not [m for _, m in from_leader if isinstance(m, SessionFrame)]
    to_uni = {
        m.gsn
        for dst, m in from_leader
        if dst == first[-1].config.addr and isinstance(m, LobbyFrame)
    }
    assert set(lobby) <= to_uni


def test_a_client_may_opt_out_of_the_lobby_and_still_gets_its_messages_in_order() -> None:
    bus, servers = cluster()
    leader = leaders(servers)[0].config.addr
    alice = serving(bus, "alice")[0]
    bot = bus.add_client("bot", lobby=False)
    bus.run_until(lambda: bot.state is ClientState.SERVING, 5)
    sent_before = len(bus.sent)
    bob = serving(bus, "bob")[0]
    for client in (alice, bob, bot):
        bus.submit(client, JoinRoom("ops"))
    bus.run_until(
        lambda: all(
            "ops" in c.rooms and len(c.rooms["ops"].members) == 3 for c in (alice, bob, bot)
        ),
        3,
    )
    for i in range(5):
        bus.submit(alice, SendChat("ops", None, f"r{i}", False))
        bus.submit(bob, SendChat(None, "bot", f"p{i}", False))
    bus.run_until(lambda: len(chats(bus, bot)) == 10 and "bob" in alice.users, 5)
    assert [t for t in chats(bus, bot) if t[0] == "r"] == [f"r{i}" for i in range(5)]
    assert [t for t in chats(bus, bot) if t[0] == "p"] == [f"p{i}" for i in range(5)]
    assert bot.users == {}  # it follows no user list: none at login, no changes after
    bus.run(0.6)  # a round of the leader's LobbyBeats (every 0.5 s)
    to_bot = [
        m for src, dst, m in bus.sent[sent_before:] if src == leader and dst == bot.config.addr
    ]
    # It hears the lobby group for the leader's beats and drops the group's frames.
    assert bot.config.addr in bus.groups.get(leaders(servers)[0].state.lobby_group, ())
    assert [m for m in to_bot if isinstance(m, LobbyFrame)]
    assert [m for m in to_bot if isinstance(m, LobbyBeat)]
    assert bot.holdback is not None and LOBBY not in bot.holdback.room_end


def test_taken_and_invalid_names_are_refused_with_a_reason() -> None:
    bus, _ = cluster()
    serving(bus, "alice")
    twin = bus.add_client("alice", identity=key_for("a stranger"))
    bad = bus.add_client("bad\u202ename")
    bus.run_until(lambda: twin.state is ClientState.FAILED, 2)
    assert bad.state is ClientState.FAILED
    reasons = [e.reason for e in bus.events[twin.config.addr] if isinstance(e, Failed)]
    assert reasons[0] == "the name 'alice' belongs to another key"


def test_room_and_private_messages_arrive_once_in_one_order() -> None:
    bus, _ = cluster()
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    for client in (alice, bob, carol):
        bus.submit(client, JoinRoom("lobby"))
    bus.run_until(
        lambda: all(
            len(c.rooms.get("lobby", ()) and c.rooms["lobby"].members) == 3
            for c in (alice, bob, carol)
        ),
        2,
    )
    for i in range(10):
        bus.submit(alice, SendChat("lobby", None, f"a{i}", False))
        bus.submit(bob, SendChat("lobby", None, f"b{i}", False))
        bus.submit(carol, SendChat(None, "alice", f"c{i}", False))
    bus.run_until(
        lambda: (
            len(chats(bus, bob)) == 20
            and len(chats(bus, alice)) == 30
            and len(chats(bus, carol)) == 30
        ),  # the room's 20 and its own 10 private
        3,
    )
    room_order = [t for t in chats(bus, alice) if t[0] in "ab"]
    assert room_order == chats(bus, bob)
    assert [t for t in chats(bus, carol) if t[0] in "ab"] == room_order
    assert [t for t in chats(bus, carol) if t[0] == "c"] == [f"c{i}" for i in range(10)]
    assert len(set(chat_ids(bus, alice))) == 30
    assert len(acked(bus, alice)) == 10 + 1  # ten messages and the join


def test_leader_crash_fails_over_without_losing_or_repeating_anything() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("lobby"))
    bus.run(0.1)
    for i in range(5):
        bus.submit(alice, SendChat("lobby", None, f"before {i}", False))
    bus.run(0.05)
    (old,) = leaders(servers)
    bus.crash(old.config.addr)
    crashed_at = bus.now
    for i in range(5):
        bus.submit(alice, SendChat("lobby", None, f"after {i}", False))
    rest = [s for s in servers if s is not old]
    bus.run_until(lambda: len(chats(bus, bob)) == 10 and not alice.pending, 5)
    (new,) = leaders(rest)
    assert new.server_id == 5 and new.epoch > old.epoch
    assert bus.now - crashed_at < 1.0
    assert chats(bus, bob) == [f"before {i}" for i in range(5)] + [f"after {i}" for i in range(5)]
    assert len(chat_ids(bus, bob)) == len(set(chat_ids(bus, bob)))
    assert acked(bus, alice) <= set(chat_ids(bus, bob)) | set(chat_ids(bus, alice)) | {
        e.id for e in new.log.entries()
    }


def replay_at_a_dead_leader(
    bus: Bus, client: ClientNode, captured: LobbyBeat | LobbyFrame, old: ServerNode
) -> tuple[float, int]:
    """Crash ``old`` (its successor's NewLeader kept from ``client``) and hand ``client``
    ``captured`` from ``old``'s address every 30 ms, for at most four client timeouts, until
    it follows another leader: (how long that took, how many replays came while it still
    served ``captured``'s epoch)."""
    leader = old.config.addr
    bus.drop = lambda src, dst, m: dst == client.config.addr and isinstance(m, NewLeader)
    bus.crash(leader)
    crashed_at = bus.now
    timeout = client.config.timing.client_leader_timeout
    replayed = 0
    for _ in range(int(4 * timeout / 0.03)):  # bounded: four timeouts of replays
        bus.run(0.03)
        # (once it serves a newer epoch, the old one's frames are fenced as before)
        replayed += client.state is ClientState.SERVING and client.epoch == captured.epoch
        bus._apply(client.config.addr, client.handle(captured, leader, bus.now))
        if client.leader_id != old.server_id:
            break
    return bus.now - crashed_at, replayed


def test_a_replayed_lobby_beat_does_not_delay_failover() -> None:
    """Issue 15: a LobbyBeat captured while the leader was alive and idle, replayed every
    30 ms after it died (from its own address: UDP sources are forged at will), must not
    pass for a sign of life: the client suspects the leader within its usual timeout. The
    cluster's NewLeader is lost, so only the client's own suspicion can move it."""
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    (old,) = leaders(servers)
    leader = old.config.addr
    bus.run(1.2)  # idle rounds: the leader's beats reach the lobby group
    beats = [m for src, dst, m in bus.sent if src == leader and isinstance(m, LobbyBeat)]
    assert beats and alice.leader_id == old.server_id
    moved_after, replayed = replay_at_a_dead_leader(bus, alice, beats[-1], old)
    timeout = alice.config.timing.client_leader_timeout
    assert alice.leader_id != old.server_id, "the replayed beat kept the dead leader alive"
    # Within its usual timeout of the last genuine beat, plus discovery's round trip.
    assert moved_after < timeout + 0.2, moved_after
    assert replayed and alice.counters.get("replayed-beat") == replayed  # each one counted
    bus.run_until(lambda: alice.state is ClientState.SERVING, 5)


def test_a_replayed_lobby_frame_from_the_leaders_address_does_not_delay_failover() -> None:
    """A lobby frame is signed but, unlike a room frame, not refused when replayed (every
    client takes the lobby; its hold-back drops the duplicate): sent again from the dead
    leader's address (forged, or its port taken once it died) it is no sign of life."""
    bus, servers = cluster()
    (alice, _) = serving(bus, "alice", "bob")  # bob's login: a lobby frame to alice
    (old,) = leaders(servers)
    leader = old.config.addr
    bus.run(1.2)
    frames = [
        m
        for src, dst, m in bus.sent
        if src == leader and dst == alice.config.addr and isinstance(m, LobbyFrame)
    ]
    assert frames and alice.leader_id == old.server_id
    moved_after, _ = replay_at_a_dead_leader(bus, alice, frames[-1], old)
    timeout = alice.config.timing.client_leader_timeout
    assert alice.leader_id != old.server_id, "the replayed frame kept the dead leader alive"
    assert moved_after < timeout + 0.2, moved_after


def test_graceful_stop_hands_over_before_any_timeout() -> None:
    bus, servers = cluster()
    (old,) = leaders(servers)
    bus._apply(old.config.addr, old.stop(bus.now))
    stopped_at = bus.now
    rest = [s for s in servers if s is not old]
    bus.run_until(lambda: settled(rest), 2)
    assert bus.now - stopped_at < old.config.timing.leader_timeout


def test_a_client_that_only_loses_its_own_link_cannot_depose_a_healthy_leader() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    (leader,) = leaders(servers)
    epoch = leader.epoch
    bus.cut.add(frozenset((alice.config.addr, leader.config.addr)))
    bus.run(3.0)
    assert leaders(servers) == [leader] and leader.epoch == epoch
    assert sum(s.counters.get("suspicion-refused", 0) for s in servers) >= 1


def test_logout_and_client_crash_remove_the_user_everywhere() -> None:
    bus, servers = cluster()
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    bus.submit(alice, Logout())
    bus.crash(bob.config.addr)
    bus.run_until(lambda: sorted(carol.users) == ["carol"], 6)
    assert alice.state is ClientState.CLOSED
    for server in servers:
        assert sorted(server.state.users) == ["carol"]
    lists = [e.users for e in bus.events[carol.config.addr] if isinstance(e, UsersChanged)]
    assert [u.name for u in lists[-1]] == ["carol"]


def test_private_messages_wait_for_an_offline_addressee() -> None:
    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(bob, Logout())
    bus.run_until(lambda: "bob" not in alice.users, 2)
    bus.submit(alice, SendChat(None, "bob", "while you were out", False))
    bus.run(0.2)
    (bob2,) = serving(bus, "bob")
    bus.run_until(lambda: chats(bus, bob2) == ["while you were out"], 2)


def test_restarted_server_rejoins_as_backup_and_catches_up() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    backup = next(s for s in servers if s.role is ServerRole.BACKUP)
    bus.crash(backup.config.addr)
    bus.submit(alice, JoinRoom("lobby"))
    for i in range(20):
        bus.submit(alice, SendChat(None, "bob", f"m{i}", False))
    bus.run_until(lambda: len(chats(bus, bob)) == 20, 3)
    restarted = bus.add_server(backup.server_id)
    (leader,) = leaders(servers)
    bus.run_until(
        lambda: restarted.role is ServerRole.BACKUP and restarted.log.clock == leader.log.clock, 3
    )
    assert len(restarted.log) == len(leader.log)


@pytest.mark.parametrize("seed", [1, 2])
def test_partition_with_a_name_clash_heals_into_one_history(seed: int) -> None:
    bus, servers = cluster(seed=seed)
    (leader,) = leaders(servers)
    minority = [leader]
    majority = [s for s in servers if s is not leader]
    # Split the servers; clients each stay on one side.
    for a in minority:
        for b in majority:
            bus.cut.add(frozenset((a.config.addr, b.config.addr)))
    bus.run_until(lambda: settled(majority), 3)
    left = bus.add_client("alice")
    right = bus.add_client("alice", identity=key_for("another alice"))  # another person
    for server in majority:
        bus.cut.add(frozenset((left.config.addr, server.config.addr)))
    for server in minority:
        bus.cut.add(frozenset((right.config.addr, server.config.addr)))
    bus.run_until(lambda: left.state is right.state is ClientState.SERVING, 3)
    bus.submit(left, JoinRoom("lobby"))
    bus.submit(right, JoinRoom("lobby"))
    bus.run(0.1)
    bus.submit(left, SendChat("lobby", None, "from the left", False))
    bus.submit(right, SendChat("lobby", None, "from the right", False))
    bus.run_until(lambda: not left.pending and not right.pending, 3)
    both_acked = acked(bus, left) | acked(bus, right)
    bus.cut.clear()
    bus.run_until(lambda: settled(servers), 5)
    bus.run_until(
        lambda: (
            all(c.state is ClientState.SERVING for c in (left, right))
            and {left.name, right.name} == {"alice", "alice_2"}
        ),
        5,
    )
    bus.run(1.0)
    (final,) = leaders(servers)
    logs = {tuple(e.id for e in s.log.entries()) for s in servers}
    assert len(logs) == 1
    assert both_acked <= {e.id for e in final.log.entries()}
    renamed = [
        e for c in (left, right) for e in bus.events[c.config.addr] if isinstance(e, Renamed)
    ]
    assert len(renamed) == 1
    assert sorted(final.state.users) == ["alice", "alice_2"]
    winner, loser = (left, right) if left.name == "alice" else (right, left)
    assert sorted(chats(bus, winner)) == ["from the left", "from the right"]
    bus.run_until(lambda: "lobby" in loser.rooms, 2)  # rejoined under its new name
    assert sorted(final.state.members("lobby")) == ["alice", "alice_2"]


def test_a_returning_stale_leader_rejoins_as_backup() -> None:
    bus, servers = cluster()
    (old,) = leaders(servers)
    rest = [s for s in servers if s is not old]
    for s in rest:
        bus.cut.add(frozenset((old.config.addr, s.config.addr)))
    bus.run_until(lambda: settled(rest), 3)
    assert old.role is ServerRole.LEADER
    bus.cut.clear()
    bus.run_until(lambda: settled(servers), 5)
    assert leaders(servers)[0] is not old or old.epoch > rest[0].epoch


def test_leave_room_stops_delivery() -> None:
    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, JoinRoom("r"))
    bus.submit(bob, JoinRoom("r"))
    bus.run(0.1)
    bus.submit(bob, LeaveRoom("r"))
    bus.run(0.1)
    bus.submit(alice, SendChat("r", None, "anyone?", False))
    bus.run(0.3)
    assert chats(bus, alice) == ["anyone?"] and chats(bus, bob) == []
    assert "r" not in bob.rooms


def test_step_down_hands_over_and_stays_as_a_backup() -> None:
    bus, servers = cluster()
    (old,) = leaders(servers)
    epoch = old.epoch
    bus._apply(old.config.addr, old.step_down(bus.now))
    handed_at = bus.now
    bus.run_until(lambda: settled(servers) and leaders(servers)[0] is not old, 3)
    assert bus.now - handed_at < old.config.timing.leader_timeout
    assert old.role is ServerRole.BACKUP and old.epoch > epoch


def test_room_directory_lists_every_room_to_anyone() -> None:
    from tchat.core.effects import RoomDirectory

    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, JoinRoom("lobby"))
    bus.submit(alice, JoinRoom("dev"))
    bus.run(0.1)
    bus.submit(alice, SendChat("dev", None, "hello", False))
    bus.run(0.1)
    request_id, effects = bob.request_rooms(bus.now)
    bus._apply(bob.config.addr, effects)
    bus.run(0.1)
    (directory,) = [e for e in bus.events[bob.config.addr] if isinstance(e, RoomDirectory)]
    assert directory.request_id == request_id
    rooms = {r.room: r for r in directory.rooms}
    assert sorted(rooms) == ["dev", "lobby"]
    assert rooms["dev"].members == ("alice",) and rooms["dev"].messages == 1
    assert rooms["dev"].last_ts > 0 and rooms["lobby"].messages == 0


def test_the_chat_index_of_the_log_matches_a_full_walk() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("ops"))
    for i in range(6):
        bus.submit(alice, SendChat("ops", None, f"r{i}", False))
        bus.submit(bob, SendChat(None, "alice", f"p{i}", False))
    bus.run_until(lambda: len(chats(bus, alice)) == 12, 5)
    log = leaders(servers)[0].log
    entries = log.entries()
    for cut in range(0, len(entries) + 1, 3):  # clocks of every third prefix, and empty
        clock = entries[cut - 1].clock if cut else EMPTY_CLOCK
        walk = [e for e in log.missing_for(clock) if isinstance(e.body, Chat)]
        assert list(log.chats_missing_for(clock)) == walk
        assert len(walk) <= 12


def test_an_operation_recorded_on_both_sides_of_a_partition_is_delivered_once() -> None:
    """The sender's message reaches the old leader, which records it but cannot answer;
    the sender resends it to the majority's new leader, which records it again. A member
    that delivered the majority's copy must not deliver the old leader's after the heal,
    whichever copy the merged log keeps."""
    bus, servers = cluster()
    (old,) = leaders(servers)
    sender, reader = serving(bus, "sender", "reader")
    for client in (sender, reader):
        bus.submit(client, JoinRoom("room"))
    bus.run_until(lambda: not sender.pending and not reader.pending, 2)
    rest = [s for s in servers if s is not old]
    for server in rest:
        bus.cut.add(frozenset((old.config.addr, server.config.addr)))
    bus.cut.add(frozenset((old.config.addr, reader.config.addr)))
    cmid = bus.submit(sender, SendChat("room", None, "twice recorded", False))
    origin = Origin(sender.client_id, cmid)
    bus.run_until(lambda: old.log.by_origin(origin) is not None, 1)
    # The majority records something first, so the old leader's copy comes first in the
    # merged log: the reader delivers the copy the log will not keep.
    sender_links = {frozenset((sender.config.addr, s.config.addr)) for s in servers}
    bus.cut |= sender_links
    bus.submit(reader, SendChat("room", None, "majority first", False))
    bus.run_until(lambda: settled(rest) and not reader.pending, 5)
    bus.cut -= sender_links - {frozenset((sender.config.addr, old.config.addr))}
    bus.run_until(lambda: not sender.pending and "twice recorded" in chats(bus, reader), 5)
    (new,) = leaders(rest)
    assert sender.leader_id == new.server_id
    first, second = old.log.by_origin(origin), new.log.by_origin(origin)
    assert first is not None and second is not None and first.key < second.key
    bus.cut.clear()
    bus.run_until(lambda: settled(servers) and old.role is ServerRole.BACKUP, 5)
    (final,) = leaders(servers)
    bus.run_until(
        lambda: all(
            c.state is ClientState.SERVING and c.epoch == final.epoch for c in (sender, reader)
        ),
        5,
    )
    bus.run(1.0)
    assert final.log.by_origin(origin) == first
    assert chats(bus, reader).count("twice recorded") == 1
    assert chats(bus, sender).count("twice recorded") == 1


def test_what_a_client_remembers_of_its_deliveries_stays_bounded() -> None:
    """The clock records what was delivered; origins (for second copies of an operation)
    are kept for ORIGIN_MEMORY to 2 x ORIGIN_MEMORY seconds, then forgotten."""
    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("room"))
    bus.run_until(lambda: not alice.pending and not bob.pending, 2)
    sent = 0
    for _ in range(int(3 * ORIGIN_MEMORY / 10)):
        bus.submit(alice, SendChat("room", None, f"m{sent}", False))
        sent += 1
        bus.run(10.0)
    assert chats(bus, bob) == [f"m{i}" for i in range(sent)]
    remembered = bob.inbox.recent_origins | bob.inbox.older_origins
    assert 0 < len(remembered) <= 2 * ORIGIN_MEMORY / 10 + 1 < sent
    assert Origin(alice.client_tag, sent + 1) in remembered  # the last one (cmid 1 was the join)


def test_room_frames_go_over_a_new_members_session_only_until_it_beats() -> None:
    """A new member of a multicast room may not be in the group yet, so the leader also
    sends it the room's frames by session; its first beat after joining ends that. One
    member whose beats are lost keeps the session copies (for at most a second)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    clients = serving(bus, *(f"user{i}" for i in range(20)))
    mute = clients[0]
    bus.drop = lambda src, dst, msg: src == mute.config.addr and isinstance(msg, ClientBeat)
    for client in clients:
        bus.submit(client, JoinRoom("room"))
    bus.run_until(lambda: all("room" in c.rooms and not c.pending for c in clients), 2)
    copies: list[str] = []
    apply = bus._apply

    def spy(src: str, effects: list[Effect]) -> None:
        if src == leader.config.addr:
            copies.extend(
                e.addr for e in effects if isinstance(e, Send) and isinstance(e.message, RoomFrame)
            )
        apply(src, effects)

    bus._apply = spy  # type: ignore[method-assign]
    bus.run(0.05)  # the joiners' beats arrive
    bus.submit(clients[1], SendChat("room", None, "hello", False))
    bus.run_until(lambda: all("hello" in chats(bus, c) for c in clients), 1)
    assert copies == [mute.config.addr]


def test_a_logged_out_client_ignores_the_rest_of_the_frame_that_closed_it() -> None:
    """Found by `tchat sim --ops 30`: one lobby frame carried alice's logout, then another
    login as alice and its logout; the closed client took the last for a second session's
    logout of its name and tried to resume (an illegal transition, a node exception)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, _ = serving(bus, "alice", "bob")  # bob: someone to multicast the lobby to
    bus.run(0.2)  # their logins went out: the next lobby frame starts a new batch
    # Alice learns of her logout from the lobby frame, not from the Ack (lost).
    bus.drop = lambda src, dst, msg: dst == alice.config.addr and isinstance(msg, Ack)
    bus.submit(alice, Logout())
    bus.run_until(lambda: "alice" not in leader.state.users, 1)
    again = bus.add_client("alice")
    bus.run_until(lambda: again.state is ClientState.SERVING, 1)
    bus.submit(again, Logout())
    bus.run_until(lambda: again.state is ClientState.CLOSED, 1)
    bus.run(0.2)  # the lobby frame holding all three goes out (LOBBY_DELAY)
    assert alice.state is ClientState.CLOSED
    frames = [m for _, dst, m in bus.sent if dst == alice.config.addr and isinstance(m, LobbyFrame)]
    assert any(len(f.entries) >= 3 for f in frames)  # the three changes shared one frame


def test_a_backup_that_lost_appends_catches_up_with_a_busy_leader() -> None:
    """A backup takes batches in order only: after losing some, it drops every later one
    until the leader's retransmit timer fills the gap. That timer must outpace the load
    (it resent 4 batches a tick, 40 a second, and fell ever further behind)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    backup = next(s for s in servers if s is not leader)
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("room"))
    bus.run_until(lambda: not alice.pending and not bob.pending, 2)
    lost: list[int] = []

    def lose(src: str, dst: str, msg: object) -> bool:
        if dst == backup.config.addr and isinstance(msg, Append) and len(lost) < 20:
            lost.append(msg.seq)
            return True
        return False

    bus.drop = lose
    for i in range(300):  # 300 messages a second, one batch each, for a second
        bus.submit(alice if i % 2 else bob, SendChat("room", None, f"m{i}", False))
        bus.run(1 / 300)
    bus.drop = None
    assert len(lost) == 20
    bus.run_until(lambda: len(backup.log) == len(leader.log) and len(chats(bus, bob)) == 300, 1.0)


def test_a_late_first_register_under_a_lost_name_is_ignored() -> None:
    """Found with `tchat sim --ops 30 --chaos`: a delayed copy of a client's first Register
    (no cursor, its name before a clash renamed it) reached the leader after the rename.
    Taken as a login, it gave the session a second name, and the two flip-flopped."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    (alice,) = serving(bus, "alice")
    late = Register(
        "zed", alice.client_id, alice.config.addr, None, True, True, 0, alice.config.identity
    )
    bus._apply(leader.config.addr, leader.handle(late, alice.config.addr, bus.now))
    bus.run(0.5)
    assert sorted(leader.state.users) == ["alice"]
    assert leader.counters.get("stale-register") == 1
    assert alice.state is ClientState.SERVING and alice.name == "alice"


def test_a_room_message_is_acknowledged_by_its_own_frame() -> None:
    """The leader streams only what every live backup stores, so a sender that sees its
    own room message come back has its acknowledgement: the leader sends no Ack for it.
    A private message (not in a room frame) still gets one, and so does a resend (after a
    failover); a sender that lost the frame is acknowledged once it repairs the gap."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("room"))
    bus.run_until(lambda: all("room" in c.rooms and not c.pending for c in (alice, bob)), 2)
    room_cmids = [bus.submit(alice, SendChat("room", None, f"m{i}", False)) for i in range(5)]
    pm_cmid = bus.submit(alice, SendChat(None, "bob", "psst", False))
    bus.run_until(lambda: not alice.pending and len(chats(bus, bob)) == 6, 2)

    acks = [m.cmid for src, dst, m in bus.sent if dst == alice.config.addr and isinstance(m, Ack)]
    assert not set(room_cmids) & set(acks)
    assert pm_cmid in acks
    events = bus.events[alice.config.addr]
    sent = {e.cmid: e.entry_id for e in events if isinstance(e, Sent)}
    own = {
        e.entry.origin.cmid: e.entry.id
        for e in events
        if isinstance(e, ChatDelivered) and e.entry.origin.client_id == alice.client_tag
    }
    assert {c: sent[c] for c in room_cmids} == {c: own[c] for c in room_cmids}
    for cmid in room_cmids:  # acknowledged as it is shown, never after
        shown = next(
            i
            for i, e in enumerate(events)
            if isinstance(e, ChatDelivered) and e.entry.id == own[cmid]
        )
        assert isinstance(events[shown - 1], Sent) and events[shown - 1].cmid == cmid

    # A resend of a recorded operation (after a failover) is answered by an Ack.
    first = next(m for src, dst, m in bus.sent if isinstance(m, Submit) and m.cmid == room_cmids[0])
    bus._post(alice.config.addr, leader.config.addr, first)
    bus.run(0.05)
    acks = [m.cmid for src, dst, m in bus.sent if dst == alice.config.addr and isinstance(m, Ack)]
    assert acks.count(room_cmids[0]) == 1
    assert [e.cmid for e in bus.events[alice.config.addr] if isinstance(e, Sent)].count(
        room_cmids[0]
    ) == 1  # the client had it already

    # Alice loses the frame carrying her next message: she repairs the gap, shows it once
    # and is acknowledged once (by the repair, or by the Ack of her silence resend when
    # that comes first: both are due about 1 s after the loss, the gap's heartbeat
    # landing anywhere in the interval).
    bus.drop = lambda src, dst, msg: dst == alice.config.addr and isinstance(msg, RoomFrame)
    lost = bus.submit(alice, SendChat("room", None, "lost frame", False))
    bus.run_until(lambda: "lost frame" in chats(bus, bob), 1)
    assert lost in alice.pending
    bus.run_until(lambda: not alice.pending and "lost frame" in chats(bus, alice), 3)
    assert chats(bus, alice).count("lost frame") == 1
    assert [e.cmid for e in bus.events[alice.config.addr] if isinstance(e, Sent)].count(lost) == 1


def test_a_name_two_sessions_held_stays_served_when_the_other_goes() -> None:
    """Found by `tchat sim --ops 30 --chaos` (seed 1484188767): after a partition merge
    the leader kept a placeholder session for the log's earlier holder of a name while the
    later login served under it. The placeholder took the name over, its logout unmapped
    it, and private and room frames stopped reaching the session still online."""
    streams = ClientStreams(Epoch(1, 5), ClusterState("239.255.0.0", 16, 4747))
    online = Session("gus", "c17", "10.0.0.1:5000", True, 0.0)
    streams.attach(online)
    online.active = True
    streams.attach(Session("gus", "c16", "10.0.0.2:5000", True, 0.0))  # not welcomed
    assert streams.live_sessions("gus") == [online]
    streams.detach("c16")
    assert streams.live_sessions("gus") == [online]
    streams.detach("c17")
    assert streams.live_sessions("gus") == []


def test_a_refused_client_logged_in_by_a_late_register_logs_out_at_once() -> None:
    """Found by `tchat sim --ops 30 --chaos` (seed 1365714833): a copy of the Register a
    client gave up on (its name was taken) arrived once the name was free and logged it
    in; the client, failed, ignored the Welcome and stayed a ghost until its timeout.
    With accounts the freed name is still alice's: the late Register logs nobody in."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    (alice,) = serving(bus, "alice")
    stranger = bus.add_client("alice", identity=key_for("a stranger"))
    bus.run_until(lambda: stranger.state is ClientState.FAILED, 2)
    bus.submit(alice, Logout())
    bus.run_until(lambda: "alice" not in leader.state.users, 2)
    late = next(
        m for src, _, m in bus.sent if src == stranger.config.addr and isinstance(m, Register)
    )
    bus._post(stranger.config.addr, leader.config.addr, late)
    bus.run(0.5)
    assert "alice" not in leader.state.users
    assert stranger.state is ClientState.FAILED


def test_every_login_of_a_storm_is_welcomed_once_without_a_stall() -> None:
    """A client welcomed while user-list changes wait for their lobby frame chains on the
    last lobby frame sent, so that frame (which more changes may join) is its next one.
    Its lobby chain started after the held changes before: every login of a storm then
    stalled on a lobby gap for the gap timeout and registered a second time."""
    bus, _ = cluster()
    clients = [bus.add_client(f"u{i}") for i in range(60)]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 5)
    bus.run_until(lambda: all(len(c.users) == 60 for c in clients), 1)
    bus.run(1.0)  # two gap timeouts: a stalled client would have registered again
    registers = Counter(src for src, _, m in bus.sent if isinstance(m, Register))
    assert set(registers.values()) == {1}
    assert all(c.holdback is not None and c.holdback.stalled_since is None for c in clients)


def test_a_client_resends_only_after_a_second_without_answers() -> None:
    """What is pending behind answered operations is queued, not lost: a sender resends
    only once the leader has answered nothing for SILENCE_RESEND. (It resent everything
    in flight every second while anything was pending: a busy sender's leader got a second
    copy of it all.) An operation lost on the way is resent once the answers stop."""
    bus, _servers = cluster()
    (alice,) = serving(bus, "alice")
    bus.submit(alice, JoinRoom("room"))
    bus.run_until(lambda: "room" in alice.rooms and not alice.pending, 2)
    lost: list[int] = []

    def lose_the_first_message(src: str, dst: str, message: object) -> bool:
        if isinstance(message, Submit) and isinstance(message.op, SendChat) and not lost:
            lost.append(message.cmid)
            return True
        return False

    bus.drop = lose_the_first_message
    cmids = []
    for i in range(15):  # one message every 0.2 s for 3 s: answers keep coming
        cmids.append(bus.submit(alice, SendChat("room", None, f"m{i}", False)))
        bus.run(0.2)
    submits = Counter(
        m.cmid for src, _dst, m in bus.sent if src == alice.config.addr and isinstance(m, Submit)
    )
    assert lost == [cmids[0]]
    assert set(alice.pending) == {cmids[0]}
    assert submits[cmids[0]] == 0, "no resend while the leader was answering"
    assert all(submits[cmid] == 1 for cmid in cmids[1:]), "nothing answered was sent twice"

    answers_stopped = bus.now - 0.2
    bus.run_until(lambda: not alice.pending, 2)
    assert bus.now >= answers_stopped + SILENCE_RESEND
    assert chats(bus, alice)[-1] == "m0"  # shown late, once
    assert chats(bus, alice).count("m0") == 1


def test_joining_a_busy_room_is_immediate() -> None:
    """A joiner got none of the room's frames before it joined: its RoomJoined frame must
    not wait for them (it did, until the gap timeout, and then the client resumed)."""
    bus, _servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, JoinRoom("room"))
    bus.run_until(lambda: "room" in alice.rooms and not alice.pending, 2)
    for i in range(3):
        bus.submit(alice, SendChat("room", None, f"m{i}", False))
    bus.run_until(lambda: not alice.pending, 2)
    registers_before = sum(
        1 for src, _dst, m in bus.sent if src == bob.config.addr and isinstance(m, Register)
    )
    asked = bus.now
    bus.submit(bob, JoinRoom("room"))
    bus.run_until(lambda: "room" in bob.rooms, 2)
    assert bus.now - asked < 0.1
    bus.submit(alice, SendChat("room", None, "after", False))
    bus.run_until(lambda: chats(bus, bob) == ["after"], 2)
    registers = sum(
        1 for src, _dst, m in bus.sent if src == bob.config.addr and isinstance(m, Register)
    )
    assert registers == registers_before, "no resume"


def test_a_copy_of_a_refused_operation_gets_the_same_answer() -> None:
    """A refused operation stays refused: a copy arriving once the state would allow it
    (a duplicated frame, a resend whose OpError was lost) must not be carried out."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    (alice,) = serving(bus, "alice")
    bus.submit(alice, JoinRoom("room"))
    bus.run_until(lambda: "room" in alice.rooms and not alice.pending, 2)
    bus.submit(alice, LeaveRoom("room"))
    bus.run_until(lambda: "room" not in alice.rooms and not alice.pending, 2)
    refused_cmid = bus.submit(alice, LeaveRoom("room"))  # not in it
    bus.run_until(lambda: not alice.pending, 2)
    refused = next(
        m for src, _dst, m in bus.sent if isinstance(m, Submit) and m.cmid == refused_cmid
    )
    bus.submit(alice, JoinRoom("room"))
    bus.run_until(lambda: "room" in alice.rooms and not alice.pending, 2)

    bus._post(alice.config.addr, leader.config.addr, refused)  # the late copy
    bus.run(0.2)
    errors = [
        m.cmid for _src, dst, m in bus.sent if dst == alice.config.addr and isinstance(m, OpError)
    ]
    assert errors.count(refused_cmid) == 2
    assert "room" in alice.rooms
    assert leader.state.is_member("room", "alice")
