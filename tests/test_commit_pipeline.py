"""NodeDriver's commit pipeline: Sends wait for their Persist's commit, in order, fail-stop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_store import make_entry

from tchat.core.effects import Effect, Persist, Send
from tchat.runtime.driver import NodeDriver
from tchat.runtime.store import DB_NAME, Batch, SqliteStore

TIMEOUT = 5.0


@dataclass(frozen=True)
class Frame:
    """A stand-in wire message: ``durable`` frames make the fake node persist an entry."""

    n: int
    durable: bool = True
    encodable: bool = True


class PersistThenSend:
    """A core node that answers frame n with [Persist(entry n), Send(frame n)]."""

    def start(self, now: float) -> list[Effect]:
        return []

    def handle(self, message: Frame, src: str, now: float) -> list[Effect]:
        send = Send("127.0.0.1:9", message)  # type: ignore[arg-type]
        if not message.durable:
            return [send]
        entry = make_entry(message.n) if message.encodable else object()
        return [Persist((entry,)), send]  # type: ignore[arg-type]

    def tick(self, now: float) -> list[Effect]:
        return []

    def flush(self, now: float) -> list[Effect]:
        return []

    def next_deadline(self) -> float | None:
        return None


class BatchingNode(PersistThenSend):
    """Like a leader: handle persists an entry, flush ships every entry since the last one."""

    def __init__(self) -> None:
        self.outbox: list[int] = []
        self.batches: list[list[int]] = []

    def handle(self, message: Frame, src: str, now: float) -> list[Effect]:
        self.outbox.append(message.n)
        return [Persist((make_entry(message.n),))]

    def flush(self, now: float) -> list[Effect]:
        if not self.outbox:
            return []
        self.batches.append(self.outbox)
        self.outbox = []
        return [Send("127.0.0.1:9", Frame(n)) for n in self.batches[-1]]  # type: ignore[misc]


class CheckingTransport:
    """Records every Send and checks, from another connection, that its entry is committed."""

    def __init__(self, db_path: Path) -> None:
        self.sent: list[int] = []
        self.early: list[int] = []  # frames sent before their entry was committed
        self._reader = sqlite3.connect(db_path)

    def send(self, addr: str, message: Frame) -> None:
        if message.durable:
            row = self._reader.execute(
                "SELECT 1 FROM entries WHERE dot_counter = ?", (message.n,)
            ).fetchone()
            if row is None:
                self.early.append(message.n)
        self.sent.append(message.n)

    def close(self) -> None:
        self._reader.close()


class GatedStore(SqliteStore):
    """Each commit waits for a permit from the test, so a commit can be held in flight."""

    def __init__(self, path: Path, fail_at: int = 0) -> None:
        super().__init__(path)
        self.permits = threading.Semaphore(0)
        self.sizes: list[int] = []  # entries per commit, in commit order
        self.fail_at = fail_at  # the commit (numbered from 1) that raises, 0 for none

    def commit_batch(self, batch: Batch) -> None:
        assert self.permits.acquire(timeout=TIMEOUT), "test never released the commit"
        self.sizes.append(len(batch.rows))
        if len(self.sizes) == self.fail_at:
            raise OSError("disk full")
        super().commit_batch(batch)


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def next_iterations(count: int = 3) -> None:
    """Let the loop run a few iterations (the driver flushes once per iteration)."""
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.fixture
def gated(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = GatedStore(tmp_path)
    transport = CheckingTransport(tmp_path / DB_NAME)
    yield store, transport
    transport.close()
    store.close()


async def test_sends_wait_for_their_commit_and_later_persists_share_the_next(gated) -> None:  # type: ignore[no-untyped-def]
    store, transport = gated
    driver = NodeDriver(PersistThenSend(), transport, store, inline_commit=0.0)  # type: ignore[arg-type]
    try:
        driver.on_message(Frame(1), "c:1")
        await next_iterations()
        assert transport.sent == []  # commit 1 is in flight
        # Frames of three later iterations, one without a Persist: all wait their turn.
        for frame in (Frame(2), Frame(3), Frame(100, durable=False), Frame(4)):
            driver.on_message(frame, "c:1")
            await next_iterations()
        assert transport.sent == []
        store.permits.release()  # commit 1 returns
        await wait_until(lambda: transport.sent == [1])
        await next_iterations()
        assert transport.sent == [1]  # the rest needs commit 2, now in flight
        store.permits.release()
        await wait_until(lambda: len(transport.sent) == 5)
        assert transport.sent == [1, 2, 3, 100, 4]
        assert transport.early == []
        assert store.sizes == [1, 3]  # the three later Persists went in one commit
        assert driver.commits == 2
        # Idle again: a frame without a Persist goes out in its own iteration.
        driver.on_message(Frame(101, durable=False), "c:1")
        await next_iterations(1)
        assert transport.sent[-1] == 101
    finally:
        driver.close()


async def test_frames_handled_during_a_commit_share_one_flush(gated) -> None:  # type: ignore[no-untyped-def]
    store, transport = gated
    node = BatchingNode()
    driver = NodeDriver(node, transport, store, inline_commit=0.0)  # type: ignore[arg-type]
    try:
        driver.on_message(Frame(1), "c:1")
        await next_iterations()
        for n in (2, 3, 4):  # three iterations while commit 1 is in flight
            driver.on_message(Frame(n), "c:1")
            await next_iterations()
        assert node.batches == [[1]]
        store.permits.release()
        await wait_until(lambda: transport.sent == [1])
        assert node.batches == [[1], [2, 3, 4]]  # flushed once, when commit 1 returned
        store.permits.release()
        await wait_until(lambda: len(transport.sent) == 4)
        assert transport.sent == [1, 2, 3, 4] and transport.early == []
    finally:
        driver.close()


async def test_a_failed_commit_stops_everything_queued_after_it(gated) -> None:  # type: ignore[no-untyped-def]
    store, transport = gated
    store.fail_at = 2
    driver = NodeDriver(PersistThenSend(), transport, store, inline_commit=0.0)  # type: ignore[arg-type]
    try:
        driver.on_message(Frame(1), "c:1")
        await next_iterations()
        driver.on_message(Frame(2), "c:1")
        await next_iterations()
        driver.on_message(Frame(200, durable=False), "c:1")
        await next_iterations()
        store.permits.release()
        await wait_until(lambda: transport.sent == [1])
        store.permits.release()  # commit 2 (frame 2) fails
        reason = await asyncio.wait_for(asyncio.shield(driver.stopped), TIMEOUT)
        assert reason == "store failed: disk full" and driver.failure == reason
        driver.on_message(Frame(3, durable=False), "c:1")  # ignored once stopped
        await next_iterations()
        assert transport.sent == [1]
    finally:
        store.permits.release()
        driver.close()
    assert not driver.store_busy


class UnstorableNode(PersistThenSend):
    """Frame n persists entry n; frame 0 an entry whose counter the store cannot keep,
    frame 1 a term SQLite cannot hold, frame 2 something that is no entry at all."""

    def handle(self, message: Frame, src: str, now: float) -> list[Effect]:
        send = Send("127.0.0.1:9", message)  # type: ignore[arg-type]
        if message.n == 0:
            return [Persist((make_entry(2**60),)), send]
        if message.n == 1:
            return [Persist(meta=(("term", 2**63),)), send]
        if message.n == 2:
            return [Persist((object(),)), send]  # type: ignore[arg-type]
        return super().handle(message, src, now)


async def test_a_step_that_would_store_an_unstorable_value_fails_its_frame_only(gated) -> None:  # type: ignore[no-untyped-def]
    # Once, a term of 2**63 from one forged frame reached the commit, which raised:
    # fail-stop took the whole node down, on every server at once.
    store, transport = gated
    driver = NodeDriver(UnstorableNode(), transport, store, inline_commit=0.0)  # type: ignore[arg-type]
    try:
        for n in (0, 1, 2, 3):
            driver.on_message(Frame(n), "c:1")
        store.permits.release()
        await wait_until(lambda: transport.sent == [3])
        assert transport.early == []
        assert not driver.stopped.done() and store.sizes == [1]
        assert driver.refused == 3
    finally:
        store.permits.release(4)
        driver.close()


async def test_close_drains_the_pipeline_and_joins_its_thread(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    transport = CheckingTransport(tmp_path / DB_NAME)
    driver = NodeDriver(PersistThenSend(), transport, store, inline_commit=0.0)  # type: ignore[arg-type]
    try:
        driver.on_message(Frame(1), "c:1")
        await next_iterations()
        driver.on_message(Frame(2), "c:1")  # waits for the next commit
        await next_iterations()
        committer = driver._committer
        assert committer is not None and committer.alive
        # close() blocks until the commit in flight returns: let it return a bit later.
        threading.Timer(0.05, lambda: store.permits.release(2)).start()
        driver.close()
        assert not committer.alive and not driver.store_busy
        assert transport.sent == []  # closed: nothing held is sent any more
        assert store.sizes == [1, 1]  # ...but the pending Persist was committed
    finally:
        transport.close()
        store.close()
    with SqliteStore(tmp_path) as reopened:
        assert sorted(e.dot.counter for e in reopened.load().entries) == [1, 2]


async def test_many_frames_keep_order_and_commit_before_send(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    transport = CheckingTransport(tmp_path / DB_NAME)
    driver = NodeDriver(PersistThenSend(), transport, store, inline_commit=0.0)  # type: ignore[arg-type]
    try:
        frames = 400
        for n in range(1, frames + 1):
            driver.on_message(Frame(n, durable=n % 7 != 0), "c:1")
            if n % 3 == 0:
                await asyncio.sleep(0)  # spread frames over many loop iterations
        await wait_until(lambda: len(transport.sent) == frames)
        assert transport.sent == list(range(1, frames + 1))
        assert transport.early == []
        assert driver.commits < frames // 3  # commits were grouped across iterations
    finally:
        driver.close()
        transport.close()
        store.close()


class SlowStore(SqliteStore):
    """Commits take ``delay`` seconds once ``slow`` is set: a disk without a write cache."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.slow = False
        self.threads: set[str] = set()  # where commits ran

    def commit_batch(self, batch: Batch) -> None:
        self.threads.add(threading.current_thread().name)
        if self.slow:
            time.sleep(0.05)  # the disk's fsync, not a wait for a condition
        super().commit_batch(batch)


