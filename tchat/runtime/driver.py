"""NodeDriver: runs a sans-IO core node on the event loop and carries out its effects.

Longer than 400 lines: the inputs, the effect queue, the group-commit pipeline and the
timer are one ordering (nothing a step sends goes out before what it made durable, and a
failed step or commit stops everything after it), which reads in one class. The commit
thread itself is store.CommitThread, and the sockets are transport.py's."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from tchat.core.effects import (
    Broadcast,
    Deliver,
    Effect,
    JoinGroup,
    LeaderChanged,
    LeaveGroup,
    LogEvent,
    Multicast,
    Persist,
    Send,
    Stopped,
)
from tchat.core.messages import Message
from tchat.core.redact import redacted
from tchat.runtime import discovery, multicast
from tchat.runtime.multicast import MulticastGroups
from tchat.runtime.store import CommitThread
from tchat.runtime.transport import Transport

logger = logging.getLogger(__name__)
node_log = logging.getLogger("tchat.node")
# every frame in and out, at DEBUG: their shape, never the text users wrote (redacted)
frame_log = logging.getLogger("tchat.frames")


class CoreNode(Protocol):
    def start(self, now: float) -> list[Effect]: ...
    def handle(self, message: Message, src_addr: str, now: float) -> list[Effect]: ...
    def tick(self, now: float) -> list[Effect]: ...
    def flush(self, now: float) -> list[Effect]: ...
    def next_deadline(self) -> float | None: ...


class Store(Protocol):
    def write(self, effect: Persist) -> None: ...
    def commit(self) -> None: ...


StoreCheck = Callable[[Persist], None]  # raises ValueError for a Persist it must not keep


class Settling(Protocol):
    reads: int  # entries read from disk so far (a slow step says how many were its own)

    def settle(self, persists: list[Persist]) -> None: ...


EffectListener = Callable[[Effect], None]
SLOW_STEP = 0.05  # seconds: one core step longer than this is logged
SLOW_ITERATION = 0.1  # seconds: all steps + effects of one loop iteration
SLOW_COMMIT = 0.1  # seconds: one store commit
INLINE_COMMIT = 0.001  # seconds: commits faster than this on average run inline
COMMIT_AVG_WEIGHT = 0.2  # of the newest commit in the moving average


class NodeDriver:
    """Feeds a core node frames and time; group-commits its Persists, then sends.

    Frames handled in one loop iteration queue their effects; one callback scheduled with
    call_soon (it runs after every I/O callback of the iteration) flushes the node and
    hands the iteration's effects to the commit pipeline:

    - Persists go to the store's commit thread (a CommitThread), one commit in flight at a
      time. While it is in flight the loop keeps handling frames, and the Persists of every
      following iteration wait in ``_pending`` to share the next commit, which starts as
      soon as the previous one returns: the group grows with the load.
    - The other effects of an iteration are held, in order, in ``_held`` until every
      commit queued before them has returned, then carried out; an iteration without
      Persists behind an in-flight commit waits its turn too, so nothing overtakes.
      When nothing is in flight they go out at once, as they always did.
    - While a commit is in flight the node is neither flushed nor ticked (what either would
      send must wait for that commit anyway): the commit's return does it, so the frames
      handled meanwhile leave as one replication batch.

    - While commits are fast (``inline_commit``: their moving average under 1 ms, as on
      a disk with a write cache), a commit with none in flight runs inline on the loop,
      as before the pipeline: handing it to the thread and back costs more CPU (two
      threads passing the GIL) than it would wait. A slow one moves the next to the thread.

    Persists moved before Sends that preceded them are harmless: being durable early
    never breaks "durable before any later Send". A failed commit is fail-stop: nothing
    held or queued after it is ever carried out.
    """

    def __init__(
        self,
        node: CoreNode,
        transport: Transport,
        store: Store | None = None,
        groups: MulticastGroups | None = None,
        inline_commit: float = INLINE_COMMIT,
        archive: Settling | None = None,
    ) -> None:
        self.node = node
        self.transport = transport
        self.store = store
        # The log archive reading the store: told which entries each returned commit made
        # durable (until then it answers for them from memory).
        self.archive = archive
        self._settling: dict[int, list[Persist]] = {}  # commit number -> its Persists
        self.groups = groups
        self.loop = asyncio.get_running_loop()
        self.listeners: list[EffectListener] = []
        self.stopped: asyncio.Future[str] = self.loop.create_future()
        self.errors = 0
        self.refused = 0  # steps refused because they would have stored an unstorable value
        self._check: StoreCheck | None = getattr(store, "check", None)
        self.failure: str | None = None  # set when the node had to stop (store or core failure)
        self.commits = 0
        self.store_busy = False  # close() could not stop the commit thread: keep the store
        self._queued: list[Effect] = []
        self._pending: list[Persist] = []  # for the next commit
        self._held: deque[tuple[int, list[Effect]]] = deque()  # (commit needed, effects)
        self._submitted = 0  # commits handed to the commit thread, numbered from 1
        self._committed = 0  # the last one that returned
        self._in_flight = False
        self._flush_deferred = False  # the node was not flushed while a commit was in flight
        self._committer: CommitThread | None = None
        self._inline_commit = inline_commit
        self._commit_avg = 0.0  # moving average of a commit's seconds
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._trace = frame_log.isEnabledFor(logging.DEBUG)
        self._busy = 0.0  # seconds spent in core steps since the last flush
        self._steps = 0
        self._kinds: dict[str, int] = {}  # frames handled since the last flush, by type

    # -- inputs -------------------------------------------------------------------
    def start(self) -> None:
        self._run(self.node.start, self.loop.time())

    def on_message(self, message: Message, src: str) -> None:
        if self._closed:
            return
        if self._trace:
            frame_log.debug("<- %s %s", src, redacted(message))
        kind = type(message).__name__
        self._kinds[kind] = self._kinds.get(kind, 0) + 1
        self._run(self.node.handle, message, src, self.loop.time())

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a node command (submit, stop...) whose result is or ends with a list of effects."""
        try:
            result = fn(*args)
        except Exception as exc:
            self._core_failed(fn, args, exc)
            raise
        effects = result[-1] if isinstance(result, tuple) else result
        self._queue(effects if self._storable(effects, fn, args) else [])
        return result

    def close(self) -> None:
        """Stop; the commit in flight finishes and its thread is joined before this returns.

        Persists still waiting for a commit are committed here (durable early is harmless);
        effects held behind them are dropped, as everything is once the driver is closed.
        """
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        committer, self._committer = self._committer, None
        if committer is None:
            return
        if not committer.close():
            self.store_busy = True
            return
        pending, self._pending = self._pending, []
        if pending and self.failure is None:
            try:
                self._commit_job(pending)()
            except Exception:
                logger.exception("committing the last %d persists at close failed", len(pending))
        self._held.clear()

    # -- internals ----------------------------------------------------------------
    def _run(self, fn: Callable[..., list[Effect]], *args: Any) -> None:
        started = time.perf_counter()
        reads = self.archive.reads if self.archive is not None else 0
        try:
            effects = fn(*args)
        except Exception as exc:
            self._core_failed(fn, args, exc)
            return
        if not self._storable(effects, fn, args):
            return
        elapsed = time.perf_counter() - started
        self._busy += elapsed
        self._steps += 1
        if elapsed > SLOW_STEP:  # a long step delays every timer: say which one it was
            what = type(args[0]).__name__ if len(args) > 1 else ""
            read = self.archive.reads - reads if self.archive is not None else 0
            logger.warning(
                "slow core step: %s %s took %.0f ms, %d effects%s",
                getattr(fn, "__name__", fn),
                what,
                elapsed * 1000,
                len(effects),
                f", {read} log entries read from disk" if read else "",
            )
        self._queue(effects)

    def _queue(self, effects: list[Effect]) -> None:
        if effects:
            self._queued.extend(effects)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        flush = getattr(self.node, "flush", None)
        if flush is not None:
            if self._in_flight:
                self._flush_deferred = True  # flushed when the commit returns
            else:
                self._run_into_queue(flush, self.loop.time())
                if self._closed:  # the flush raised: fail-stop, nothing goes out
                    return
        effects, self._queued = self._queued, []
        started = time.perf_counter()
        self._execute(effects)
        self._arm_timer()
        busy = self._busy + time.perf_counter() - started
        if busy > SLOW_ITERATION:
            top = sorted(self._kinds.items(), key=lambda kv: -kv[1])[:4]
            logger.warning(
                "busy loop iteration: %d core steps (%s) + %d effects took %.0f ms",
                self._steps,
                ", ".join(f"{k} x{n}" for k, n in top),
                len(effects),
                busy * 1000,
            )
        self._busy = 0.0
        self._steps = 0
        self._kinds.clear()

    def _run_into_queue(self, fn: Callable[..., list[Effect]], *args: Any) -> None:
        try:
            effects = fn(*args)
        except Exception as exc:
            self._core_failed(fn, args, exc)
            return
        if self._storable(effects, fn, args):
            self._queued.extend(effects)

    def _core_failed(self, fn: Callable[..., Any], args: tuple[Any, ...], exc: Exception) -> None:
        """Fail-stop: a step that raised left the node half-changed, diverged from its own
        log. It must not serve on: stop without carrying out anything more; the supervisor
        restarts the process from durable state. The log names the step and its input by
        message type and sender, and the trace by its frames and the exception's type: its
        text may quote a message's, and a message's text is no log's business."""
        self.errors += 1
        what = getattr(fn, "__name__", str(fn))
        if len(args) > 1 and isinstance(args[0], Message):
            what = f"{what} {type(args[0]).__name__} from {args[1]}"
        trace = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
        logger.critical(
            "core node raised %s in %s; stopping the node\n%s", type(exc).__name__, what, trace
        )
        self._fail(f"core step {what} raised {type(exc).__name__}")

    def _storable(
        self, effects: list[Effect], fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> bool:
        """Whether the store may keep every Persist of one step; if not, the step (the
        frame that caused it) is refused whole: none of its effects is stored or carried
        out, and the node goes on. A commit that fails is fail-stop (a later Send may
        depend on it), so what the store would refuse is found here, per step, where the
        frame is known: a bad value fails its frame, never the node (issue 13)."""
        check = self._check
        if check is None:
            return True
        for effect in effects:
            if type(effect) is not Persist:
                continue
            try:
                check(effect)
            except Exception as exc:  # ValueError; anything else is a check bug: same answer
                self.refused += 1
                what = getattr(fn, "__name__", str(fn))
                if len(args) > 1 and isinstance(args[0], Message):
                    what = f"{type(args[0]).__name__} from {args[1]}"
                logger.error(
                    "refused %s: its step would store %s; none of its %d effects carried "
                    "out [%d so far]",
                    what,
                    exc,
                    len(effects),
                    self.refused,
                )
                return False
        return True

    def _execute(self, effects: list[Effect]) -> None:
        if self.store is None:  # a client: nothing to make durable
            self._carry_out_all(effects)
            return
        others = [e for e in effects if not isinstance(e, Persist)]
        if len(others) < len(effects):
            self._pending.extend(e for e in effects if isinstance(e, Persist))
            if not self._in_flight:
                self._submit()
                if self._closed:  # the batch could not even be prepared: fail-stop
                    return
        # These effects wait for every commit that holds a Persist queued before them:
        # the one carrying this iteration's Persists, or the one in flight, or none.
        needed = self._submitted + (1 if self._pending else 0)
        if needed <= self._committed:
            self._carry_out_all(others)  # nothing in flight: as if the commit was inline
        elif others:
            if self._held and self._held[-1][0] == needed:
                self._held[-1][1].extend(others)  # same commit, same turn: keep one list
            else:
                self._held.append((needed, others))

    def _submit(self) -> None:
        """Start the next commit with every Persist queued since the last one (group commit)."""
        persists, self._pending = self._pending, []
        try:
            job = self._commit_job(persists)
        except Exception as exc:  # an entry that cannot be encoded cannot be made durable
            self._fail(exc)
            return
        self._submitted += 1
        if self._commit_avg < self._inline_commit:
            started = time.perf_counter()
            try:
                job()
            except Exception as exc:
                self._fail(exc)
                return
            self._note_commit(time.perf_counter() - started)
            self._committed = self._submitted
            if self.archive is not None:
                self.archive.settle(persists)
            return
        if self.archive is not None:
            self._settling[self._submitted] = persists
        if self._committer is None:
            self._committer = CommitThread(self.loop, self._on_committed)
        self._in_flight = True
        self._committer.submit(self._submitted, job)

    def _note_commit(self, elapsed: float) -> None:
        self.commits += 1
        self._commit_avg += (elapsed - self._commit_avg) * COMMIT_AVG_WEIGHT
        if elapsed > SLOW_COMMIT:
            logger.warning("slow store commit: %.0f ms", elapsed * 1000)

    def _commit_job(self, persists: list[Persist]) -> Callable[[], None]:
        store = self.store
        assert store is not None
        prepare = getattr(store, "prepare", None)
        commit_batch = getattr(store, "commit_batch", None)
        if prepare is not None and commit_batch is not None:
            batch = prepare(persists)  # encode here: the commit thread only does SQL
            return lambda: commit_batch(batch)

        def write_and_commit() -> None:  # a store with only the synchronous API
            for persist in persists:
                store.write(persist)
            store.commit()

        return write_and_commit

    def _on_committed(self, seq: int, error: BaseException | None, elapsed: float) -> None:
        self._in_flight = False
        if error is not None:
            self._fail(error)
            return
        self._committed = seq
        self._note_commit(elapsed)
        settled = self._settling.pop(seq, None)
        if settled is not None and self.archive is not None:
            self.archive.settle(settled)
        if self._pending and not self._closed:
            self._submit()  # the next fsync overlaps with the sends released below
        # (the next commit, started just above, may have run inline and returned too)
        while self._held and self._held[0][0] <= self._committed and not self._closed:
            self._carry_out_all(self._held.popleft()[1])
        if self._closed:
            return
        # Flushes and timers wait while a commit is in flight: what they would send waits
        # for it anyway, and this way the frames handled meanwhile share one replication
        # batch, as they did when the loop sat blocked in the commit.
        now = self.loop.time()
        try:
            due = self.node.next_deadline()
        except Exception:
            due = now
        if due is not None and due <= now:
            self._run(self.node.tick, now)  # a leader's tick flushes too
        elif self._flush_deferred:
            self._run_into_queue(self.node.flush, now)  # after the effects queued before it
            self._queue([])
        else:
            self._arm_timer()
        self._flush_deferred = False  # whatever was queued is carried out (or held) by _flush

    def _fail(self, error: BaseException | str) -> None:
        # Fail-stop: a server that cannot make entries durable must not send the
        # acknowledgements that depend on them, nor anything after.
        if isinstance(error, BaseException):
            logger.critical("store failed, stopping this node without sending: %s", error)
            error = f"store failed: {error}"
        self.failure = error
        self._closed = True
        self._queued.clear()
        self._held.clear()
        self._pending.clear()
        if not self.stopped.done():
            self.stopped.set_result(self.failure)

    def _carry_out_all(self, effects: list[Effect]) -> None:
        for effect in effects:
            try:
                self._carry_out(effect)
            except Exception:
                self.errors += 1
                logger.exception("carrying out %s failed", type(effect).__name__)

    def _carry_out(self, effect: Effect) -> None:
        if type(effect) is Deliver:  # a client's commonest effect: skip the match's tests
            self._notify(effect)
            return
        match effect:
            case Send(addr=addr, message=message):
                if self._trace:
                    frame_log.debug("-> %s %s", addr, redacted(message))
                self.transport.send(addr, message)
            case Broadcast(message=message):
                discovery.broadcast(self.transport, message)
            case Multicast(group=group, message=message):
                multicast.send(self.transport, group, message)
            case JoinGroup(group=group):
                if self.groups is not None:
                    self.groups.join(group)
            case LeaveGroup(group=group):
                if self.groups is not None:
                    self.groups.leave(group)
            case Persist():
                pass  # written by the commit pipeline
            case LogEvent(kind=kind, text=text, fields=fields):
                extra = " ".join(f"{k}={v}" for k, v in fields)
                node_log.info("[%s] %s%s", kind, text, f" ({extra})" if extra else "")
                self._notify(effect)
            case LeaderChanged(leader_id=leader_id, addr=addr, epoch=epoch):
                node_log.info("leader is now %s at %s (epoch %s)", leader_id, addr, epoch)
                self._notify(effect)
            case Stopped(reason=reason):
                node_log.info("node stopped: %s", reason)
                self._notify(effect)
                if not self.stopped.done():
                    self.stopped.set_result(reason)
            case Deliver():
                self._notify(effect)
            case _:
                logger.warning("unknown effect %s", redacted(effect))

    def _notify(self, effect: Effect) -> None:
        for listener in list(self.listeners):
            try:
                listener(effect)
            except Exception:
                logger.exception("effect listener failed")

    def _arm_timer(self) -> None:
        if self._in_flight:  # the commit's return ticks the node if a deadline passed
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = None
            return
        try:
            deadline = self.node.next_deadline()
        except Exception:
            self.errors += 1
            logger.exception("core node raised in next_deadline")
            deadline = self.loop.time() + 0.05
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self._run(self.node.tick, self.loop.time())
