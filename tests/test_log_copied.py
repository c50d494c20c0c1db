"""Operations recorded twice (resent across a partition, merged back): the log knows each one's
first copy itself, so re-folds and duplicate checks cost no archive read per entry — with
the same answers as the archive's, over any interleaving of adds and merges."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from test_core_log import causal_order, histories

from tchat.core.archive import InMemoryArchive, LogArchive
from tchat.core.config import ServerConfig
from tchat.core.log import ReplicatedLog
from tchat.core.messages import Chat, Dot, Entry, Origin, RoomJoined, UserOnline
from tchat.core.server import ServerNode
from tchat.core.vclock import EMPTY_CLOCK, VectorClock
from tchat.runtime.archive import SqliteArchive
from tchat.runtime.store import DB_NAME, SqliteStore

TS = 1_700_000_000.0


class CountingArchive(InMemoryArchive):
    """Counts the lookups by origin made of it (one SQLite query each in the runtime)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_origin_calls = 0

    def by_origin(self, origin: Origin) -> Entry | None:
        self.by_origin_calls += 1
        return super().by_origin(origin)


class CountingSqliteArchive(SqliteArchive):
    """The runtime's archive, counting its lookups by origin."""

    by_origin_calls = 0

    def by_origin(self, origin: Origin) -> Entry | None:
        self.by_origin_calls += 1
        return super().by_origin(origin)


def resent_to_both_sides(count: int) -> tuple[list[Entry], list[Entry]]:
    """Two leaders on either side of a partition, each sequencing every one of ``count``
    client operations (a client resending to whichever leader it reached): every operation
    is recorded twice, once per side."""
    sides: dict[int, list[Entry]] = {1: [], 2: []}
    for side in (1, 2):
        clock = EMPTY_CLOCK
        for n in range(1, count + 1):
            clock = clock.increment(side)
            if n == 1:
                body: object = UserOnline(f"u{side}", "a", f"c{side}")
            elif n % 10 == 0:
                body = RoomJoined(f"r{n % 3}", f"u{side}")
            else:
                body = Chat(f"u{side}", f"r{n % 3}", None, f"t{n}", False, EMPTY_CLOCK)
            origin = Origin("client-a", n)
            sides[side].append(Entry(Dot(side, n), clock, TS + n, origin, body))  # type: ignore[arg-type]
    return sides[1], sides[2]


COPIES = 400


@pytest.mark.parametrize("hot", [10**6, 64])  # the whole log in the window; most below it
def test_a_refold_reads_nothing_by_origin_for_copied_operations(hot: int) -> None:
    """Profiled on a leader under overload: every re-fold asked the archive (one SQLite
    query) for each entry of a copied operation. It must answer from memory."""
    first, second = resent_to_both_sides(COPIES)
    archive = CountingArchive()
    node = ServerNode(
        ServerConfig(1, "s1", hot_entries=hot, fold_snapshot_every=50), archive=archive
    )
    node.merge_entries(first)
    archive.by_origin_calls = 0
    node.merge_entries(second)
    # Adding a copy may look its operation up once (work in proportion to the input)...
    assert archive.by_origin_calls <= len(second)
    log = node.log
    assert sum(log.is_duplicate(e) for e in first + second) == COPIES  # every op twice
    # ...but a re-fold of the whole log, or a run of duplicate checks, asks nothing.
    archive.by_origin_calls = 0
    log.cold_from = min(e.key for e in second)  # as after a merge below the window
    node.fold_from_floor(lambda entry: True)
    assert [log.is_duplicate(e) for e in log.entries()].count(True) == COPIES
    assert archive.by_origin_calls == 0


def test_the_sqlite_archive_is_not_queried_per_copied_entry(tmp_path: Path) -> None:
    first, second = resent_to_both_sides(COPIES)
    SqliteStore(tmp_path).close()  # creates the schema
    archive = CountingSqliteArchive(tmp_path / DB_NAME)
    try:
        node = ServerNode(ServerConfig(1, "s1", hot_entries=10**6), archive=archive)
        node.merge_entries(first)
        node.merge_entries(second)
        archive.by_origin_calls = 0
        for _ in range(3):
            node.fold_from_floor(lambda entry: True)
        assert archive.by_origin_calls == 0
    finally:
        archive.close()


def test_a_restored_log_knows_its_copies_without_asking_again() -> None:
    first, second = resent_to_both_sides(50)
    archive = CountingArchive()
    written = ServerNode(ServerConfig(1, "s1", hot_entries=16), archive=archive)
    written.merge_entries(first)
    written.merge_entries(second)
    archive.by_origin_calls = 0
    restarted = ServerNode(ServerConfig(1, "s1", hot_entries=16), archive=archive)
    assert restarted.state.snapshot() == written.state.snapshot()
    # Each later copy comes right after its first in key order: the window answers.
    assert archive.by_origin_calls == 0
    archive.by_origin_calls = 0
    everything = first + second
    assert [restarted.log.is_duplicate(e) for e in everything] == [
        written.log.is_duplicate(e) for e in everything
    ]
    restarted.log.cold_from = min(e.key for e in everything)
    restarted.fold_from_floor(lambda entry: True)
    assert archive.by_origin_calls == 0


