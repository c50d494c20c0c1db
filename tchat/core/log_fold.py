"""A server's fold of its replicated log, kept up as the log changes: the state, the fold of
the entries below the log's hot window, and copies of that to re-fold from (sans-IO)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from tchat.core.archive import Key
from tchat.core.config import ServerConfig
from tchat.core.fold import ClusterState
from tchat.core.log import ReplicatedLog
from tchat.core.messages import Entry

# Copies of the fold below the window kept for re-folds (each as big as the state: users,
# rooms, memberships), one every ServerConfig.fold_snapshot_every entries.
FOLD_SNAPSHOTS = 4


class LogFold:
    """The fold of ``log``: ``state`` is the fold of every entry, kept up entry by entry, and
    redone from the fold below the window when an entry lands mid-log."""

    def __init__(self, log: ReplicatedLog, config: ServerConfig) -> None:
        self.log = log
        self.config = config
        self.state = self.new_state()
        # The fold of the entries below the log's hot window, kept up as they leave it: a
        # merge that lands inside the window re-folds from a copy of it, not from entry 1.
        self.floor_state = self.new_state()
        self.snapshots: list[tuple[Key, ClusterState]] = []  # oldest first
        self.since_snapshot = 0  # entries folded below the window since the last one
        log.on_evict = self.fold_below_window

    def new_state(self) -> ClusterState:
        c = self.config
        return ClusterState(c.multicast_base, c.multicast_count, c.multicast_port)

    def merge(self, entries: Iterable[Entry]) -> list[Entry]:
        """Add entries from elsewhere; refold if any landed mid-log. Returns the new ones."""
        added: list[Entry] = []
        refold = False
        for entry in entries:
            where = self.log.add(entry)
            if where is None:
                continue
            added.append(entry)
            if where and not refold:
                if not self.log.is_duplicate(entry):
                    self.state.apply(entry)
            else:
                refold = True
        if refold:
            clashes = self.state.clashes
            self.state = self.fold_from_floor(lambda entry: True)
            self.state.clashes = clashes + [c for c in self.state.clashes if c not in clashes]
        return added

    def fold_below_window(self, entries: list[Entry]) -> None:
        for entry in entries:
            if not self.log.is_duplicate(entry):
                self.floor_state.apply(entry)
        self.since_snapshot += len(entries)
        floor = self.log.floor
        if self.since_snapshot >= self.config.fold_snapshot_every and floor is not None:
            self.snapshot(floor, self.floor_state)

    def snapshot(self, key: Key, state: ClusterState) -> None:
        """Keep a copy of the fold of every entry below ``key``: a merge that lands below
        the window re-folds from the latest one below it, not from the first entry."""
        self.since_snapshot = 0
        self.snapshots.append((key, copy.deepcopy(state)))
        del self.snapshots[:-FOLD_SNAPSHOTS]

    def fold_from_floor(self, wanted: Callable[[Entry], bool]) -> ClusterState:
        """The fold of the whole log, skipping window entries ``wanted`` refuses: a copy of
        the fold below the window, then the window. If an entry landed below the window,
        the fold below it is redone first: from the latest snapshot below that entry, with
        the rest read from the archive in pages."""
        log = self.log
        if log.cold_from is not None:
            landed, log.cold_from = log.cold_from, None
            # A snapshot at key k folds the entries below k: still right if nothing landed
            # below k.
            self.snapshots = [(k, s) for k, s in self.snapshots if k <= landed]
            start: Key | None = None
            self.floor_state = self.new_state()
            if self.snapshots:
                start, base = self.snapshots[-1]
                self.floor_state = copy.deepcopy(base)
            self.since_snapshot = 0
            for entry in log.below_floor(start):
                if self.since_snapshot >= self.config.fold_snapshot_every:
                    self.snapshot(entry.key, self.floor_state)
                self.since_snapshot += 1
                if not log.is_duplicate(entry):
                    self.floor_state.apply(entry)
        state = copy.deepcopy(self.floor_state)
        for entry in log.window():
            if wanted(entry) and not log.is_duplicate(entry):
                state.apply(entry)
        return state
