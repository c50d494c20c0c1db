"""SqliteStore: atomic batches, entries a grow-only set, and kill -9 loses nothing committed."""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tchat
from tchat.core.effects import Persist
from tchat.core.messages import Chat, Dot, Entry, Origin
from tchat.core.vclock import VectorClock
from tchat.runtime.store import DB_NAME, SqliteStore, StoreError

ROOT = Path(tchat.__file__).resolve().parent.parent


def make_entry(counter: int, server: int = 7, text: str = "x" * 64) -> Entry:
    return Entry(
        Dot(server, counter),
        VectorClock({server: counter}),
        1_700_000_000.0 + counter,
        Origin("client-1", counter),
        Chat("alice", "lobby", None, text, False, VectorClock({server: counter - 1})),
    )


def test_write_commit_reload(tmp_path: Path) -> None:
    entries = tuple(make_entry(n) for n in range(1, 51))
    with SqliteStore(tmp_path) as store:
        store.write(Persist(entries[:30], (("term", 3),)))
        store.write(Persist(entries[30:], (("term", 4), ("voted", 9))))
        assert store.staged == 50 + 2
        store.commit()
        assert store.staged == 0
    assert (tmp_path / DB_NAME).exists()
    with SqliteStore(tmp_path) as store:
        state = store.load()
    assert sorted(state.entries, key=lambda e: e.dot) == list(entries)
    assert state.meta == {"term": 4, "voted": 9}


def test_duplicate_entries_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with SqliteStore(path) as store:
        store.write(Persist((make_entry(1), make_entry(2))))
        store.commit()
        # The same dots again (one in the same batch twice): the first copy stays.
        store.write(Persist((make_entry(2, text="changed"), make_entry(3), make_entry(3))))
        store.commit()
        state = store.load()
    assert [e.dot for e in state.entries] == [Dot(7, 1), Dot(7, 2), Dot(7, 3)]
    assert state.entries[1] == make_entry(2)


def test_only_committed_batches_survive(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.write(Persist((make_entry(1),), (("term", 1),)))
    store.commit()
    store.write(Persist((make_entry(2),), (("term", 2),)))
    store.close()  # the second batch was never committed, so never acknowledged
    with SqliteStore(tmp_path) as store:
        state = store.load()
    assert [e.dot for e in state.entries] == [Dot(7, 1)]
    assert state.meta == {"term": 1}


def test_meta_and_server_id(tmp_path: Path) -> None:
    with SqliteStore(tmp_path) as store:
        assert store.server_id() is None
        assert store.get_meta("term") is None
        store.set_server_id(123456)
        store.set_meta("term", 5)
        assert store.server_id() == 123456  # staged values are visible before commit
        store.commit()
        store.set_meta("term", 6)
        store.commit()
    with SqliteStore(tmp_path) as store:
        assert store.server_id() == 123456
        assert store.get_meta("term") == 6


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_unknown_schema_and_corrupt_rows_are_refused(tmp_path: Path) -> None:
    with SqliteStore(tmp_path) as store:
        store.write(Persist((make_entry(1),)))
        store.commit()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("UPDATE entries SET data = x'93c0c0'")
    db.commit()
    db.close()
    with SqliteStore(tmp_path) as store, pytest.raises(StoreError, match="corrupt"):
        store.load()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(tmp_path)


@pytest.mark.parametrize("chunk", [128, 1024])
def test_prepared_batches_commit_without_touching_the_staged_one(
    tmp_path: Path, chunk: int
) -> None:
    # 711 rows (duplicates too): with 128-row INSERTs, five full ones and one padded to 128.
    entries = [make_entry(n) for n in range(1, 701)]
    first = Persist(tuple(entries[:400]), (("term", 1),))
    second = Persist((*entries[390:], make_entry(5, text="changed")), (("term", 2),))
    with SqliteStore(tmp_path) as store:
        store._chunk = chunk
        store.write(Persist((make_entry(9999),)))  # staged, must stay staged
        batch = SqliteStore.prepare([first, second])
        assert len(batch.rows) == 400 + 311 and batch.meta == [("term", 2)]
        store.commit_batch(batch)
        assert store.staged == 1
        state = store.load()
        assert sorted(state.entries, key=lambda e: e.dot) == entries  # first copy kept
        assert state.meta == {"term": 2}
        store.commit_batch(SqliteStore.prepare([]))  # empty: no transaction at all
        # Entries only: one statement (its own transaction) up to a chunk, else several.
        more = [make_entry(n) for n in range(701, 701 + chunk + 3)]
        store.commit_batch(SqliteStore.prepare([Persist(tuple(more[:5]))]))
        store.commit_batch(SqliteStore.prepare([Persist(tuple(more))]))
        assert not store._db.in_transaction
        store.commit()
        assert len(store.load().entries) == 700 + chunk + 3 + 1


# --------------------------------------------------------------------------- kill -9
WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from test_store import make_entry
from tchat.core.effects import Persist
from tchat.runtime.store import SqliteStore

store = SqliteStore(Path(sys.argv[1]))
done = 0
while done < 1_000_000:  # bounded; the test kills it long before
    batch = tuple(make_entry(done + i) for i in range(1, 33))
    store.write(Persist(batch, (("done", done + 32),)))
    store.commit()
    done += 32
    print(done, flush=True)  # only ever after the commit returned: this much is durable
"""


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    code = WRITER.format(root=str(ROOT), tests=str(Path(__file__).parent))
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", code, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    reported: list[int] = []
    buffer = b""
    deadline = time.monotonic() + 30
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            # Kill it mid-stream, once it has committed a good number of batches.
            while (not reported or reported[-1] < 3_000) and time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"writer exited early: {proc.stderr.read()!r}"  # type: ignore[union-attr]
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                reported.extend(int(line) for line in lines)
            assert reported and reported[-1] >= 3_000, "writer too slow or silent"
            os.kill(proc.pid, signal.SIGKILL)
            # Whatever it printed before dying was committed too: read the pipe to its end.
            while time.monotonic() < deadline:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
            reported.extend(int(line) for line in buffer.split(b"\n") if line.strip())
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]

    committed = reported[-1]
    with SqliteStore(tmp_path) as store:
        state = store.load()
    stored = {entry.dot.counter for entry in state.entries}
    missing = set(range(1, committed + 1)) - stored
    assert not missing, f"{len(missing)} committed entries lost, first {min(missing)}"
    assert state.meta["done"] >= committed
    # Nothing half-written either: the store holds whole batches only.
    assert len(stored) == state.meta["done"] == max(stored)
