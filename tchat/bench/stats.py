"""Measurement helpers: percentiles, a process's CPU time and RSS read from /proc."""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summarize_ms(values_s: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p99/max (and count) of durations given in seconds, reported in milliseconds."""
    ordered = sorted(values_s)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (from /proc/<pid>/statm)."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass(slots=True)
class CpuWindow:
    """CPU a process spends between ``start()`` and ``stop()``."""

    pid: int
    started: float = 0.0
    used: float = 0.0

    def start(self) -> None:
        self.started = cpu_seconds(self.pid)

    def stop(self) -> float:
        self.used = cpu_seconds(self.pid) - self.started
        return self.used


class Latencies:
    """Append-only float samples (seconds) kept compactly."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = array("d")

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def __len__(self) -> int:
        return len(self.values)

    def summary(self) -> dict[str, float | int | None]:
        return summarize_ms(self.values)
