"""ClusterState on its own: users, rooms, groups and servers folded from log entries."""

from __future__ import annotations

import hashlib
import zlib

from tchat.core.fold import MAX_SESSIONS, Clash, ClusterState
from tchat.core.messages import (
    Chat,
    Dot,
    Entry,
    EntryBody,
    NameClaimed,
    NameReleased,
    RoomJoined,
    RoomLeft,
    ServerJoined,
    ServerLeft,
    UserOffline,
    UserOnline,
    UserStatus,
)
from tchat.core.vclock import VectorClock

BASE, COUNT, PORT = "239.255.42.0", 4, 47471


class Log:
    """Numbers entries as one leader would: dot (1, n), ts n."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, body: EntryBody) -> Entry:
        self.n += 1
        return Entry(Dot(1, self.n), VectorClock({1: self.n}), float(self.n), None, body)


def fold(*bodies: EntryBody) -> tuple[ClusterState, list[bool]]:
    state = ClusterState(BASE, COUNT, PORT)
    log = Log()
    return state, [state.apply(log(body)) for body in bodies]


def key(seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest()


def online(name: str, client: str | None = None, identity: bytes | None = None) -> UserOnline:
    """A login; each session its own key unless ``identity`` says whose it is."""
    client = client or f"c-{name}"
    return UserOnline(name, f"10.0.0.1:{len(name)}", client, identity or key(client))


def offline(name: str, client: str | None = None, reason: str = "logout") -> UserOffline:
    return UserOffline(name, client or f"c-{name}", reason, VectorClock({1: 1}))


def chat(room: str | None, text: str = "hi") -> Chat:
    return Chat("alice", room, None if room else "bob", text, False, VectorClock())


def test_servers_join_and_leave() -> None:
    state, applied = fold(
        ServerJoined(1, "10.0.0.1:1"),
        ServerJoined(2, "10.0.0.2:1"),
        ServerLeft(1),
        ServerLeft(7),  # unknown: harmless
    )
    assert all(applied)
    assert state.servers == {2: "10.0.0.2:1"}


def test_users_log_in_go_away_and_log_out() -> None:
    state, applied = fold(online("alice"), online("bob"), UserStatus("bob", True), offline("alice"))
    assert applied == [True, True, True, True]
    assert list(state.users) == ["bob"] and state.users["bob"].away
    assert [(u.name, u.status) for u in state.user_infos()] == [("bob", "away")]
    assert state.accounts == {"alice", "bob"}
    assert "c-alice" in state.closed_sessions  # a logged-out session never comes back
    assert state.offline_cursor["alice"] == VectorClock({1: 1})


def test_user_infos_follow_every_change_in_login_order() -> None:
    state, _ = fold(online("zoe"), online("adam"))
    first = state.user_infos()
    assert [u.name for u in first] == ["zoe", "adam"]
    assert state.user_infos() is first  # cached until a change
    state.apply(Log()(UserStatus("zoe", True)))
    assert [u.status for u in state.user_infos()] == ["away", "online"]


def test_a_second_login_under_a_taken_name_loses_and_is_recorded() -> None:
    """A partition merge can hold two logins of one name: the earlier keeps it, everywhere."""
    state, applied = fold(online("alice", "c1"), online("alice", "c2"), offline("alice", "c2"))
    assert applied == [True, False, False]  # the loser's logout does not log out the winner
    assert state.users["alice"].client_id == "c1"
    assert state.clashes == [Clash("alice", "c2")]


def test_a_relogin_by_the_same_session_is_no_clash() -> None:
    state, applied = fold(online("alice", "c1"), online("alice", "c1"))
    assert applied == [True, False] and not state.clashes  # nothing changed for clients
    assert list(state.users["alice"].sessions) == ["c1"]


def test_a_name_belongs_to_its_first_claim_in_log_order() -> None:
    """Two sides of a partition claimed one name for different keys: the claim first in
    the merged order keeps it everywhere, and the other key's logins clash."""
    state, applied = fold(
        NameClaimed("alice", key("a")),
        NameClaimed("alice", key("b")),
        online("alice", "c2", key("b")),
        online("alice", "c1", key("a")),
    )
    assert applied == [True, False, False, True]
    assert state.claims == {"alice": key("a")}
    assert state.users["alice"].client_id == "c1"
    assert state.clashes == [Clash("alice", "c2")]


def test_a_login_with_another_key_loses_even_while_the_name_is_offline() -> None:
    state, applied = fold(
        online("alice", "c1", key("a")), offline("alice", "c1"), online("alice", "c2", key("b"))
    )
    assert applied == [True, True, False]
    assert "alice" not in state.users and state.clashes == [Clash("alice", "c2")]


def test_sessions_of_one_account_keep_the_user_online_until_the_last_ends() -> None:
    state, applied = fold(
        online("alice", "c1", key("a")),
        online("alice", "c2", key("a")),  # a second terminal: no user-list change
        offline("alice", "c1"),  # the stale one times out: alice stays online
        offline("alice", "c2"),
    )
    assert applied == [True, False, False, True]
    assert "alice" not in state.users and not state.clashes
    assert state.session_names == {}


