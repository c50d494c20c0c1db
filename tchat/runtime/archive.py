"""SqliteArchive: the log archive of a server, read from its SQLite store on the loop thread."""

from __future__ import annotations

import heapq
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from tchat.core.archive import Key
from tchat.core.effects import Persist
from tchat.core.messages import Chat, Dot, Entry, Origin
from tchat.runtime.store import decode_row

logger = logging.getLogger(__name__)

_COLUMNS = "dot_server, dot_counter, data"
_KEY = "(clock_sum, dot_server, dot_counter)"  # the log's order, as a row value
_ASC = "clock_sum, dot_server, dot_counter"
_DESC = "clock_sum DESC, dot_server DESC, dot_counter DESC"


class SqliteArchive:
    """A LogArchive over the store's database, with its own read-only connection.

    WAL lets it read beside the commit thread's writes: each query sees every commit that
    returned before it. An entry the log appended whose commit has not returned yet is
    *unsettled*: held here in memory and merged into every answer, until ``settle`` (the
    driver calls it when the commit carrying the entry returned). Unsettled entries are
    bounded by the commit pipeline, which the leader's admission gate bounds.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Autocommit: every query is its own read transaction, so it sees the last commit.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA query_only=ON")
        self._unsettled: dict[Dot, Entry] = {}
        self._unsettled_origins: dict[Origin, Entry] = {}
        row = self._db.execute("SELECT count(*) FROM entries").fetchone()
        self._count = int(row[0])
        self.reads = 0  # rows read from the database (for tests and the dashboard)

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._count

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    # -- the log's side ---------------------------------------------------------
    def append(self, entry: Entry) -> None:
        self._count += 1
        self._unsettled[entry.dot] = entry
        origin = entry.origin
        if origin is not None:
            known = self._unsettled_origins.get(origin)
            if known is None or entry.key < known.key:
                self._unsettled_origins[origin] = entry

    def settle(self, persists: Iterable[Persist]) -> None:
        """The commit carrying these Persists returned: their entries are in the database."""
        for persist in persists:
            for entry in persist.entries:
                held = self._unsettled.pop(entry.dot, None)
                # Another copy of the operation, if unsettled, is later in key order than
                # the stored one or is the one indexed here: either way the answer holds.
                origin = held.origin if held is not None else None
                if origin is not None and self._unsettled_origins.get(origin) is held:
                    del self._unsettled_origins[origin]

    def get(self, dot: Dot) -> Entry | None:
        entry = self._unsettled.get(dot)
        if entry is not None:
            return entry
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM entries WHERE dot_server = ? AND dot_counter = ?",
            (dot.server, dot.counter),
        )
        return rows[0] if rows else None

    def by_origin(self, origin: Origin) -> Entry | None:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM entries WHERE origin_client = ? AND origin_cmid = ?"
            f" ORDER BY {_ASC} LIMIT 1",
            (origin.client_id, origin.cmid),
        )
        found = rows[0] if rows else None
        held = self._unsettled_origins.get(origin)
        if held is not None and (found is None or held.key < found.key):
            return held
        return found

    def entries_from(self, key: Key | None, limit: int, chats: bool = False) -> list[Entry]:
        where = ["chat = 1"] if chats else []
        params: list[object] = []
        if key is not None:
            where.append(f"{_KEY} >= (?, ?, ?)")
            params.extend(key)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        stored = self._rows(
            f"SELECT {_COLUMNS} FROM entries{clause} ORDER BY {_ASC} LIMIT ?", (*params, limit)
        )
        if not self._unsettled:
            return stored
        held = sorted(
            (
                e
                for e in self._unsettled.values()
                if (key is None or e.key >= key) and (not chats or isinstance(e.body, Chat))
            ),
            key=lambda e: e.key,
        )[:limit]
        return self._merge(stored, held, limit, reverse=False)

    def chats_before(self, key: Key | None, limit: int) -> list[Entry]:
        params: list[object] = []
        clause = ""
        if key is not None:
            clause = f" AND {_KEY} < (?, ?, ?)"
            params.extend(key)
        stored = self._rows(
            f"SELECT {_COLUMNS} FROM entries WHERE chat = 1{clause} ORDER BY {_DESC} LIMIT ?",
            (*params, limit),
        )
        if not self._unsettled:
            return stored
        held = sorted(
            (
                e
                for e in self._unsettled.values()
                if isinstance(e.body, Chat) and (key is None or e.key < key)
            ),
            key=lambda e: e.key,
            reverse=True,
        )[:limit]
        return self._merge(stored, held, limit, reverse=True)

    # -- internals -------------------------------------------------------------------
    @staticmethod
    def _merge(stored: list[Entry], held: list[Entry], limit: int, reverse: bool) -> list[Entry]:
        """Two sorted lists as one, each entry once (a settled one may be in both)."""
        merged: list[Entry] = []
        seen: set[Dot] = set()
        for entry in heapq.merge(stored, held, key=lambda e: e.key, reverse=reverse):
            if entry.dot not in seen:
                seen.add(entry.dot)
                merged.append(entry)
                if len(merged) >= limit:
                    break
        return merged

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[Entry]:
        rows = self._db.execute(sql, params).fetchall()
        self.reads += len(rows)
        return [decode_row(self.path, server, counter, data) for server, counter, data in rows]
