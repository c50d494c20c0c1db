"""Room topics: replicated by the log, judged by the leader, seen by members and the directory."""

from __future__ import annotations

import pytest

from tchat.core import codec
from tchat.core.client import ClientNode
from tchat.core.effects import OpFailed, RoomDirectory, Sent, TopicChanged
from tchat.core.errors import InvalidField
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    MAX_TOPIC,
    CreateRoom,
    Dot,
    Entry,
    Epoch,
    InviteUser,
    JoinRoom,
    LeaveRoom,
    RoomJoined,
    RoomTopic,
    SetTopic,
    Submit,
    UserOnline,
)
from tchat.core.topics import topic_problem
from tchat.core.vclock import VectorClock
from tests.core_bus import Bus
from tests.test_core_nodes import cluster, serving


def topics(bus: Bus, client: ClientNode) -> list[tuple[str, str, str]]:
    return [
        (e.room, e.topic, e.by)
        for e in bus.events[client.config.addr]
        if isinstance(e, TopicChanged)
    ]


def failures(bus: Bus, client: ClientNode) -> list[str]:
    return [e.reason for e in bus.events[client.config.addr] if isinstance(e, OpFailed)]


def test_a_member_sets_the_topic_and_every_member_sees_it_once() -> None:
    bus, servers = cluster()
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("dev"))
    bus.run(0.2)
    cmid = bus.submit(bob, SetTopic("dev", "release on Friday"))
    bus.run(0.3)
    assert topics(bus, alice) == [("dev", "release on Friday", "bob")]
    assert topics(bus, bob) == [("dev", "release on Friday", "bob")]
    assert topics(bus, carol) == []  # not a member: nothing of the room reaches it
    assert alice.rooms["dev"].topic == bob.rooms["dev"].topic == "release on Friday"
    assert any(isinstance(e, Sent) and e.cmid == cmid for e in bus.events[bob.config.addr])
    # Every replica's fold agrees.
    assert {s.state.topic("dev") for s in servers} == {"release on Friday"}
    # A later member learns it from its join (the RoomInfo), with no line of its own.
    bus.submit(carol, JoinRoom("dev"))
    bus.run(0.3)
    assert carol.rooms["dev"].topic == "release on Friday"
    # Cleared: "" everywhere.
    bus.submit(alice, SetTopic("dev", ""))
    bus.run(0.3)
    assert topics(bus, carol) == [("dev", "", "alice")]
    assert {s.state.topic("dev") for s in servers} == {""}


def test_a_non_member_and_a_hostile_topic_are_refused_with_a_reason() -> None:
    bus, servers = cluster()
    alice, mallory = serving(bus, "alice", "mallory")
    bus.submit(alice, JoinRoom("dev"))
    bus.run(0.2)
    bus.submit(mallory, SetTopic("dev", "pwned"))
    bus.submit(alice, SetTopic("dev", "evil\u202etxt.exe"))
    bus.submit(alice, SetTopic("dev", "two\nlines"))
    bus.submit(alice, SetTopic("nowhere", "x"))
    bus.run(0.3)
    assert any("not in room 'dev'" in r for r in failures(bus, mallory))
    reasons = failures(bus, alice)
    assert any("bidi" in r for r in reasons)
    assert any("control character" in r for r in reasons)
    assert any("not in room 'nowhere'" in r for r in reasons)
    assert topics(bus, alice) == []
    assert {s.state.topic("dev") for s in servers} == {""}


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("x" * (MAX_TOPIC + 1), "longer"),
        ("   ", "blank"),
        ("a\tb", "control"),
        ("a\u2066b", "bidi"),
        ("a\u200bb", "invisible"),
        ("x\u0301\u0301\u0301", "combining"),
        ("line\u2028sep", "line separator"),
        ("cafe\u0301", "NFC"),  # not normalised: the client sends the NFC form
    ],
)
def test_topic_rules_refuse_what_would_garble_a_header(topic: str, why: str) -> None:
    problem = topic_problem(topic)
    assert problem is not None and why in problem


