"""Microbench of a re-fold over a log whose window holds operations recorded twice (a client
resending to both sides of a partition, merged back), over the runtime's SQLite archive.

Runs against whichever tree is on PYTHONPATH, so the same script compares trees:
``PYTHONPATH=<tree> python scripts/copied_fold_bench.py --copies 1000 5000``. Prints the
CPU time of one ``fold_from_floor`` and of one ``is_duplicate`` per window entry.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tchat.core.config import ServerConfig
from tchat.core.effects import Persist
from tchat.core.messages import Chat, Dot, Entry, Origin
from tchat.core.server import ServerNode
from tchat.core.vclock import EMPTY_CLOCK
from tchat.runtime.archive import SqliteArchive
from tchat.runtime.store import DB_NAME, SqliteStore

TS = 1_700_000_000.0


def sides(copies: int, plain: int) -> tuple[list[Entry], list[Entry]]:
    """Side 1 sequences ``plain`` operations then ``copies`` more; side 2, concurrently,
    the same ``copies`` ones (resent to it)."""
    out: dict[int, list[Entry]] = {1: [], 2: []}
    for side, ops in ((1, range(1, plain + copies + 1)), (2, range(plain + 1, plain + copies + 1))):
        clock = EMPTY_CLOCK
        for cmid in ops:
            clock = clock.increment(side)
            body = Chat("u", "r", None, f"t{cmid}", False, EMPTY_CLOCK)
            entry = Entry(Dot(side, clock[side]), clock, TS, Origin("c", cmid), body)
            out[side].append(entry)
    return out[1], out[2]


def run(copies: int, plain: int, repeat: int) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        first, second = sides(copies, plain)
        with SqliteStore(Path(tmp)) as store:
            store.commit_batch(store.prepare([Persist(tuple(first + second))]))
        archive = SqliteArchive(Path(tmp) / DB_NAME)
        try:
            node = ServerNode(ServerConfig(1, "s1"), archive=archive)  # a restart: restore
            window = node.log.window()
            assert sum(node.log.is_duplicate(e) for e in window) == copies
            fold = dup = float("inf")
            for _ in range(repeat):
                start = time.thread_time()
                node.fold_from_floor(lambda entry: True)
                fold = min(fold, time.thread_time() - start)
                start = time.thread_time()
                for entry in window:
                    node.log.is_duplicate(entry)
                dup = min(dup, time.thread_time() - start)
            return len(window), fold, dup
        finally:
            archive.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, nargs="+", default=[0, 1000, 5000])
    parser.add_argument("--plain", type=int, default=5000, help="operations recorded once")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for copies in args.copies:
        window, fold, dup = run(copies, args.plain, args.repeat)
        print(
            f"copies={copies:6d} log={args.plain + 2 * copies:6d} window={window:6d}"
            f"  fold_from_floor {fold * 1e3:8.1f} ms  is_duplicate x window {dup * 1e3:8.1f} ms"
        )


if __name__ == "__main__":
    main()
