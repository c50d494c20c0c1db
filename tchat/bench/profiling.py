"""Optional py-spy recordings of a bench's processes while it measures ($TCHAT_BENCH_PROFILE)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

ENV = "TCHAT_BENCH_PROFILE"  # a directory: one py-spy "raw" (collapsed stacks) file per process
RATE = 200  # samples per second


def py_spy() -> str | None:
    """py-spy next to this interpreter (a venv) or on PATH; None if it is not installed."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    """py-spy on each named process from start() to stop(); a no-op unless $TCHAT_BENCH_PROFILE."""

    def __init__(self, processes: dict[str, int], tag: str = "run") -> None:
        self.out = os.environ.get(ENV)
        self.processes = processes
        self.tag = tag
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        exe = py_spy() if self.out else None
        if self.out and exe is None:
            logger.warning("%s is set but py-spy is not installed: no profiles", ENV)
        if not self.out or exe is None:
            return
        Path(self.out).mkdir(parents=True, exist_ok=True)
        for name, pid in self.processes.items():
            path = Path(self.out) / f"{self.tag}-{name}-{pid}.txt"
            cmd = [exe, "record", "--nonblocking", "-r", str(RATE), "-f", "raw", "-o", str(path)]
            self.procs.append(
                subprocess.Popen(
                    [*cmd, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        logger.warning("py-spy recording %d processes into %s", len(self.procs), self.out)

    def stop(self) -> None:
        """SIGINT makes py-spy write what it sampled; wait for it, bounded."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


def shares(path: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """(samples, inclusive samples by function, self samples by function) of a raw profile."""
    total = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        # A frame reads "function (path/to/file.py:line)": keep the function and file name.
        names = []
        for frame in stack.split(";"):
            func, _, where = frame.partition(" (")
            names.append(f"{func} ({where.rsplit('/', 1)[-1].split(':', 1)[0]})" if where else func)
        own[names[-1]] = own.get(names[-1], 0) + n
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + n
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    """``python -m tchat.bench.profiling FILE [TOP]``: the top functions of one recording."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m tchat.bench.profiling FILE [TOP]", file=sys.stderr)
        return 2
    top = int(args[1]) if len(args) > 1 else 30
    total, inclusive, own = shares(Path(args[0]))
    print(f"{total} samples")
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"-- {title}")
        for name, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{100 * n / max(1, total):5.1f}% {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
