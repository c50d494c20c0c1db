"""ReplicatedLog on its own: where an entry lands, the first-copy rule for an operation
sequenced twice, counters and clock, the hot window, the catch-up walks against a brute
force, and a restart from the archive."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tchat.core.archive import InMemoryArchive
from tchat.core.log import ReplicatedLog
from tchat.core.messages import Chat, Dot, Entry, Origin, RoomJoined
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

TS = 1_700_000_000.0


def entry(
    server: int, clock: dict[int, int], origin: Origin | None = None, chat: bool = True
) -> Entry:
    """An entry sequenced by ``server`` at ``clock`` (its counter is clock[server])."""
    vc = VectorClock(clock)
    body = (
        Chat("alice", "r", None, f"t{server}.{vc[server]}", False, EMPTY_CLOCK)
        if chat
        else RoomJoined("r", "bob")
    )
    return Entry(Dot(server, vc[server]), vc, TS + vc.total, origin, body)


def chain(server: int, count: int, base: dict[int, int] | None = None) -> list[Entry]:
    """``count`` entries one server sequenced back to back over ``base``."""
    clock = dict(base or {})
    out = []
    for _ in range(count):
        clock[server] = clock.get(server, 0) + 1
        out.append(entry(server, clock))
    return out


# -- add ------------------------------------------------------------------------------
def test_add_says_tail_middle_or_already_here() -> None:
    log = ReplicatedLog()
    a1, a2 = chain(1, 2)
    b1 = entry(2, {2: 1})  # concurrent with a1 and a2: key (1, 2, 1) sorts between them
    assert log.add(a1) is True
    assert log.add(a2) is True
    assert log.add(b1) is False  # a merge: it sorts before a2
    assert log.add(a2) is None
    assert log.add(b1) is None
    assert [e.dot for e in log.entries()] == [a1.dot, b1.dot, a2.dot]
    assert len(log) == 3 and log.last() == a2
    assert a1.dot in log and Dot(1, 3) not in log and "1.1" not in log
    assert log.get(b1.dot) == b1 and log.get(Dot(2, 2)) is None


def test_a_duplicate_changes_nothing() -> None:
    log = ReplicatedLog()
    first = entry(1, {1: 1}, Origin("c", 1))
    log.add(first)
    before = (len(log), log.clock, log.entries(), log.next_counter(1))
    # Same dot, other contents (a forged or garbled copy): the dot decides, the first stays.
    forged = Entry(first.dot, VectorClock({1: 1, 2: 9}), TS, Origin("c", 2), first.body)
    assert log.add(forged) is None
    assert (len(log), log.clock, log.entries(), log.next_counter(1)) == before
    assert log.by_origin(Origin("c", 2)) is None


# -- an operation sequenced twice -------------------------------------------------------
def test_the_copy_first_in_log_order_counts_whatever_the_order_it_came_in() -> None:
    origin = Origin("c", 7)
    early = entry(2, {2: 1}, origin)  # key (1, 2, 1)
    late = entry(1, {1: 1, 2: 1}, origin)  # key (2, 1, 1): after early
    for order in ((early, late), (late, early)):
        log = ReplicatedLog()
        for e in order:
            log.add(e)
        found = log.by_origin(origin)
        assert found is not None and found.dot == early.dot, order
        assert not log.is_duplicate(early)
        assert log.is_duplicate(late)
        assert len(log) == 2  # both copies are kept: every replica orders them alike


def test_an_operation_recorded_once_is_no_duplicate() -> None:
    log = ReplicatedLog()
    for n in range(1, 6):
        log.add(entry(1, {1: n}, Origin("c", n)))
    assert not any(log.is_duplicate(e) for e in log.entries())
    assert log.by_origin(Origin("c", 3)) == log.get(Dot(1, 3))
    assert log.by_origin(Origin("c", 6)) is None  # above the client's highest: not asked
    assert log.by_origin(Origin("d", 1)) is None


# -- counters and clock -------------------------------------------------------------------
def test_next_counter_follows_the_highest_counter_held() -> None:
    log = ReplicatedLog()
    assert log.next_counter(1) == 1
    for e in chain(1, 3):
        log.add(e)
    assert log.next_counter(1) == 4 and log.next_counter(2) == 1
    # A merge brings a later counter of server 2 only (its earlier ones arrive later).
    log.add(entry(2, {2: 5}))
    assert log.next_counter(2) == 6
    log.add(entry(2, {2: 2}))
    assert log.next_counter(2) == 6
    assert Dot(2, 3) not in log and Dot(2, 2) in log


def test_the_clock_is_the_merge_of_every_entry_clock() -> None:
    log = ReplicatedLog()
    entries = [*chain(1, 3), *chain(2, 2, {1: 1}), entry(3, {3: 1, 1: 3})]
    for e in entries:
        log.add(e)
    expected = EMPTY_CLOCK
    for e in entries:
        expected = expected.merge(e.clock)
    assert log.clock == expected == VectorClock({1: 3, 2: 2, 3: 1})


# -- the hot window -----------------------------------------------------------------------
def test_the_window_keeps_the_newest_and_the_archive_the_rest() -> None:
    archive = InMemoryArchive()
    log = ReplicatedLog(archive, hot=4)
    evicted: list[Entry] = []
    log.on_evict = evicted.extend
    entries = chain(1, 10)
    for e in entries:
        log.add(e)
    assert log.hot_size == 4
    assert log.window() == entries[-4:]
    assert log.floor == entries[6].key
    assert evicted == entries[:6]  # told of each, once, in key order
    assert len(archive) == 10 and len(log) == 10
    assert log.entries() == entries  # the walk reads below the floor from the archive
    assert log.get(entries[0].dot) == entries[0]
    assert list(log.below_floor()) == entries[:6]
    assert log.cold_from is None


def test_an_entry_older_than_the_window_goes_to_the_archive_only() -> None:
    log = ReplicatedLog(hot=3)
    for e in chain(1, 8):
        log.add(e)
    window = log.window()
    old = entry(2, {2: 1})  # concurrent, key (1, 2, 1): far below the floor
    assert log.add(old) is False
    assert log.window() == window  # the window is untouched
    assert log.cold_from == old.key  # the node refolds from there
    assert log.get(old.dot) == old and old.dot in log
    assert [e.dot for e in log.entries()][:2] == [Dot(1, 1), old.dot]
    assert log.next_counter(2) == 2


def test_the_window_is_bounded_however_the_entries_come() -> None:
    hot = 64
    log = ReplicatedLog(hot=hot)
    rng = random.Random(5)
    clocks = {s: EMPTY_CLOCK for s in (1, 2, 3)}
    for _ in range(2_000):
        s = rng.choice((1, 2, 3))
        clocks[s] = clocks[s].increment(s)
        log.add(entry(s, clocks[s].as_dict()))
        if rng.random() < 0.1:
            other = rng.choice((1, 2, 3))
            clocks[other] = clocks[other].merge(clocks[s])
        assert log.hot_size <= hot + hot // 32
    assert len(log) == 2_000


# -- the catch-up walks against a brute force -------------------------------------------
def causal_order(entries: list[Entry], rng: random.Random) -> list[Entry]:
    """A random order that adds an entry only after every entry its clock covers: the
    order replicas receive a log in (senders ship in key order, merges interleave)."""
    order: list[Entry] = []
    held: dict[int, int] = {}
    waiting = list(entries)
    while waiting:
        ready = [
            e
            for e in waiting
            if held.get(e.dot.server, 0) == e.dot.counter - 1
            and all(held.get(s, 0) >= c for s, c in e.clock.items() if s != e.dot.server)
        ]
        pick = rng.choice(ready)
        waiting.remove(pick)
        order.append(pick)
        held[pick.dot.server] = pick.dot.counter
    return order


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Entry], list[Entry], list[VectorClock], int]:
    """Entries a few servers sequence with consistent clocks (each server's clock only
    grows, and learning another's merges it in), one random causal order to add them in,
    probe clocks, and a window size."""
    servers = draw(st.integers(1, 4))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    clocks = {s: EMPTY_CLOCK for s in range(1, servers + 1)}
    entries: list[Entry] = []
    for _ in range(draw(st.integers(0, 40))):
        s = rng.randint(1, servers)
        if rng.random() < 0.25:  # s hears from another server
            clocks[s] = clocks[s].merge(clocks[rng.randint(1, servers)])
        clocks[s] = clocks[s].increment(s)
        origin = Origin("c", rng.randint(1, 6)) if rng.random() < 0.3 else None
        entries.append(entry(s, clocks[s].as_dict(), origin, chat=rng.random() < 0.7))
    order = causal_order(entries, rng)
    probes = [EMPTY_CLOCK, *(e.clock for e in rng.sample(entries, min(5, len(entries))))]
    probes += [
        VectorClock({s: rng.randint(0, 12) for s in range(1, servers + 2) if rng.random() < 0.7})
        for _ in range(4)
    ]
    return entries, order, probes, draw(st.sampled_from((1, 2, 3, 7, 1000)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_the_walks_equal_a_sorted_brute_force(
    history: tuple[list[Entry], list[Entry], list[VectorClock], int],
) -> None:
    entries, order, probes, hot = history
    log = ReplicatedLog(hot=hot)
    for e in order:
        assert log.add(e) is not None
    ordered = sorted(entries, key=lambda e: e.key)
    assert log.entries() == ordered
    assert len(log) == len(entries)
    for probe in probes:
        lacking = [e for e in ordered if not e.clock <= probe]
        assert list(log.missing_for(probe)) == lacking, probe
        chats = [e for e in lacking if isinstance(e.body, Chat)]
        assert list(log.chats_missing_for(probe)) == chats, probe
        for since in {e.key for e in ordered[:: max(1, len(ordered) // 3)]}:
            later = [e for e in chats if e.key >= since]
            assert list(log.chats_missing_for(probe, since)) == later, (probe, since)
    for server in range(1, 6):
        mine = [e.dot.counter for e in entries if e.dot.server == server]
        assert log.next_counter(server) == max(mine, default=0) + 1
    for origin in {e.origin for e in entries if e.origin is not None}:
        copies = [e for e in ordered if e.origin == origin]
        assert log.by_origin(origin) == copies[0]
        assert [log.is_duplicate(e) for e in copies] == [False] + [True] * (len(copies) - 1)


# -- a restart ---------------------------------------------------------------------------
def test_a_log_restored_from_its_archive_answers_as_the_one_that_wrote_it() -> None:
    archive = InMemoryArchive()
    written = ReplicatedLog(archive, hot=5)
    origin = Origin("c", 1)
    entries = [
        entry(1, {1: 1}, origin),
        *chain(1, 5, {1: 1}),
        entry(2, {2: 1}, origin),  # the same operation sequenced on the other side
        *chain(2, 2, {2: 1}),
    ]
    for e in entries:
        written.add(e)
    restored = ReplicatedLog(archive, hot=5)
    replayed = list(restored.restore())
    assert replayed == written.entries() == sorted(entries, key=lambda e: e.key)
    assert len(restored) == len(written) and restored.clock == written.clock
    assert restored.window() == written.window() and restored.floor == written.floor
    for server in (1, 2, 3):
        assert restored.next_counter(server) == written.next_counter(server)
    first = written.by_origin(origin)
    assert first is not None and restored.by_origin(origin) == first
    assert [restored.is_duplicate(e) for e in entries] == [written.is_duplicate(e) for e in entries]
    assert sum(restored.is_duplicate(e) for e in entries) == 1
    for probe in (EMPTY_CLOCK, VectorClock({1: 3}), VectorClock({2: 1})):
        assert list(restored.missing_for(probe)) == list(written.missing_for(probe))
    # It goes on where the writer stopped.
    assert restored.add(entries[3]) is None
    assert restored.add(entry(1, {1: 7, 2: 3})) is True
