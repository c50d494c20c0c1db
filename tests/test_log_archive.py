"""The log's hot window over an archive: bounded memory, and every read answers as if the
whole log were in memory — with the simulator's InMemoryArchive and with SQLite."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from tchat.core.archive import CounterRanges, InMemoryArchive, Key, LogArchive
from tchat.core.client import ClientState
from tchat.core.config import ServerConfig
from tchat.core.effects import ChatDelivered, Persist
from tchat.core.log import ReplicatedLog
from tchat.core.messages import (
    Chat,
    Dot,
    Entry,
    JoinRoom,
    Origin,
    RoomJoined,
    SendChat,
    UserOnline,
)
from tchat.core.server import ServerNode
from tchat.core.vclock import EMPTY_CLOCK
from tchat.runtime.archive import SqliteArchive
from tchat.runtime.store import DB_NAME, SqliteStore

TS = 1_700_000_000.0


def two_sides(seed: int, count: int) -> tuple[list[Entry], list[Entry]]:
    """Two leaders (servers 1 and 2) sequencing concurrently, now and then learning each
    other's entries, as across a partition that heals and splits again. Some operations
    are resent to both sides (the same Origin sequenced twice)."""
    rng = random.Random(seed)
    logs: dict[int, list[Entry]] = {1: [], 2: []}
    clocks = {1: EMPTY_CLOCK, 2: EMPTY_CLOCK}
    cmid = 0
    names: list[str] = []
    for n in range(count):
        side = rng.choice((1, 2))
        clock = clocks[side].increment(side)
        clocks[side] = clock
        origin = None
        kind = rng.random()
        if kind < 0.08 or not names:
            names.append(f"u{n}")
            body: object = UserOnline(f"u{n}", "a", f"c{n}")
        elif kind < 0.2:
            body = RoomJoined(f"r{n % 3}", rng.choice(names))
        else:
            room = f"r{n % 3}" if rng.random() < 0.8 else None
            body = Chat("alice", room, None if room else "bob", f"t{n}", False, EMPTY_CLOCK)
        if rng.random() < 0.7:
            cmid += 1
            origin = Origin("client-a", cmid)
        entry = Entry(Dot(side, clock[side]), clock, TS + n, origin, body)  # type: ignore[arg-type]
        logs[side].append(entry)
        if origin is not None and rng.random() < 0.05:  # resent to the other side too
            other = 3 - side
            clocks[other] = clocks[other].increment(other)
            c = clocks[other]
            logs[other].append(Entry(Dot(other, c[other]), c, TS + n, origin, body))  # type: ignore[arg-type]
        if rng.random() < 0.05:  # the sides meet: each learns the other's clock
            merged = clocks[1].merge(clocks[2])
            clocks = {1: merged, 2: merged}
    return logs[1], logs[2]


def fill(log: ReplicatedLog, first: list[Entry], second: list[Entry]) -> list[bool | None]:
    """One side's log, then the other's merged in (many land in the middle, below the hot
    window of a small log)."""
    return [log.add(e) for e in first] + [log.add(e) for e in second]


def reads(log: ReplicatedLog, probes: list[Entry]) -> list[object]:
    """Every read the core makes of a log, over a spread of clocks, dots and origins."""
    answers: list[object] = [len(log), log.clock, log.last(), log.entries()]
    answers += [log.next_counter(s) for s in (1, 2, 3)]
    for probe in probes:
        clock = probe.clock
        answers.append([e.dot for e in log.missing_for(clock)])
        answers.append([e.dot for e in log.chats_missing_for(clock)])
        answers.append(log.get(probe.dot))
        answers.append(probe.dot in log)
        if probe.origin is not None:
            first = log.by_origin(probe.origin)
            answers.append(first.dot if first else None)
            answers.append(log.is_duplicate(probe))
        for want in (lambda e: True, lambda e: e.body.room == "r1"):  # type: ignore[attr-defined]
            answers.append([e.dot for e in log.chats_before(probe.dot, 7, want)])
        answers.append([e.dot for e in log.chats_before(None, 5, lambda e: True)])
    answers.append([e.dot for e in log.missing_for(EMPTY_CLOCK)])
    answers.append(log.by_origin(Origin("client-a", 10**6)))
    answers.append(log.get(Dot(1, 10**6)))
    return answers


@pytest.mark.parametrize("seed", range(6))
def test_a_small_hot_window_answers_like_the_whole_log_in_memory(seed: int) -> None:
    first, second = two_sides(seed, 400)
    whole = ReplicatedLog(hot=10**9)
    small = ReplicatedLog(InMemoryArchive(), hot=16)
    assert fill(small, first, second) == fill(whole, first, second)
    assert small.hot_size <= 16 + 2 < len(small) == len(first) + len(second)
    probes = random.Random(seed).sample(first + second, 40)
    assert reads(small, probes) == reads(whole, probes)
    assert any(whole.is_duplicate(e) for e in first + second)  # copies were exercised


@pytest.mark.parametrize("seed", range(4))
def test_merges_refold_to_the_same_state_whatever_the_window(seed: int) -> None:
    """Entries merged inside the window re-fold from the fold below it; entries merged
    below the window redo that fold from the archive. Either way: the state of a node that
    holds the whole log in memory."""
    first, second = two_sides(seed, 400)
    nodes = [
        ServerNode(ServerConfig(1, "s1", hot_entries=hot, fold_snapshot_every=20))
        for hot in (8, 10**9)
    ]
    for node in nodes:
        node.merge_entries(first)
    assert nodes[0].log.floor is not None and nodes[1].log.floor is None
    assert len(nodes[0].fold.snapshots) == 4  # copies of the fold to re-fold from
    rooms_folded = 0
    for start in range(0, len(second), 20):
        for node in nodes:
            node.merge_entries(second[start : start + 20])
        small, whole = (node.state for node in nodes)
        assert small.snapshot() == whole.snapshot()
        assert {r: (v.messages, v.stretches) for r, v in small.rooms.items()} == {
            r: (v.messages, v.stretches) for r, v in whole.rooms.items()
        }
        rooms_folded += len(small.rooms)
    assert rooms_folded  # the fold had rooms to get right


def test_memory_stays_bounded_and_counters_are_runs() -> None:
    log = ReplicatedLog(hot=100)
    clock = EMPTY_CLOCK
    for n in range(1, 5001):
        clock = clock.increment(1)
        body = Chat("a", "r", None, "t", False, clock)
        log.add(Entry(Dot(1, n), clock, TS, Origin("c", n), body))
    assert log.hot_size <= 112 and len(log) == 5000
    assert len(log._by_dot) == log.hot_size and len(log._hot_origin) <= log.hot_size
    assert log._counters[1].runs() == [(1, 5000)]
    assert log.by_origin(Origin("c", 3)) == log.get(Dot(1, 3))  # old: from the archive
    assert log.by_origin(Origin("c", 5001)) is None


def test_counter_ranges() -> None:
    ranges = CounterRanges()
    for counter in (5, 1, 3, 2, 7, 4, 10):
        assert counter not in ranges
        ranges.add(counter)
        assert counter in ranges
    assert ranges.runs() == [(1, 5), (7, 7), (10, 10)]
    assert [ranges.first_above(c) for c in (0, 4, 5, 7, 9, 10)] == [1, 5, 7, 10, 10, None]
    ranges.add(6)
    assert ranges.runs() == [(1, 7), (10, 10)] and ranges.last() == 10


# -- the runtime's archive: SQLite --------------------------------------------------------
def sqlite_log(tmp_path: Path, hot: int) -> tuple[ReplicatedLog, SqliteStore, SqliteArchive]:
    store = SqliteStore(tmp_path)
    archive = SqliteArchive(store.path)
    return ReplicatedLog(archive, hot=hot), store, archive


@pytest.mark.parametrize("seed", range(3))
def test_the_sqlite_archive_answers_like_memory_settled_or_not(tmp_path: Path, seed: int) -> None:
    first, second = two_sides(seed, 300)
    whole = ReplicatedLog(hot=10**9)
    fill(whole, first, second)
    log, store, archive = sqlite_log(tmp_path, hot=16)
    try:
        # Half the log committed (and settled), the rest still in the commit pipeline.
        everything = first + second
        cut = len(everything) // 2
        for entry in everything[:cut]:
            log.add(entry)
        done = [Persist(tuple(everything[:cut]))]
        store.commit_batch(store.prepare(done))
        archive.settle(done)
        for entry in everything[cut:]:
            log.add(entry)
        assert archive.unsettled == len(everything) - cut
        probes = random.Random(seed).sample(everything, 30)
        assert reads(log, probes) == reads(whole, probes)
        # Committed but not settled yet (the commit thread returned, the loop not yet
        # told): every entry is in both places and each is answered once.
        rest = [Persist(tuple(everything[cut:]))]
        store.commit_batch(store.prepare(rest))
        assert reads(log, probes) == reads(whole, probes)
        archive.settle(rest)
        assert archive.unsettled == 0 and log.hot_size <= 18
        assert reads(log, probes) == reads(whole, probes)
    finally:
        archive.close()
        store.close()


def test_a_restarted_server_rebuilds_its_log_and_state_from_sqlite(tmp_path: Path) -> None:
    first, second = two_sides(11, 300)
    config = ServerConfig(1, "s1", hot_entries=16)
    with SqliteStore(tmp_path) as store:
        store.commit_batch(store.prepare([Persist(tuple(first + second))]))
    memory = ServerNode(config)
    memory.merge_entries(first)
    memory.merge_entries(second)
    archive = SqliteArchive(tmp_path / DB_NAME)
    try:
        restarted = ServerNode(config, archive=archive)
        assert restarted.log.entries() == memory.log.entries()
        assert restarted.log.clock == memory.log.clock
        assert restarted.state.snapshot() == memory.state.snapshot()
        assert restarted.log.hot_size <= 18 and archive.unsettled == 0
        probes = first[:10] + second[-10:]
        assert reads(restarted.log, probes) == reads(memory.log, probes)
    finally:
        archive.close()


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    entries, _ = two_sides(3, 50)
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.executescript(
        "CREATE TABLE entries (dot_server INTEGER NOT NULL, dot_counter INTEGER NOT NULL,"
        " data BLOB NOT NULL, PRIMARY KEY (dot_server, dot_counter)) WITHOUT ROWID;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "PRAGMA user_version = 1;"
    )
    from tchat.core import codec

    db.executemany(
        "INSERT INTO entries VALUES (?, ?, ?)",
        [(e.dot.server, e.dot.counter, codec.encode_entry(e)) for e in entries],
    )
    db.commit()
    db.close()
    with SqliteStore(tmp_path) as store:
        assert sorted(store.load().entries, key=lambda e: e.key) == entries
    archive = SqliteArchive(tmp_path / DB_NAME)
    try:
        log = ReplicatedLog(archive, hot=8)
        list(log.restore())
        assert log.entries() == entries
        chats = [e for e in entries if isinstance(e.body, Chat)]
        assert log.chats_before(None, 100, lambda e: True) == chats
    finally:
        archive.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_archives_satisfy_the_protocol(tmp_path: Path) -> None:
    # mypy checks these assignments against the Protocol; the runtime one is used too.
    memory: LogArchive = InMemoryArchive()
    with SqliteStore(tmp_path):
        sqlite: LogArchive = SqliteArchive(tmp_path / DB_NAME)
    assert len(memory) == len(sqlite) == 0


class CountingArchive(InMemoryArchive):
    """Counts the entries read from it in key order (what a catch-up walk costs)."""

    def __init__(self) -> None:
        super().__init__()
        self.walked = 0

    def entries_from(self, key: Key | None, limit: int, chats: bool = False) -> list[Entry]:
        found = super().entries_from(key, limit, chats)
        self.walked += len(found)
        return found


def test_a_first_login_reads_no_history_from_the_archive() -> None:
    """A new account's catch-up starts at its first login: nothing earlier concerns it, so
    a login into a long log costs no walk of it (it was a walk of every chat ever)."""
    from core_bus import Bus
    from test_core_nodes import leaders, serving, settled

    bus = Bus(seed=2)
    servers = [bus.add_server(i, hot_entries=16) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    (leader,) = leaders(servers)
    archive = CountingArchive()
    for entry in leader.log.entries():
        archive.append(entry)
    leader.log.archive = archive
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, JoinRoom("hall"))
    bus.submit(bob, JoinRoom("hall"))
    bus.run_until(lambda: not alice.pending and not bob.pending, 3)
    for i in range(150):
        bus.submit(alice, SendChat("hall", None, f"m{i}", False))
    bus.submit(alice, SendChat(None, "bob", "private", False))
    bus.run_until(lambda: not alice.pending, 10)
    assert len(leader.log) > 150 and leader.log.hot_size < 20
    archive.walked = 0
    (carol,) = serving(bus, "carol")
    assert archive.walked == 0
    # A returning account still gets what it missed, from the archive.
    bus.crash(bob.config.addr)
    bus.run_until(lambda: "bob" not in leader.state.users, 10)
    for i in range(30):
        bus.submit(alice, SendChat("hall", None, f"late {i}", False))
    bus.submit(alice, SendChat(None, "bob", "while away", False))
    bus.run_until(lambda: not alice.pending, 10)
    bob2 = bus.add_client("bob")
    bus.run_until(lambda: bob2.state is ClientState.SERVING, 5)
    bus.run(0.5)
    got = [e.entry.body.text for e in bus.events[bob2.config.addr] if isinstance(e, ChatDelivered)]
    assert "while away" in got and carol.state is ClientState.SERVING