def test_a_resent_operation_the_log_never_recorded_is_not_looked_up() -> None:
    """A client resends operations the leader deferred or refused while later ones were
    sequenced: below its highest number, yet in neither the window nor (above the highest
    number below the window) the archive. Answered from memory; an older one still asks."""
    archive = CountingArchive()
    log = ReplicatedLog(archive, hot=64)
    clock = EMPTY_CLOCK
    for n in range(1, 201):
        clock = clock.increment(1)
        cmid = 2 * n if n > 100 else n  # the client's later operations: only even ones
        body = Chat("u", "r", None, f"t{n}", False, EMPTY_CLOCK)
        log.add(Entry(Dot(1, n), clock, TS + n, Origin("c", cmid), body))
    assert log.floor is not None
    archive.by_origin_calls = 0
    assert [log.by_origin(Origin("c", cmid)) for cmid in range(301, 400, 2)] == [None] * 50
    assert archive.by_origin_calls == 0
    assert log.by_origin(Origin("c", 50)) == archive.get(Dot(1, 50))  # below the window
    assert archive.by_origin_calls == 1


# -- the same answers as the archive's -----------------------------------------------------
def check_against_archive(log_archive: LogArchive, log: ReplicatedLog, added: list[Entry]) -> None:
    """by_origin and is_duplicate, for everything added so far, equal the archive's answer
    (the first copy in key order); by_origin also for every operation number up to one past
    each client's highest, recorded or not (a resend of one never sequenced)."""
    high: dict[str, int] = {}
    for e in added:
        if e.origin is not None:
            high[e.origin.client_id] = max(high.get(e.origin.client_id, 0), e.origin.cmid)
    for client_id, top in sorted(high.items()):
        for cmid in range(1, top + 2):
            origin = Origin(client_id, cmid)
            assert log.by_origin(origin) == log_archive.by_origin(origin), origin
    for e in added:
        if e.origin is not None:
            first = log_archive.by_origin(e.origin)
            assert first is not None
            assert log.is_duplicate(e) == (first.dot != e.dot), e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_copies_answer_as_the_archive_after_every_add(
    history: tuple[list[Entry], list[Entry], list[VectorClock], int],
) -> None:
    """Random causal interleavings of a few servers' entries, the same operation sequenced
    on several of them (a later copy often lands before an earlier one: a merge), a window
    from 1 entry to all of them, and a restart at the end."""
    _, order, _, hot = history
    reference = InMemoryArchive()  # the archive's answer, asked of a separate one
    archive = InMemoryArchive()
    log = ReplicatedLog(archive, hot=hot)
    added: list[Entry] = []
    for e in order:
        log.add(e)
        reference.append(e)
        added.append(e)
        check_against_archive(reference, log, added)
    restored = ReplicatedLog(archive, hot=hot)
    assert list(restored.restore()) == log.entries()
    check_against_archive(reference, restored, added)


@pytest.mark.parametrize("seed", range(5))
def test_resends_and_merges_interleaved_answer_as_the_archive(seed: int) -> None:
    """Larger than hypothesis draws: three leaders, a dozen clients resending, partitions
    that heal now and then, and a window much smaller than the log."""
    rng = random.Random(seed)
    clocks = {s: EMPTY_CLOCK for s in (1, 2, 3)}
    made: list[Entry] = []
    for n in range(600):
        side = rng.choice((1, 2, 3))
        if rng.random() < 0.1:  # two sides meet
            other = rng.choice((1, 2, 3))
            clocks[side] = clocks[side].merge(clocks[other])
        clocks[side] = clocks[side].increment(side)
        origin = Origin(f"c{rng.randrange(12)}", rng.randint(1, 40))
        body = Chat("a", "r", None, f"t{n}", False, EMPTY_CLOCK)
        made.append(Entry(Dot(side, clocks[side][side]), clocks[side], TS + n, origin, body))
    reference = InMemoryArchive()
    log = ReplicatedLog(InMemoryArchive(), hot=32)
    added: list[Entry] = []
    for pick in causal_order(made, rng):  # each server's in sequence, after what they cover
        assert log.add(pick) is not None
        reference.append(pick)
        added.append(pick)
        if len(added) % 50 == 0:
            check_against_archive(reference, log, added)
    check_against_archive(reference, log, added)
    assert sum(log.is_duplicate(e) for e in added) > 100  # copies were exercised
