"""A load process: hosts a slice of the bench clients, sends its senders' share, counts receipts.

Run as ``python -m tchat.bench.worker CONFIG_JSON``; commands arrive as JSON lines on
stdin and replies leave as JSON lines on stdout, so a bench can spread its clients over
several processes when one cannot keep up.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import resource
import sys
import time
from typing import Any, Protocol

from tchat.bench.ledger import Ledger, Workload, make_text, run_schedule
from tchat.bench.stats import cpu_seconds, rss_bytes

logger = logging.getLogger(__name__)


class Driver(Protocol):
    """How one kind of client (IRC, tchat) connects, sends and reports receipts."""

    ledger: Ledger

    async def open(self, index: int) -> None: ...

    def say(self, index: int, text: str) -> None: ...

    async def close(self) -> None: ...


class IrcDriver:
    def __init__(self, cfg: dict[str, Any], ledger: Ledger) -> None:
        self.port = int(cfg["port"])
        self.ledger = ledger
        self.clients: dict[int, Any] = {}

    CONNECT_TRIES = 3

    async def open(self, index: int) -> None:
        from tchat.bench import irc

        def on_text(text: str, index: int = index) -> None:
            self.ledger.receipt(index, text)

        for attempt in range(1, self.CONNECT_TRIES + 1):
            try:
                self.clients[index] = await irc.connect(self.port, f"b{index}", on_text)
                return
            except ConnectionError as exc:
                # ngircd now and then drops a connection while 400 register at once
                # ("connection lost" before the welcome): try that client again.
                if attempt == self.CONNECT_TRIES:
                    raise
                logger.warning("b%d: %s; connecting again", index, exc)
                await asyncio.sleep(0.05 * attempt)

    def say(self, index: int, text: str) -> None:
        self.clients[index].say(text)

    async def close(self) -> None:
        for client in self.clients.values():
            client.close()
        await asyncio.sleep(0.05)  # let the QUITs leave before the loop closes


def _say(driver: Driver, base: int, size: int, k: int, sender: int) -> None:
    driver.say(sender, make_text(base + k, size))


def make_driver(cfg: dict[str, Any], ledger: Ledger) -> Driver:
    if cfg["kind"] == "irc":
        return IrcDriver(cfg, ledger)
    from tchat.bench.tchat_driver import TchatDriver

    return TchatDriver(cfg, ledger)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_nofile() -> int:
    """Lift the soft open-files limit to the hard one (10,000 clients need 10,000+ fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve(cfg: dict[str, Any]) -> int:
    work = Workload(**cfg["work"])
    lo, hi = cfg["indices"]
    ledger = Ledger(work, range(lo, hi))
    driver = make_driver(cfg, ledger)
    me = os.getpid()
    cpu0 = 0.0
    mine = 0
    reader = await _commands()
    began = time.monotonic()
    gate = asyncio.Semaphore(int(cfg.get("connect_parallel", 64)))

    opened = 0
    logins: list[float] = []  # ms from start to Ready (handshake, Register, Welcome)

    async def open_one(index: int) -> None:
        nonlocal opened
        async with gate:
            t0 = time.monotonic()
            await driver.open(index)
            logins.append((time.monotonic() - t0) * 1000)
            opened += 1
            if opened % 256 == 0:
                # Thousands of clients in one process hold millions of objects: a full
                # collection over them stalls the loop past the clients' leader timeout.
                # Clients already in are long-lived: move them out of the collector's way.
                gc.freeze()

    try:
        await asyncio.wait_for(
            asyncio.gather(*(open_one(i) for i in range(lo, hi))), float(cfg["connect_timeout"])
        )
    except Exception as exc:  # report any failure to the parent instead of dying silently
        stuck: list[str] = getattr(driver, "stuck", list)()
        _emit({"error": f"connect: {exc!r} after {opened} of {hi - lo} clients; {stuck}"})
        await driver.close()
        return 1
    # Everything the logins built lives as long as the run: keep it out of the cyclic
    # collector's generations, so that a full collection only looks at what is new.
    gc.collect()
    gc.freeze()
    _emit(
        {
            "ready": hi - lo,
            "connect_s": round(time.monotonic() - began, 3),
            "login_ms": sorted(round(v, 2) for v in logins),
        }
    )
    for _ in range(400):  # (go, expect) per run, stats, quit: a bounded conversation
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if "go" in cmd:
            start = float(cmd["go"])
            base = int(cmd.get("base", 0))
            work = Workload(
                work.clients,
                work.senders,
                float(cmd.get("rate", work.rate)),
                float(cmd.get("duration", work.duration)),
                work.size,
            )
            ledger = Ledger(work, range(lo, hi), base)
            driver.ledger = ledger
            cpu0 = cpu_seconds(me)
            # No cyclic collection while measuring (only reference counting): with 200
            # clients in one interpreter a full collection walks all their state, took
            # ~300 ms and half the process's CPU: an artifact of hosting many clients in
            # one process, not a cost of a client (a user's tchat hosts one). Back on
            # after the drain.
            gc.disable()
            sent, late = await run_schedule(
                work,
                start,
                lambda s: lo <= s < hi,
                functools.partial(_say, driver, base, work.size),
            )
            mine = sent
            _emit({"sent": sent, "late_s": round(late, 4)})
        elif "expect" in cmd:
            total, deadline = int(cmd["expect"]), float(cmd["deadline"])
            want = ledger.expected(total)
            acks_due = mine if cfg["kind"] == "tchat" else 0  # IRC has no acknowledgement
            while (ledger.first < want or ledger.acks < acks_due) and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            gc.enable()
            path = cfg["results"]
            with open(path, "wb") as f:
                ledger.latency.values.tofile(f)
            with open(path + ".ack", "wb") as f:
                ledger.ack_latency.values.tofile(f)
            _emit(
                {
                    "done": ledger.tally(total),
                    "acks": ledger.acks,
                    "last_receipt": ledger.last_receipt,
                    "cpu_s": round(cpu_seconds(me) - cpu0, 3),
                }
            )
        elif "stats" in cmd:
            _emit({"rss": rss_bytes(os.getpid())})
        elif "quit" in cmd:
            break
    await driver.close()
    return 0


def main() -> int:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(level=cfg.get("log_level", "WARNING"), stream=sys.stderr)
    raise_nofile()
    if cfg.get("uvloop", True):
        import uvloop

        uvloop.install()
    return asyncio.run(serve(cfg))


if __name__ == "__main__":
    raise SystemExit(main())