async def test_fast_commits_run_inline_and_a_slow_disk_moves_them_to_the_thread(
    tmp_path: Path,
) -> None:
    store = SlowStore(tmp_path)
    transport = CheckingTransport(tmp_path / DB_NAME)
    # The line between fast and slow at 10 ms rather than the daemons' 1 ms: a real SQLite
    # commit on a loaded CI machine can average a few ms, a slow disk here takes 50.
    driver = NodeDriver(
        PersistThenSend(),
        transport,  # type: ignore[arg-type]
        store,
        inline_commit=0.01,
    )
    main = threading.current_thread().name
    try:
        for n in range(1, 21):  # one frame at a time: nothing is ever in flight
            driver.on_message(Frame(n), "c:1")
            await wait_until(lambda n=n: len(transport.sent) == n)  # type: ignore[misc]
        assert store.threads == {main}  # on the loop, as before the pipeline
        store.slow = True
        for n in range(21, 41):
            driver.on_message(Frame(n), "c:1")
            await wait_until(lambda n=n: len(transport.sent) == n)  # type: ignore[misc]
        assert len(store.threads) == 2  # slow commits moved to the commit thread
        assert transport.sent == list(range(1, 41))
        assert transport.early == []
    finally:
        driver.close()
        transport.close()
        store.close()
