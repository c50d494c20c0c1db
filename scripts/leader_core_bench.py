"""In-process microbench of a leader's CPU per committed room message (core + codec).

Runs against whichever tree is on PYTHONPATH (its tests/ helpers too), so the same script
compares trees: ``PYTHONPATH=<tree> python scripts/leader_core_bench.py``. A cluster of 3
core servers and 10 clients in one room on the tests' in-memory bus; each round every
client submits ``--burst`` chats, then the bus runs until all is delivered. Timed: the
leader's handle/tick/flush, decoding the frames it receives, encoding the frames it sends
(each message once, as the transport does) and the entries it persists (as the store does),
in CPU time of the thread (time.thread_time), so that other load on the machine matters less.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--burst", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parts", action="store_true", help="us/msg by step and message type")
    parser.add_argument("--cprofile", action="store_true", help="cProfile the leader's steps")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.cprofile else None
    tree = os.environ["PYTHONPATH"].split(os.pathsep)[0]
    sys.path.insert(0, os.path.join(tree, "tests"))
    from core_bus import Bus  # type: ignore[import-not-found]
    from test_core_nodes import leaders, settled  # type: ignore[import-not-found]

    from tchat.core import codec
    from tchat.core.client import ClientNode
    from tchat.core.effects import Persist
    from tchat.core.messages import JoinRoom, SendChat

    spent = [0.0]
    parts: dict[str, float] = {}

    def add(kind: str, seconds: float) -> None:
        spent[0] += seconds
        parts[kind] = parts.get(kind, 0.0) + seconds

    class TimedBus(Bus):  # type: ignore[misc]
        leader_addr = ""
        batching = False
        submits: list[tuple[str, Any]] = []
        encoded: set[int] = set()

        def _apply(self, src: str, effects: list[Any]) -> None:
            if src == self.leader_addr:
                start = time.thread_time()
                for effect in effects:
                    if isinstance(effect, Persist):
                        for entry in effect.entries:
                            codec.encode_entry(entry)
                add("store", time.thread_time() - start)
            super()._apply(src, effects)

        def _post(self, src: str, dst: str, message: Any) -> None:
            if src == self.leader_addr and id(message) not in self.encoded:
                start = time.thread_time()
                codec.encode(message)
                add("encode " + type(message).__name__, time.thread_time() - start)
                self.encoded.add(id(message))
            if dst == self.leader_addr:
                data = codec.encode(message)
                start = time.thread_time()
                message = codec.decode(data)
                add("decode " + type(message).__name__, time.thread_time() - start)
                if self.batching and type(message).__name__ == "Submit":
                    # handed to the leader together, as the daemon reads a burst in one
                    # loop iteration and flushes once after it
                    self.submits.append((src, message))
                    return
            super()._post(src, dst, message)

    results = []
    for rep in range(args.repeat):
        bus = TimedBus(seed=rep + 1)
        extra = {"hot_entries": 20_000, "fold_snapshot_every": 100_000}  # the daemon's defaults
        try:
            servers = [bus.add_server(i, **extra) for i in (1, 2, 3)]
        except TypeError:
            bus = TimedBus(seed=rep + 1)
            servers = [bus.add_server(i) for i in (1, 2, 3)]
        bus.run_until(lambda s=servers: settled(s), 5)
        (leader,) = leaders(servers)
        clients: list[ClientNode] = [bus.add_client(f"user{i}") for i in range(10)]
        bus.run_until(lambda cs=clients: all(c.state.name == "SERVING" for c in cs), 5)
        for client in clients:
            bus.submit(client, JoinRoom("r"))
        bus.run_until(
            lambda cs=clients: all("r" in c.rooms and len(c.rooms["r"].members) == 10 for c in cs),
            5,
        )
        handle, tick, flush = leader.handle, leader.tick, leader.flush

        def timed(fn: Any) -> Any:
            def run(*a: Any) -> Any:
                start = time.thread_time()
                if profiler is not None:
                    profiler.enable()
                try:
                    return fn(*a)
                finally:
                    if profiler is not None:
                        profiler.disable()
                    add(
                        fn.__name__
                        + (" " + type(a[0]).__name__ if fn.__name__ == "handle" else ""),
                        time.thread_time() - start,
                    )

            return run

        leader.handle, leader.tick, leader.flush = timed(handle), timed(tick), timed(flush)
        bus.leader_addr = leader.config.addr
        bus.batching = True
        committed0 = len(leader.log)
        # The bus keeps every message it carried: dropped each round, and what the setup
        # made is frozen, so the collector's passes cost what a daemon's (gcpolicy) would.
        bus.sent.clear()
        gc.collect()
        gc.freeze()
        gc.disable()  # the collector is the daemon's gcpolicy's business, not this bench's
        spent[0] = 0.0
        parts.clear()
        sent = 0
        for r in range(args.rounds):
            for client in clients:
                for b in range(args.burst):
                    bus.submit(client, SendChat("r", None, f"message {r} {b} from a client", False))
                    sent += 1
            for src, message in bus.submits:
                bus._apply(leader.config.addr, leader.handle(message, src, bus.now))
            bus.submits.clear()
            bus._apply(leader.config.addr, leader.flush(bus.now))
            bus.run(0.01)
            bus.encoded.clear()
            bus.sent.clear()
            for events in bus.events.values():
                events.clear()
        bus.run(1.0)
        committed = len(leader.log) - committed0
        assert committed >= sent, (committed, sent)
        gc.enable()
        results.append(spent[0] / sent * 1e6)
        print(f"run {rep}: {sent} messages, leader {spent[0] / sent * 1e6:.2f} us/msg", flush=True)
        if args.parts:
            for kind, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
                print(f"    {seconds / sent * 1e6:7.2f}  {kind}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        profiler.dump_stats(os.environ.get("CPROFILE_OUT", "/tmp/leader-core.prof"))
    print(f"min {min(results):.2f} us/msg, all {[round(x, 2) for x in results]}")


if __name__ == "__main__":
    main()