def test_a_login_past_the_session_limit_replaces_the_oldest() -> None:
    logins = [online("alice", f"c{i}", key("a")) for i in range(MAX_SESSIONS + 1)]
    state, _ = fold(*logins)
    assert list(state.users["alice"].sessions) == [f"c{i}" for i in range(1, MAX_SESSIONS + 1)]
    assert state.replaced == [Clash("alice", "c0")]
    assert "c0" not in state.session_names


def test_a_client_id_online_under_one_name_cannot_log_in_under_another() -> None:
    state, applied = fold(online("alice", "c1", key("a")), online("mallory", "c1", key("m")))
    assert applied == [True, False] and state.clashes == [Clash("mallory", "c1")]


def test_a_released_name_is_claimed_afresh_and_reads_nothing_of_before() -> None:
    state, applied = fold(
        NameClaimed("alice", key("a")),
        online("alice", "c1", key("a")),
        offline("alice", "c1"),
        NameReleased("alice"),
        NameReleased("alice"),  # nothing to release any more
        NameClaimed("alice", key("b")),
        online("alice", "c2", key("b")),
    )
    assert applied == [True, True, True, True, False, True, True]
    assert state.claims == {"alice": key("b")}
    assert "alice" not in state.offline_cursor  # the new owner resumes from nothing
    assert state.first_online["alice"][2] == 4  # catch-up starts at the release


def test_status_and_leaves_of_unknown_users_or_rooms_are_ignored() -> None:
    state, applied = fold(
        UserStatus("ghost", True),
        RoomJoined("r", "ghost"),
        RoomLeft("r", "ghost"),
        offline("ghost"),
    )
    assert applied == [False, False, False, False]
    assert not state.rooms and not state.users


def test_rooms_fold_membership_messages_and_a_logout_keeps_them_all() -> None:
    state, applied = fold(
        online("alice"),
        online("bob"),
        RoomJoined("r", "alice"),
        RoomJoined("r", "bob"),
        RoomJoined("s", "alice"),
        chat("r"),
        chat("r"),
        chat(None),  # private: no room counts it
        RoomLeft("r", "bob"),
        offline("alice"),
    )
    assert all(applied)
    # Rooms are the account's: going offline leaves alice in both (issue 16).
    assert state.members("r") == ["alice"] and state.members("s") == ["alice"]
    assert state.rooms["r"].messages == 2 and state.rooms["r"].last_ts == 7.0
    assert not state.is_member("r", "bob")
    # Who was in the room when: entry 6 (the first chat) was seen by alice and bob.
    numbered = Log()
    keys = [numbered(chat(None)).key for _ in range(10)]  # the keys of entries 1..10
    first_chat, after_bob_left = keys[5], keys[9]
    assert state.rooms["r"].was_member("alice", first_chat)
    assert state.rooms["r"].was_member("bob", first_chat)
    assert not state.rooms["r"].was_member("bob", after_bob_left)
    assert state.rooms["r"].was_member("alice", after_bob_left)  # offline, still a member
    assert state.rooms_of["alice"] == {"r", "s"}


def test_each_room_gets_its_hashed_group_or_the_next_free_one() -> None:
    names = [f"room{i}" for i in range(40)]
    by_slot: dict[int, list[str]] = {}
    for name in names:
        by_slot.setdefault(zlib.crc32(name.encode()) % COUNT, []).append(name)
    a, b = next(v for v in by_slot.values() if len(v) >= 2)[:2]  # two rooms, one hash slot
    state, _ = fold(online("alice"), RoomJoined(a, "alice"), RoomJoined(b, "alice"))
    slot = zlib.crc32(a.encode()) % COUNT
    assert state.rooms[a].group == f"239.255.42.{slot}:{PORT}"
    assert state.rooms[b].group == f"239.255.42.{(slot + 1) % COUNT}:{PORT}"  # the next free


def test_group_collisions_resolve_in_log_order_identically_everywhere() -> None:
    bodies = [online("alice")] + [RoomJoined(f"room{i}", "alice") for i in range(COUNT + 2)]
    one, _ = fold(*bodies)
    two, _ = fold(*bodies)
    groups = [one.rooms[f"room{i}"].group for i in range(COUNT + 2)]
    assert groups == [two.rooms[f"room{i}"].group for i in range(COUNT + 2)]
    assert len(set(groups[:COUNT])) == COUNT  # every group used before any is shared
    assert set(groups[COUNT:]) <= set(groups[:COUNT])  # then rooms share (filtered by name)
    assert one.lobby_group == f"239.255.42.{COUNT}:{PORT}"  # right after the rooms' range
    assert one.lobby_group not in groups


def test_same_entries_same_order_same_snapshot() -> None:
    bodies = [
        ServerJoined(1, "a"),
        online("alice"),
        online("bob"),
        RoomJoined("r", "bob"),
        UserStatus("alice", True),
    ]
    one, _ = fold(*bodies)
    two, _ = fold(*bodies)
    assert one.snapshot() == two.snapshot()
    three, _ = fold(*bodies[:-1])
    assert three.snapshot() != one.snapshot()  # the snapshot sees away
