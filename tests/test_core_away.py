"""Away with a reason (issue 16): replicated, checked, bounded, paced; auto-away by the clock."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import msgpack
import pytest
from test_core_nodes import cluster, leaders, serving

from tchat.core import codec
from tchat.core.away import AUTO_REASON, AwayTracker
from tchat.core.effects import OpFailed, Persist
from tchat.core.errors import InvalidField
from tchat.core.messages import (
    MAX_AWAY_REASON,
    Dot,
    Entry,
    SetAway,
    Submit,
    UserStatus,
)
from tchat.core.redact import redacted
from tchat.core.server import ServerNode
from tchat.core.vclock import EMPTY_CLOCK, VectorClock
from tchat.runtime.limits import OPERATION_RATES, operation_kind
from tchat.runtime.ratelimit import TokenBucket
from tchat.runtime.store import DB_NAME, SqliteStore


def statuses(server: ServerNode) -> list[UserStatus]:
    return [e.body for e in server.log.entries() if isinstance(e.body, UserStatus)]


def refusals(bus: object, addr: str) -> list[str]:
    return [e.reason for e in bus.events[addr] if isinstance(e, OpFailed)]  # type: ignore[attr-defined]


def test_an_away_reason_reaches_every_server_and_client() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    # A Welcome lists committed logins only: the later one reaches bob in a lobby frame.
    bus.run_until(lambda: "alice" in bob.users, 1)
    bus.submit(alice, SetAway(True, "lunch, back at 2"))
    bus.run_until(lambda: bob.users["alice"].status == "away", 2)
    assert bob.users["alice"].away_reason == "lunch, back at 2"
    bus.run_until(lambda: all(s.state.users["alice"].away_reason for s in servers), 2)
    assert {s.state.users["alice"].info().away_reason for s in servers} == {"lunch, back at 2"}
    bus.submit(alice, SetAway(False))
    bus.run_until(lambda: bob.users["alice"].status == "online", 2)
    assert bob.users["alice"].away_reason == ""


@pytest.mark.parametrize(
    "reason",
    [
        "out\u202eflow",  # a bidi override would reorder the user list's row
        "two\nlines",  # a newline would forge a row of its own
        "\x1b[2Jwiped",  # a terminal escape
        "zero\u200bwidth",
        " padded",
        "a" + "\u0301" * 5,  # a pile of combining marks
    ],
)
def test_a_reason_that_would_garble_a_user_list_is_refused_and_costs_no_entry(
    reason: str,
) -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    before = len(statuses(leaders(servers)[0]))
    bus.submit(alice, SetAway(True, reason))
    bus.run_until(lambda: bool(refusals(bus, alice.config.addr)), 2)
    assert "away reason" in refusals(bus, alice.config.addr)[0]
    assert len(statuses(leaders(servers)[0])) == before
    assert alice.users["alice"].status == "online"


def test_emoji_sequences_and_accents_are_fine() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    reason = "\U0001f9d1\u200d\U0001f4bb codé \u2764\ufe0f"
    bus.submit(alice, SetAway(True, reason))
    bus.run_until(lambda: alice.users["alice"].away_reason == reason, 2)
    assert not refusals(bus, alice.config.addr)


def test_a_change_to_nothing_new_is_refused_so_a_replayed_flap_costs_the_log_nothing() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    for _ in range(3):
        bus.submit(alice, SetAway(True, "gone"))
    bus.submit(alice, SetAway(False, "a reason while back"))
    bus.run_until(lambda: len(refusals(bus, alice.config.addr)) == 3, 2)
    assert [s.away_reason for s in statuses(leaders(servers)[0])] == ["gone"]


def test_the_codec_bounds_the_reason() -> None:
    fine = Submit("c", 1, SetAway(True, "x" * MAX_AWAY_REASON), EMPTY_CLOCK, 0.0)
    assert codec.decode(codec.encode(fine)) == fine
    over = Submit("c", 1, SetAway(True, "x" * (MAX_AWAY_REASON + 1)), EMPTY_CLOCK, 0.0)
    with pytest.raises(InvalidField, match="away_reason"):
        codec.decode(codec.encode(over))


def test_an_entry_stored_before_reasons_existed_still_loads() -> None:
    entry = Entry(Dot(3, 7), EMPTY_CLOCK, 1.0, None, UserStatus("alice", True, "lunch"))
    fields = msgpack.unpackb(codec.encode_entry(entry), use_list=False)
    *head, body = fields
    old_body = body[:-1]  # [tag, name, away]: version 8 had no reason
    old = msgpack.packb((*head, old_body), use_bin_type=True)
    loaded = codec.decode_entry(old)
    assert loaded.body == UserStatus("alice", True, "")
    with pytest.raises(InvalidField):  # a field missing that is not optional is still refused
        codec.decode_entry(msgpack.packb((*head, body[:-2]), use_bin_type=True))


def test_logs_never_show_a_reason() -> None:
    text = redacted(SetAway(True, "at the dentist"))
    assert "dentist" not in text


# -- the client's side: auto-away and pacing, on the client's clock ------------------------
def test_auto_away_after_idle_and_the_first_keystroke_ends_it() -> None:
    tracker = AwayTracker(idle_after=900.0, now=0.0)
    assert tracker.next_deadline() == 900.0
    assert tracker.tick(899.0) is None
    assert tracker.tick(900.0) == SetAway(True, AUTO_REASON)
    assert tracker.tick(2000.0) is None  # once
    assert tracker.next_deadline() is None
    assert tracker.input(2001.0) == SetAway(False, "")
    assert tracker.input(2002.0) is None
    assert tracker.next_deadline() == 2002.0 + 900.0


def test_typing_keeps_auto_away_off() -> None:
    tracker = AwayTracker(idle_after=60.0, now=0.0)
    for second in range(0, 600, 30):
        assert tracker.input(float(second)) is None
        assert tracker.tick(float(second) + 29.0) is None


def test_a_keystroke_never_ends_a_manual_away() -> None:
    tracker = AwayTracker(idle_after=60.0, now=0.0)
    assert tracker.manual(True, "lunch", 10.0) == SetAway(True, "lunch")
    assert tracker.input(20.0) is None
    assert tracker.tick(1000.0) is None  # away already: idleness changes nothing
    assert tracker.manual(False, "", 1001.0) == SetAway(False, "")


def test_zero_disables_auto_away() -> None:
    tracker = AwayTracker(idle_after=0.0, now=0.0)
    assert tracker.next_deadline() is None
    assert tracker.tick(1e9) is None
    with pytest.raises(ValueError):
        AwayTracker(idle_after=-1.0, now=0.0)
    with pytest.raises(ValueError):
        AwayTracker(idle_after=math.nan, now=0.0)


def test_a_flap_is_paced_to_one_change_per_interval_and_coalesced() -> None:
    tracker = AwayTracker(idle_after=0.0, now=0.0, min_interval=5.0)
    sent = [tracker.manual(True, "a", 0.0)]
    # Ten flips within the interval: nothing goes out; the settled state goes at its end.
    for i in range(10):
        sent.append(tracker.manual(i % 2 == 0, "b", 0.1 + i * 0.1))
    assert sent[1:] == [None] * 10
    assert tracker.next_deadline() == 5.0
    assert tracker.tick(4.9) is None
    assert tracker.tick(5.0) == SetAway(False, "")  # the last flip (i = 9) was "back"
    # A flip that comes back to what was sent sends nothing at all.
    assert tracker.manual(True, "c", 6.0) is None
    assert tracker.manual(False, "", 7.0) is None
    assert tracker.tick(20.0) is None


def test_a_session_flooding_status_changes_waits_on_its_bucket() -> None:
    op = Submit("c", 1, SetAway(True, "x"), EMPTY_CLOCK, 0.0)
    assert operation_kind(op) == "status"
    rate = OPERATION_RATES["status"][0]
    bucket = TokenBucket(rate.rate, rate.burst, 0.0)
    # One minute of flapping at 100 changes a second: at most burst + rate * 60 pass.
    passed = sum(bucket.take(step / 100) for step in range(6000))
    assert passed <= rate.burst + rate.rate * 60 + 1


def test_what_the_servers_say_is_adopted_and_never_as_an_auto_away() -> None:
    tracker = AwayTracker(idle_after=60.0, now=0.0)
    tracker.adopt(True, AUTO_REASON)  # another terminal of ours went idle
    assert not tracker.pending
    assert tracker.input(1.0) is None  # this terminal's keystroke does not end it
    assert tracker.manual(False, "", 10.0) == SetAway(False, "")


def test_a_store_written_before_reasons_existed_still_opens(tmp_path: Path) -> None:
    """A server upgraded in place: its SQLite log holds version-8 UserStatus rows."""
    entry = Entry(Dot(3, 1), VectorClock({3: 1}), 1.0, None, UserStatus("alice", True, "x"))
    with SqliteStore(tmp_path) as store:
        store.write(Persist((entry,), ()))
        store.commit()
    fields = msgpack.unpackb(codec.encode_entry(entry), use_list=False, strict_map_key=False)
    *head, body = fields
    old = msgpack.packb((*head, body[:-1]), use_bin_type=True)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE entries SET data = ?", (old,))
    with SqliteStore(tmp_path) as store:
        (loaded,) = store.load().entries
    assert loaded.body == UserStatus("alice", True, "")