def test_topic_rules_take_ordinary_text_emoji_and_the_limit() -> None:
    for topic in ("", "release on Friday", "café ☕", "👩\u200d💻 pair day", "é" * MAX_TOPIC):
        assert topic_problem(topic) is None, topic


def test_the_codec_refuses_a_topic_past_the_limit() -> None:
    ok = Submit("c1", 1, SetTopic("dev", "x" * MAX_TOPIC), VectorClock({}), 0.0)
    assert codec.decode(codec.encode(ok)) == ok
    long = Submit("c1", 1, SetTopic("dev", "x" * (MAX_TOPIC + 1)), VectorClock({}), 0.0)
    with pytest.raises(InvalidField):
        codec.decode(codec.encode(long))


def _entry(counter: int, body: object) -> Entry:
    return Entry(Dot(1, counter), VectorClock({1: counter}), float(counter), None, body)  # type: ignore[arg-type]


def test_the_fold_keeps_the_last_topic_by_a_member_in_log_order() -> None:
    state = ClusterState("239.255.0.0", 16, 47471)
    for i, body in enumerate(
        [
            UserOnline("alice", "a:1", "ca"),
            UserOnline("bob", "b:1", "cb"),
            RoomJoined("dev", "alice"),
            RoomTopic("dev", "first", "alice"),
            RoomTopic("dev", "by an outsider", "bob"),  # bob is no member here: ignored
            RoomTopic("ghost", "no such room", "alice"),
        ],
        start=1,
    ):
        state.apply(_entry(i, body))
    assert state.topic("dev") == "first" and state.rooms["dev"].topic_by == "alice"
    assert "ghost" not in state.rooms
    before = state.snapshot()
    state.apply(_entry(7, RoomTopic("dev", "second", "alice")))
    assert state.snapshot() != before  # the snapshot (convergence checks) sees topics


def test_the_directory_carries_topics() -> None:
    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, JoinRoom("dev"))
    bus.run(0.2)
    bus.submit(alice, SetTopic("dev", "build is green"))
    bus.submit(alice, LeaveRoom("dev"))  # a room nobody is in keeps its topic
    bus.run(0.3)
    _, effects = bob.request_rooms(bus.now)
    bus._apply(bob.config.addr, effects)
    bus.run(0.2)
    (directory,) = [e for e in bus.events[bob.config.addr] if isinstance(e, RoomDirectory)]
    assert [(r.room, r.topic, r.member_count) for r in directory.rooms] == [
        ("dev", "build is green", 0)
    ]


def test_a_room_topic_entry_of_the_largest_kind_fits_its_frames() -> None:
    """Every field at its limit in 4-byte characters stays far below the largest Chat
    (19,643 bytes, PROTOCOL.md §1): the topic adds no new largest entry."""
    from tchat.core.messages import MAX_NAME, MAX_ROOM, MAX_SERVERS, Origin, RoomFrame

    wide = VectorClock({2**53 - 1 - i: 2**53 - 1 for i in range(MAX_SERVERS)})
    entry = Entry(
        Dot(2**53 - 1, 2**53 - 1),
        wide,
        1e9,
        Origin("🙂" * 256, 2**53 - 1),
        RoomTopic("🙂" * MAX_ROOM, "🙂" * MAX_TOPIC, "🙂" * MAX_NAME),
    )
    size = codec.entry_size(entry)
    assert size == 3_686  # PROTOCOL.md §1's sum for RoomTopic
    frame = RoomFrame(Epoch(1, 1), 1, 0, "🙂" * MAX_ROOM, 0, (), (), (entry,))
    assert len(codec.encode(frame)) < codec.MAX_FRAME


def test_topic_changes_have_their_own_rate_bucket() -> None:
    """A topic is a line for every member: paced tighter than chat, by session and host."""
    from tchat.runtime.limits import OPERATION_RATES, OperationLimits, Rate, operation_kind

    submit = Submit("c1", 1, SetTopic("dev", "x"), VectorClock(), 0.0)
    assert operation_kind(submit) == "topic"
    per_session, _per_host = OPERATION_RATES["topic"]
    limits = OperationLimits(Rate(50.0, 200.0), lambda: 0.0)
    session = limits.session_buckets()
    taken = [limits.wait_for(session, "10.0.0.9", "topic", 0.0) for _ in range(10)]
    assert taken.count(None) == int(per_session.burst)  # then it waits
    assert taken[-1] is not None and taken[-1] > 0.0


