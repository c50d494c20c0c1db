"""The fan-out workload: a paced send schedule, texts carrying their send time, receipts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tchat.bench.stats import Latencies

# Text layout: "<k:08d> <send time, monotonic microseconds> " then padding up to the size.
# CLOCK_MONOTONIC is system-wide on Linux, so sender and receiver may be different processes.
_HEADER = 8


def now_us() -> int:
    return time.monotonic_ns() // 1000


def make_text(k: int, size: int) -> str:
    head = f"{k:08d} {now_us()} "  # k < 10**8
    return head + "x" * max(0, size - len(head))


def parse_text(text: str) -> tuple[int, int] | None:
    """(message index, send time in µs) of a bench text, None for anything else."""
    try:
        k = int(text[:_HEADER])
        end = text.index(" ", _HEADER + 1)
        return k, int(text[_HEADER + 1 : end])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Workload:
    clients: int
    senders: int
    rate: float  # per sender, msg/s
    duration: float
    size: int

    def describe(self) -> dict[str, Any]:
        """The workload's parameters, as reported in every result."""
        return {
            "clients": self.clients,
            "senders": self.senders,
            "rate": self.rate,
            "duration": self.duration,
            "size": self.size,
        }

    @property
    def total(self) -> int:
        return int(round(self.senders * self.rate * self.duration))

    def sender_of(self, k: int) -> int:
        """Client index of message ``k``'s sender: senders are clients 0..S-1, round robin."""
        return k % self.senders


SCHEDULE_TICK = 0.001  # seconds: a load process wakes at most this often to send


async def run_schedule(
    work: Workload,
    start: float,
    mine: Callable[[int], bool],
    send: Callable[[int, int], None],
    tick: float = SCHEDULE_TICK,
) -> tuple[int, float]:
    """Send every message ``k`` with ``mine(sender)`` at start + k / (S*R); bounded by count.

    ``start`` is on the time.monotonic() clock, shared by every process of the machine.
    The process wakes for its own messages only, and at most once per ``tick``, sending
    all that are due: a wake-up per message (thousands a second, half of them for another
    process's senders) cost a load process a fifth of its CPU (py-spy: asyncio.sleep and
    its timers), which it then lacked for receiving. Each text carries the time it was
    really sent, so latencies stay exact; the rate is kept over any tick.

    Returns (messages sent, seconds late at the end): a late end means this process could
    not keep up with the offered rate.
    """
    interval = 1.0 / (work.senders * work.rate)
    total = work.total
    sent = k = 0
    while k < total:
        due = min(total, int((time.monotonic() - start) / interval) + 1)
        while k < due:
            sender = work.sender_of(k)
            if mine(sender):
                send(k, sender)
                sent += 1
            k += 1
        while k < total and not mine(work.sender_of(k)):
            k += 1  # another process sends it: no reason to wake up for it
        if k < total:
            await asyncio.sleep(max(tick, start + k * interval - time.monotonic()))
    return sent, max(0.0, time.monotonic() - (start + (total - 1) * interval))


class Ledger:
    """Counts each (receiver, message) receipt to find deliveries, losses and duplicates."""

    PARSED_KEPT = 4096  # distinct texts remembered (parsed once, not once per receiver)

    def __init__(self, work: Workload, receivers: Iterable[int], base: int = 0) -> None:
        self.work = work
        self.base = base  # this run's first index: late texts of an earlier run are foreign
        self.counts = {r: bytearray(work.total) for r in receivers}
        self.latency = Latencies()
        self.first = 0  # first receipts by non-senders
        self.acks = 0
        self.ack_latency = Latencies()  # send -> the leader's acknowledgement (committed)
        self.last_receipt = 0.0
        self.foreign = 0  # texts that are not bench messages (ignored)
        self._senders = work.senders or 1  # (no senders: nothing is ever due)
        self._parsed: dict[str, tuple[int, int]] = {}  # text -> _parse(text)

    def receipt(self, receiver: int, text: str) -> None:
        # The clients of a load process share each decoded frame, so one text object
        # reaches every receiver here: parse it once (str hashes are cached by CPython).
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = self._parse(text)
        k, sent_us = parsed
        counts = self.counts[receiver]
        if not 0 <= k < len(counts):
            self.foreign += 1
            return
        if k % self._senders == receiver:
            return  # a sender's own echo is not a delivery
        seen = counts[k]
        if seen == 0:
            self.first += 1
            now = now_us()
            self.latency.add((now - sent_us) / 1e6)
            self.last_receipt = now / 1e6
        if seen < 255:
            counts[k] = seen + 1

    def _parse(self, text: str) -> tuple[int, int]:
        """(index in this run, send time µs); index -1 for a text that is no bench message."""
        got = parse_text(text)
        parsed = (-1, 0) if got is None else (got[0] - self.base, got[1])
        if len(self._parsed) >= self.PARSED_KEPT:
            self._parsed.clear()  # a run's texts arrive roughly in order: old ones are done
        self._parsed[text] = parsed
        return parsed

    def ack(self, text: str) -> None:
        parsed = parse_text(text)
        if parsed is not None and 0 <= parsed[0] - self.base < self.work.total:
            self.acks += 1
            self.ack_latency.add((now_us() - parsed[1]) / 1e6)

    def expected(self, sent_total: int) -> int:
        """Receipts due when the first ``sent_total`` messages were sent."""
        work = self.work
        n = 0
        for r in self.counts:
            own = 0
            if r < work.senders and r < sent_total:
                own = (sent_total - 1 - r) // work.senders + 1
            n += sent_total - own
        return n

    def tally(self, sent_total: int) -> dict[str, int]:
        dup = 0
        for counts in self.counts.values():
            dup += sum(c - 1 for c in counts[:sent_total] if c > 1)
        expected = self.expected(sent_total)
        return {
            "expected": expected,
            "deliveries": self.first,
            "lost": expected - self.first,
            "duplicated": dup,
            "foreign": self.foreign,
        }
