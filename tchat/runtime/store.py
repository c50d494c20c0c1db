"""SqliteStore: a server's durable log and metadata in SQLite (WAL), committed in batches.

Longer than 400 lines: every write to a server's database is here (the schema and its
migration, the checks a Persist must pass, the batched commit and the CommitThread that
runs it off the event loop), so the durability order reads in one place. Reads of the log
for the core are runtime/archive.py's."""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tchat.core import codec
from tchat.core.effects import DurableState, Persist
from tchat.core.errors import RemoteProtocolError
from tchat.core.messages import Chat, Entry
from tchat.core.schema import MAX_INT, describe, entry_problem

logger = logging.getLogger(__name__)

DB_NAME = "tchat.db"
SCHEMA_VERSION = 2  # PRAGMA user_version: bump with a migration when the tables change
SERVER_ID_KEY = "server_id"

SQLITE_INT_MAX = 2**63 - 1  # an INTEGER column is a signed 64-bit value
INSERT_CHUNK = 1024  # most rows per INSERT statement, a power of two
ROW_FIELDS = 7  # parameters per row

# Version 2 adds what the log archive (tchat/runtime/archive.py) reads by: the entry's key
# (clock sum, dot) for order, whether it is a chat, and the client operation it records.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    dot_server INTEGER NOT NULL,
    dot_counter INTEGER NOT NULL,
    data BLOB NOT NULL,
    clock_sum INTEGER,
    chat INTEGER,
    origin_client TEXT,
    origin_cmid INTEGER,
    PRIMARY KEY (dot_server, dot_counter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (clock_sum, dot_server, dot_counter);
CREATE INDEX IF NOT EXISTS entries_by_origin ON entries (origin_client, origin_cmid)
    WHERE origin_client IS NOT NULL;
"""
_V1_COLUMNS = ("clock_sum INTEGER", "chat INTEGER", "origin_client TEXT", "origin_cmid INTEGER")


class StoreError(Exception):
    """The store on disk cannot be used: wrong schema version or a corrupt row."""


class UnstorableValue(ValueError):
    """A Persist holds a value the store must not keep (an int past the protocol's range:
    SQLite could not take it, or our decoder could not load it again). Raised before
    anything is written; the runtime refuses the step that produced it."""


# (dot server, dot counter, encoded entry, clock sum, chat, origin client, origin cmid)
Row = tuple[int, int, bytes, int, int, str | None, int | None]


def entry_row(entry: Entry) -> Row:
    origin = entry.origin
    return (
        entry.dot.server,
        entry.dot.counter,
        codec.encode_entry(entry),
        entry.clock.total,
        1 if isinstance(entry.body, Chat) else 0,
        None if origin is None else origin.client_id,
        None if origin is None else origin.cmid,
    )


def meta_problem(key: str, value: object) -> str:
    """Why the meta table must not keep this value ('' if it may)."""
    if type(value) is not int or not 0 <= value <= SQLITE_INT_MAX:
        return f"meta {key} = {describe(value)}, not an int in [0, 2**63)"
    return ""


@dataclass(frozen=True, slots=True)
class Batch:
    """Encoded rows and meta values of one commit, detached from the store's staging."""

    rows: list[Row]
    meta: list[tuple[str, int]]

    def __len__(self) -> int:
        return len(self.rows) + len(self.meta)


class SqliteStore:
    """The log (a grow-only set of entries keyed by dot) and integer metadata of one server.

    ``write`` stages a Persist effect; ``commit`` makes everything staged durable in one
    transaction (one fsync), synchronously. The runtime's commit pipeline splits that in
    two: ``prepare`` encodes Persists into a detached ``Batch`` on the event loop and
    ``commit_batch`` writes it from the commit thread, so the connection is opened with
    check_same_thread=False; the pipeline guarantees one thread at a time uses it.
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        # A data directory holds the database file; any other path is the file itself.
        self.path = path / DB_NAME if path.is_dir() else path
        self._entries: list[Row] = []
        self._meta: dict[str, int] = {}
        # isolation_level=None: no implicit transactions; commit() opens and ends its own.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL (journal_mode={mode})")
        # Why FULL and not NORMAL: in WAL mode NORMAL does not fsync the WAL at commit, so
        # a committed batch sits in the OS page cache. That survives kill -9 of this process
        # but not a kernel crash or power cut, which would then lose entries we had already
        # acknowledged to clients. FULL fsyncs the WAL on every commit; batching (one commit
        # per event-loop step, many entries each) keeps that to one fsync per step.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=OFF")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            raise StoreError(f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}")
        db.executescript(_SCHEMA)
        if version == 1:
            self._migrate_v1()
        db.executescript(_INDEXES)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # Rows per INSERT: a power of two whose parameters fit this SQLite's limit (999
        # before 3.32, 32766 after).
        limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // ROW_FIELDS
        self._chunk = min(INSERT_CHUNK, 1 << (limit.bit_length() - 1))

    def _migrate_v1(self) -> None:
        """Version 1 stored dot and blob only: add the archive's columns, filled from the
        decoded entries, in one transaction."""
        db = self._db
        columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
        db.execute("BEGIN IMMEDIATE")
        try:
            for column in _V1_COLUMNS:
                if column.split()[0] not in columns:
                    db.execute(f"ALTER TABLE entries ADD COLUMN {column}")
            rows = db.execute("SELECT dot_server, dot_counter, data FROM entries").fetchall()
            for server, counter, data in rows:
                row = entry_row(self._decode(server, counter, data))
                db.execute(
                    "UPDATE entries SET clock_sum = ?, chat = ?, origin_client = ?,"
                    " origin_cmid = ? WHERE dot_server = ? AND dot_counter = ?",
                    (*row[3:], server, counter),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        logger.info("%s: migrated %d entries to schema version 2", self.path, len(rows))

    def _decode(self, server: int, counter: int, data: bytes) -> Entry:
        return decode_row(self.path, server, counter, data)

    # -- reading -------------------------------------------------------------
    def load_meta(self) -> DurableState:
        """The metadata alone: the log stays on disk, read through a LogArchive."""
        return DurableState(entries=[], meta=self._read_meta())

    def _read_meta(self) -> dict[str, int]:
        meta: dict[str, int] = {}
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            if type(value) is int and 0 <= value <= MAX_INT:
                meta[key] = value
            else:
                # No node writes one honestly (§1 of PROTOCOL.md); a term a forged client
                # frame once made servers store: kept, the server could never elect again.
                logger.warning(
                    "%s: meta %s = %s is past the protocol's range; ignored",
                    self.path,
                    key,
                    describe(value),
                )
        return meta

    def load(self) -> DurableState:
        """Everything committed so far; entries in dot order (the node sorts them its way)."""
        entries: list[Entry] = []
        rows = self._db.execute(
            "SELECT dot_server, dot_counter, data FROM entries ORDER BY dot_server, dot_counter"
        )
        for server, counter, data in rows:
            entries.append(self._decode(server, counter, data))
        meta = self._read_meta()
        logger.info(
            "loaded %d entries and %d meta keys from %s", len(entries), len(meta), self.path
        )
        return DurableState(entries=entries, meta=meta)

    def get_meta(self, key: str) -> int | None:
        """A meta value: the staged one if any, else the committed one, else None."""
        if key in self._meta:
            return self._meta[key]
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def server_id(self) -> int | None:
        """This data directory's server ID, once the runtime chose and committed one."""
        return self.get_meta(SERVER_ID_KEY)

    @property
    def staged(self) -> int:
        """Entries and meta keys written since the last commit."""
        return len(self._entries) + len(self._meta)

    # -- writing -------------------------------------------------------------
    @staticmethod
    def check(effect: Persist) -> None:
        """Raise UnstorableValue if ``effect`` holds anything the store must not keep.

        The last line of defence: the codec bounds every int a peer sends, and the core
        only adds one to what it took in, so this never fires unless that broke."""
        for key, value in effect.meta:
            problem = meta_problem(key, value)
            if problem:
                raise UnstorableValue(problem)
        for entry in effect.entries:
            problem = entry_problem(entry)
            if problem:
                raise UnstorableValue(f"entry {entry.dot}: {problem}")

    def write(self, effect: Persist) -> None:
        """Stage a Persist into the current batch (durable at the next ``commit``)."""
        self.check(effect)
        for entry in effect.entries:
            self._entries.append(entry_row(entry))
        self._meta.update(effect.meta)

    def set_meta(self, key: str, value: int) -> None:
        """Stage one meta value (durable at the next ``commit``)."""
        problem = meta_problem(key, value)
        if problem:
            raise UnstorableValue(problem)
        self._meta[key] = value

    def set_server_id(self, server_id: int) -> None:
        self.set_meta(SERVER_ID_KEY, server_id)

    def commit(self) -> None:
        """Make the staged batch durable in one transaction; no-op when nothing is staged.

        Entries are a grow-only set: an entry already stored (same dot) is ignored. On
        failure the batch stays staged and the error propagates: nothing was acknowledged.
        """
        if not self._entries and not self._meta:
            return
        self.commit_batch(Batch(self._entries, list(self._meta.items())))
        self._entries = []
        self._meta.clear()

    @staticmethod
    def prepare(persists: Iterable[Persist]) -> Batch:
        """Encode Persists into a detached batch (touches no store state: any thread)."""
        rows: list[Row] = []
        meta: dict[str, int] = {}
        for effect in persists:
            for entry in effect.entries:
                rows.append(entry_row(entry))
            meta.update(effect.meta)  # a later value of a key wins, as with write()
        return Batch(rows, list(meta.items()))

    def commit_batch(self, batch: Batch) -> None:
        """Make one batch durable in one transaction; the staged batch is left alone.

        sqlite3 releases the GIL around every statement step, and the commit thread must win
        it back from a busy event loop each time; so rows go in as multi-row INSERTs rather
        than one step per row, and the common batch (entries only, one chunk) is a single
        statement, which in autocommit mode is its own atomic, fsynced transaction.
        """
        if not batch:
            return
        db = self._db
        if not batch.meta and len(batch.rows) <= self._chunk:
            self._insert_rows(batch.rows)
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if batch.rows:
                self._insert_rows(batch.rows)
            if batch.meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    batch.meta,
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _insert_rows(self, rows: list[Row]) -> None:
        for start in range(0, len(rows), self._chunk):
            chunk = rows[start : start + self._chunk]
            # Padded to a power of two with copies of the last row (INSERT OR IGNORE skips
            # them), so a dozen distinct statements cover every size and stay prepared.
            size = 1 << (len(chunk) - 1).bit_length()
            params = [value for row in chunk for value in row]
            params.extend(chunk[-1] * (size - len(chunk)))
            self._db.execute(_insert_sql(size), params)

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        """Close the database; anything staged but not committed is dropped (never acked)."""
        if self._entries or self._meta:
            logger.warning("closing %s with %d uncommitted items", self.path, self.staged)
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def decode_row(path: Path, server: int, counter: int, data: bytes) -> Entry:
    """A stored entry, checked: a row that does not decode to its own dot is corruption."""
    try:
        entry = codec.decode_entry(data)
    except RemoteProtocolError as exc:
        raise StoreError(f"{path}: entry {server}.{counter} is corrupt: {exc}") from exc
    if (entry.dot.server, entry.dot.counter) != (server, counter):
        raise StoreError(f"{path}: row {server}.{counter} holds entry {entry.dot}")
    return entry


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT OR IGNORE INTO entries (dot_server, dot_counter, data, clock_sum, chat,"
        f" origin_client, origin_cmid) VALUES {values}"
    )


CommitDone = Callable[[int, "BaseException | None", float], None]
# The commit thread needs the GIL back after every SQLite call. uvloop takes and drops the
# GIL around each of its callbacks, and CPython only forces a hand-over when a waiter saw
# no switch for a whole switch interval: with the default 5 ms a commit was starved for
# seconds behind a busy loop (measured: p90 1.3 s, max 18 s); with 0.2 ms, max 10 ms.
# A short interval costs nothing while only one thread wants the GIL.
GIL_SWITCH_INTERVAL = 0.0002


class CommitThread:
    """One thread that runs commit jobs in submission order and reports each to the loop.

    ``on_done(seq, error, seconds)`` runs on the event loop after job ``seq`` returned or
    raised. The thread is the only user of the store's connection while it runs, so the
    store must not be touched from elsewhere between ``start`` and a successful ``close``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_done: CommitDone) -> None:
        self._loop = loop
        self._on_done = on_done
        self._jobs: queue.SimpleQueue[tuple[int, Callable[[], None]] | None] = queue.SimpleQueue()
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:  # process-wide, never raised again
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        # daemon: a commit stuck on a hung disk must not keep a dying process alive.
        self._thread = threading.Thread(target=self._run, name="tchat-commit", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, seq: int, job: Callable[[], None]) -> None:
        self._jobs.put((seq, job))

    def close(self, timeout: float = 10.0) -> bool:
        """Let the queued jobs finish, then end the thread; False if it is still running."""
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("commit thread still busy after %.0f s; leaving it", timeout)
            return False
        return True

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            seq, job = item
            error: BaseException | None = None
            started = time.perf_counter()
            try:
                job()
            except BaseException as exc:  # reported to the loop, which stops the node
                error = exc
            elapsed = time.perf_counter() - started
            try:
                self._loop.call_soon_threadsafe(self._on_done, seq, error, elapsed)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