def test_directory_answers_being_gathered_stay_bounded() -> None:
    """Asked while no leader answers, or answered with endless chunks: bounded either way."""
    from tchat.core import client as client_module
    from tchat.core.messages import RoomsReply, RoomSummary

    bus, _ = cluster()
    (alice,) = serving(bus, "alice")
    for _ in range(50):
        alice.request_rooms(bus.now)
    assert len(alice._directory) == client_module.DIRECTORY_REQUESTS
    request_id = max(alice._directory)
    room = RoomSummary("dev", "239.255.42.1:47471", 1, ("bob",), 0, 0.0, "t")
    chunk = RoomsReply(alice.epoch, request_id, (room,) * 1000, False)
    for _ in range(client_module.DIRECTORY_ROOMS // 1000 + 5):
        alice.handle(chunk, alice.leader_addr, bus.now)
    assert len(alice._directory[request_id]) == client_module.DIRECTORY_ROOMS


def test_a_member_that_missed_the_change_learns_it_when_it_resumes() -> None:
    from tchat.core.messages import RoomFrame

    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("dev"))
    bus.run(0.3)

    def lose_topic_frames(_src: str, dst: str, message: object) -> bool:
        return (
            dst == bob.config.addr
            and isinstance(message, RoomFrame)
            and any(isinstance(e.body, RoomTopic) for e in message.entries)
        )

    bus.drop = lose_topic_frames
    bus.submit(alice, SetTopic("dev", "missed it"))
    bus.run_until(lambda: bob.rooms["dev"].topic == "missed it", 10)
    bus.drop = None
    # Bob repaired the hole by resuming: his Welcome said the topic, and he was told.
    assert ("dev", "missed it", "") in topics(bus, bob)
    assert topics(bus, alice) == [("dev", "missed it", "alice")]


def test_a_late_copy_of_an_older_topic_changes_nothing() -> None:
    from tchat.core.messages import RoomFrame

    bus, _ = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("dev"))
    bus.run(0.3)
    first: list[RoomFrame] = []

    def keep(_src: str, dst: str, message: object) -> bool:
        if dst == bob.config.addr and isinstance(message, RoomFrame) and not first:
            first.append(message)
        return False

    bus.drop = keep
    bus.submit(alice, SetTopic("dev", "old"))
    bus.run(0.3)
    bus.drop = None
    bus.submit(alice, SetTopic("dev", "new"))
    bus.run(0.3)
    assert bob.rooms["dev"].topic == "new" and first
    bus._apply(bob.config.addr, bob.handle(first[0], alice.leader_addr, bus.now))
    bus.run(0.3)
    assert bob.rooms["dev"].topic == "new"
    assert topics(bus, bob) == [("dev", "old", "alice"), ("dev", "new", "alice")]


def test_only_the_owner_sets_a_private_rooms_topic() -> None:
    """A private room's topic is its owner's, as its invitations and kicks are; in a public
    room any member sets it."""
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, CreateRoom("ops", private=True))
    bus.run(0.2)
    bus.submit(alice, InviteUser("ops", "bob"))
    bus.run(0.2)
    bus.submit(bob, JoinRoom("ops"))
    bus.run(0.2)
    bus.submit(bob, SetTopic("ops", "bob's topic"))
    bus.run(0.3)
    assert any("only the owner" in r for r in failures(bus, bob))
    assert {s.state.topic("ops") for s in servers} == {""}
    bus.submit(alice, SetTopic("ops", "owner's topic"))
    bus.run(0.3)
    assert {s.state.topic("ops") for s in servers} == {"owner's topic"}
    assert bob.rooms["ops"].topic == "owner's topic"
