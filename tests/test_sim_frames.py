"""The simulator's wire: real codec and frame cap on every message, and maximum-size bursts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tchat.core import codec
from tchat.core.messages import (
    MAX_TEXT,
    Chat,
    Dot,
    Entry,
    EntryBody,
    Origin,
    RoomJoined,
    RoomLeft,
    SendChat,
    Submit,
    UserOffline,
    UserOnline,
)
from tchat.core.vclock import VectorClock
from tchat.sim.expected import expected_deliveries
from tchat.sim.invariants import Violation
from tchat.sim.network import NetworkFaults
from tchat.sim.scenarios import (
    acked,
    boot,
    burst,
    client,
    finish,
    join,
    mail_while_away,
    say,
    wait_until,
)
from tchat.sim.wire import UDP_MAX_PAYLOAD, Wire
from tchat.sim.workload import max_text


def test_max_text_is_the_largest_text_a_client_may_send() -> None:
    text = max_text("tag")
    assert len(text) == MAX_TEXT
    assert text.startswith("tag ")
    assert len(text.encode()) > 3.3 * MAX_TEXT  # mostly four-byte characters


def test_receivers_get_a_decoded_copy_of_what_was_sent() -> None:
    world = boot(5, [1, 2], ["ann"])
    seen: list[Submit] = []

    def record(src: str, dst: str, message: object) -> bool:
        if isinstance(message, Submit):
            seen.append(message)
        return False

    world.intercept = record
    join(world, "ann", "lobby")
    world.run_for(0.2)
    assert seen
    encoded = [m for m, _ in world.wire._encoded.values() if isinstance(m, Submit)]
    assert encoded and all(not any(m is s for s in seen) for m in encoded)
    assert any(m == s for m in encoded for s in seen)
    assert world.wire.stats.decoded > 0 and world.wire.stats.encoded > 0


def test_a_frame_over_the_cap_is_a_violation_naming_type_sender_and_size() -> None:
    world = boot(3, [1, 2], ["ann"])
    joined = join(world, "ann", "lobby")
    assert wait_until(world, lambda: acked(world, "ann", joined), 2.0)
    world.wire.max_frame = 2_000  # a cap the next chat message passes
    with pytest.raises(Violation) as caught:
        say(world, "ann", "lobby", "x" * 3_000)
        world.run_for(0.5)
    assert caught.value.invariant == "frame-over-cap"
    detail = caught.value.detail
    assert "Submit" in detail and client(world, "ann").label in detail
    assert "over the 2000-byte frame cap" in detail


def test_a_datagram_over_udp_size_is_a_violation_even_under_the_cap() -> None:
    wire = Wire()
    sender = SimpleNamespace(label="c1")
    op = SendChat(room="lobby", to=None, text="x" * 65_480, action=False)
    message = Submit("c1", 1, op, VectorClock(), 0.0)
    size = len(wire.encode(message, sender, from_server=False))  # unicast: under the cap
    assert UDP_MAX_PAYLOAD < size <= codec.MAX_FRAME
    with pytest.raises(Violation) as caught:
        wire.encode(message, sender, from_server=False, datagram=True)
    assert caught.value.invariant == "frame-over-cap"
    assert f"c1 built a {size}-byte Submit frame, over the 65507-byte datagram limit" in (
        caught.value.detail
    )
    wire.max_frame = 600
    assert wire.max_datagram == 600


def test_a_frame_our_node_built_that_does_not_decode_is_a_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = boot(6, [1, 2], ["ann"])
    real = codec.encode

    def broken(message: object, key: bytes | None = None) -> bytes:
        data = real(message, key)  # type: ignore[arg-type]
        return data[:-1] if isinstance(message, Submit) else data  # cut short

    monkeypatch.setattr(codec, "encode", broken)
    with pytest.raises(Violation) as caught:
        join(world, "ann", "lobby")
        world.run_for(0.5)
    assert caught.value.invariant == "frame-decode"
    assert "TruncatedFrame" in caught.value.detail


def test_mail_to_a_user_who_logged_out_is_replayed_at_the_next_login() -> None:
    world = boot(7, [1, 2, 3], ["ann", "bob"])
    sent = mail_while_away(world, "ann", "bob", 3)
    assert wait_until(world, lambda: all(acked(world, "ann", cmid) for cmid in sent), 3.0)
    back = world.add_client("bob")
    finish(world)  # completeness: the new bob session must have delivered the three
    mails = [e for e in back.delivered if e.body.to == "bob"]
    assert len(mails) == 3 and all(len(e.body.text) == MAX_TEXT for e in mails)


def _entry(n: int, body: EntryBody, origin: Origin | None = None) -> Entry:
    return Entry(Dot(1, n), VectorClock({1: n}), float(n), origin, body)


def test_mail_sent_while_away_is_due_to_the_next_session_only() -> None:
    # The completeness check's expectation itself: without it, nothing demands the replay.
    empty = VectorClock()
    entries = [
        _entry(1, UserOnline("ann", "a:1", "c1")),
        _entry(2, UserOnline("bob", "b:1", "c2")),
        _entry(3, UserOffline("bob", "c2", "logout", empty)),
        _entry(4, Chat("ann", None, "bob", "while away", False, empty), Origin("c1", 1)),
        _entry(5, UserOnline("bob", "b:2", "c3")),
        _entry(6, Chat("ann", None, "bob", "while back", False, empty), Origin("c1", 2)),
    ]
    due = expected_deliveries(entries, {"c1", "c2", "c3"})
    assert due["c3"] == ["1.4", "1.6"]  # the mail, then the live one
    assert "c2" not in due  # the session that logged out owes nothing
    assert due["c1"] == ["1.4", "1.6"]  # the sender sees its own
    # A second login after the replayed one does not owe it again.
    later = [
        *entries,
        _entry(7, UserOffline("bob", "c3", "logout", empty)),
        _entry(8, UserOnline("bob", "b:3", "c4")),
    ]
    assert "c4" not in expected_deliveries(later, {"c1", "c4"})


def test_room_messages_said_while_away_are_due_to_the_next_session() -> None:
    # Rooms are the account's (issue 16): a member who logged out is still one, and its
    # next login's replay owes it what was said meanwhile; one who left is owed nothing.
    empty = VectorClock()
    entries = [
        _entry(1, UserOnline("ann", "a:1", "c1")),
        _entry(2, UserOnline("bob", "b:1", "c2")),
        _entry(3, RoomJoined("r", "ann")),
        _entry(4, RoomJoined("r", "bob")),
        _entry(5, UserOffline("bob", "c2", "logout", empty)),
        _entry(6, Chat("ann", "r", None, "while away", False, empty), Origin("c1", 1)),
        _entry(7, UserOnline("bob", "b:2", "c3")),
        _entry(8, Chat("ann", "r", None, "while back", False, empty), Origin("c1", 2)),
        _entry(9, RoomLeft("r", "bob")),
        _entry(10, UserOffline("bob", "c3", "logout", empty)),
        _entry(11, Chat("ann", "r", None, "after the leave", False, empty), Origin("c1", 3)),
        _entry(12, UserOnline("bob", "b:3", "c4")),
    ]
    due = expected_deliveries(entries, {"c1", "c2", "c3", "c4"})
    assert due["c3"] == ["1.6", "1.8"]
    assert "c2" not in due and "c4" not in due


def test_a_burst_of_maximum_size_messages_commits() -> None:
    # FIFO sessions that deliver a step's frames in one read, as TCP does: the burst reaches
    # the leader at once and leaves in its next Append.
    world = boot(8, [1, 2, 3], ["ann", "bob"], faults=NetworkFaults(fifo=True, coalesce=True))
    joined = [(name, join(world, name, "lobby")) for name in ("ann", "bob")]
    assert wait_until(world, lambda: all(acked(world, n, cmid) for n, cmid in joined), 2.0)
    sent = burst(world, "ann", "lobby", 40)
    assert wait_until(world, lambda: all(acked(world, "ann", cmid) for cmid in sent), 5.0)
    finish(world)
    got = [e for e in client(world, "bob").delivered if e.body.text.startswith("burst ann")]
    assert len(got) == 40
