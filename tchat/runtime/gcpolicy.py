"""Garbage collection in a server process: no full-heap pause that looks like a dead leader.

CPython's collector walks every tracked object of the oldest generation in a full
collection. A leader with 10,000 sessions holds a few hundred thousand of them, and while
clients log in (the heap keeps growing) a full collection came every second or two and took
50-150 ms — half the backups' 250 ms leader timeout. The state a server keeps is long-lived
by nature, so every second whatever survived is frozen (``gc.freeze``): later collections
skip it, and the collector's own full passes (it still makes one about every second while
the log grows) only walk what the last second added. Frozen every 5 s, that was up to
300,000 objects at 12,000 msg/s, and each server paused 10-65 ms a second: with three
servers on a commit's path, those pauses were the commits' p99. Cyclic garbage that was
frozen while alive is only found when everything is looked at again, which happens once
every ``UNFREEZE_EVERY``: one full collection at a known time instead of many at random
ones. It is rare on purpose: with 240,000 messages in the log (a 10-minute fan-out run) it
took 657 ms, more than the backups' leader timeout; what it frees is logged, to show what
the freezing leaves behind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

FREEZE_EVERY = 1.0  # seconds between freezes of the survivors
UNFREEZE_EVERY = 6 * 3600.0  # seconds between full collections over everything
SLOW_COLLECTION = 0.05  # seconds: a collection this long is logged


class GcPolicy:
    """Freezes survivors periodically and logs slow collections; ``run`` until cancelled."""

    def __init__(
        self, freeze_every: float = FREEZE_EVERY, unfreeze_every: float = UNFREEZE_EVERY
    ) -> None:
        self.freeze_every = freeze_every
        self.unfreeze_every = unfreeze_every
        self.slowest = 0.0  # seconds, the longest collection seen
        self.full_collections = 0
        self._began = 0.0

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        self.slowest = max(self.slowest, took)
        if info.get("generation") == 2:
            self.full_collections += 1
        if took > SLOW_COLLECTION:
            logger.warning(
                "garbage collection of generation %s took %.0f ms (%d objects frozen)",
                info.get("generation"),
                took * 1000,
                gc.get_freeze_count(),
            )

    async def run(self) -> None:
        gc.callbacks.append(self._on_collection)
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        gc.collect(1)
        gc.freeze()  # what the server loaded and built to start (its log) lives on
        try:
            while True:
                await asyncio.sleep(self.freeze_every)
                if loop.time() - last_full >= self.unfreeze_every:
                    last_full = loop.time()
                    gc.unfreeze()
                    freed = gc.collect()  # once, over everything: cycles that died frozen
                    logger.info("full garbage collection freed %d objects", freed)
                else:
                    gc.collect(1)  # the young garbage goes now, not into the frozen set
                gc.freeze()
        finally:
            gc.callbacks.remove(self._on_collection)
