"""SqliteStore: a server's durable log and metadata in SQLite (WAL), committed in batches."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from types import TracebackType

from tchat.core import codec
from tchat.core.effects import DurableState, Persist
from tchat.core.errors import RemoteProtocolError
from tchat.core.messages import Entry

logger = logging.getLogger(__name__)

DB_NAME = "tchat.db"
SCHEMA_VERSION = 1  # PRAGMA user_version: bump with a migration when the tables change
SERVER_ID_KEY = "server_id"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    dot_server INTEGER NOT NULL,
    dot_counter INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (dot_server, dot_counter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class StoreError(Exception):
    """The store on disk cannot be used: wrong schema version or a corrupt row."""


class SqliteStore:
    """The log (a grow-only set of entries keyed by dot) and integer metadata of one server.

    ``write`` stages a Persist effect; ``commit`` makes everything staged durable in one
    transaction. The runtime commits once per event-loop step, before it sends anything
    that step produced, so an acknowledgement never leaves before its entry is on disk.
    Calls are synchronous: a batch commit is one short transaction and one fsync.
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        # A data directory holds the database file; any other path is the file itself.
        self.path = path / DB_NAME if path.is_dir() else path
        self._entries: list[tuple[int, int, bytes]] = []
        self._meta: dict[str, int] = {}
        # isolation_level=None: no implicit transactions; commit() opens and ends its own.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
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
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- reading -------------------------------------------------------------
    def load(self) -> DurableState:
        """Everything committed so far; entries in dot order (the node sorts them its way)."""
        entries: list[Entry] = []
        rows = self._db.execute(
            "SELECT dot_server, dot_counter, data FROM entries ORDER BY dot_server, dot_counter"
        )
        for server, counter, data in rows:
            try:
                entry = codec.decode_entry(data)
            except RemoteProtocolError as exc:
                raise StoreError(
                    f"{self.path}: entry {server}.{counter} is corrupt: {exc}"
                ) from exc
            if (entry.dot.server, entry.dot.counter) != (server, counter):
                raise StoreError(f"{self.path}: row {server}.{counter} holds entry {entry.dot}")
            entries.append(entry)
        meta = {key: value for key, value in self._db.execute("SELECT key, value FROM meta")}
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
    def write(self, effect: Persist) -> None:
        """Stage a Persist into the current batch (durable at the next ``commit``)."""
        for entry in effect.entries:
            self._entries.append((entry.dot.server, entry.dot.counter, codec.encode_entry(entry)))
        self._meta.update(effect.meta)

    def set_meta(self, key: str, value: int) -> None:
        """Stage one meta value (durable at the next ``commit``)."""
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
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._entries:
                db.executemany(
                    "INSERT OR IGNORE INTO entries (dot_server, dot_counter, data)"
                    " VALUES (?, ?, ?)",
                    self._entries,
                )
            if self._meta:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    list(self._meta.items()),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._entries.clear()
        self._meta.clear()

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
