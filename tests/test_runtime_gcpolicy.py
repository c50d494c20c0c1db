"""The server's collector policy: survivors frozen, and cycles that died frozen still freed."""

from __future__ import annotations

import asyncio
import gc
import weakref

from tchat.runtime.gcpolicy import GcPolicy


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_survivors_are_frozen_and_a_cycle_that_died_frozen_is_freed_later() -> None:
    gc.unfreeze()
    policy = GcPolicy(freeze_every=0.05, unfreeze_every=0.5)
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    dead = weakref.ref(a)
    task = asyncio.get_running_loop().create_task(policy.run())
    try:
        await wait_until(lambda: gc.get_freeze_count() > 0)
        del a, b  # it dies while frozen: young collections cannot see it
        gc.collect(1)
        assert dead() is not None
        await wait_until(lambda: dead() is None)  # the periodic full collection found it
        assert policy.full_collections >= 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gc.unfreeze()
    assert policy._on_collection not in gc.callbacks


async def test_what_the_server_built_to_start_is_frozen_at_once() -> None:
    """A restarted server loads its whole log first: that must not wait a period unfrozen,
    or the collector's first full passes walk all of it."""
    gc.unfreeze()
    loaded = [Node() for _ in range(1000)]
    policy = GcPolicy(freeze_every=3600.0)
    task = asyncio.get_running_loop().create_task(policy.run())
    try:
        await asyncio.sleep(0)  # the policy runs up to its first wait
        assert gc.get_freeze_count() >= len(loaded)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gc.unfreeze()
