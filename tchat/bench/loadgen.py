"""Drives the load processes (tchat.bench.worker) of one run and merges what they measured."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from tchat.bench.ledger import Workload
from tchat.bench.priority import boost_priority
from tchat.bench.profiling import Recorder
from tchat.bench.stats import CpuWindow, summarize_ms

logger = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    pass


class LoadGroup:
    """``workers`` processes sharing ``work.clients`` clients (contiguous index slices)."""

    def __init__(
        self, kind: str, work: Workload, workers: int, cfg: dict[str, Any], tmpdir: Path
    ) -> None:
        self.kind = kind
        self.work = work
        self.workers = max(1, min(workers, work.clients))
        self.cfg = cfg
        self.tmpdir = tmpdir
        self.procs: list[asyncio.subprocess.Process] = []
        self.results: list[str] = []
        self.login_ms: list[float] = []

    async def _reply(self, proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise WorkerError(f"load process {proc.pid} exited (rc={await proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"load process {proc.pid}: {reply['error']}")
        return reply

    async def _all(self, timeout: float) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._reply(p, timeout) for p in self.procs)))

    def _tell(self, cmd: dict[str, Any]) -> None:
        data = (json.dumps(cmd) + "\n").encode()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(data)

    async def start(self, connect_timeout: float = 120.0) -> float:
        """Spawn the workers and wait until every client is connected; returns the seconds."""
        began = time.monotonic()
        n, w = self.work.clients, self.workers
        bounds = [(i * n // w, (i + 1) * n // w) for i in range(w)]
        env = dict(os.environ)
        env.setdefault("PYTHONHASHSEED", "0")
        for i, (lo, hi) in enumerate(bounds):
            result = str(self.tmpdir / f"lat-{self.kind}-{i}.bin")
            self.results.append(result)
            cfg = dict(self.cfg)
            cfg.update(
                kind=self.kind,
                work={
                    "clients": self.work.clients,
                    "senders": self.work.senders,
                    "rate": self.work.rate,
                    "duration": self.work.duration,
                    "size": self.work.size,
                },
                indices=[lo, hi],
                results=result,
                connect_timeout=connect_timeout,
            )
            if self.cfg.get("spread_hosts"):
                # Thousands of clients each bind a port and open a connection: one loopback
                # address per load process gives each its own ephemeral port range.
                cfg["host"] = f"127.0.0.{2 + i}"
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tchat.bench.worker",
                json.dumps(cfg),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                limit=1 << 20,
                preexec_fn=boost_priority,
            )
            self.procs.append(proc)
        ready = await self._all(connect_timeout + 10)
        # Each login's time, start to Ready (the Noise handshake included): all processes.
        self.login_ms = [float(v) for r in ready for v in r.get("login_ms", ())]
        return time.monotonic() - began

    async def run(
        self,
        measure: dict[str, int],
        drain: float = 10.0,
        rate: float | None = None,
        duration: float | None = None,
        base: int = 0,
    ) -> dict[str, Any]:
        """One paced run. CPU of each ``measure`` process from the first send to the last
        receipt; ``measure["leader"]`` gives leader_cpu_us_per_delivery."""
        work = Workload(
            self.work.clients,
            self.work.senders,
            rate if rate is not None else self.work.rate,
            duration if duration is not None else self.work.duration,
            self.work.size,
        )
        start = time.monotonic() + 0.3
        cmd: dict[str, Any] = {"go": start, "base": base, "rate": work.rate}
        cmd["duration"] = work.duration
        self._tell(cmd)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpus = {name: CpuWindow(pid) for name, pid in measure.items()}
        for cpu in cpus.values():
            cpu.start()
        loads = {f"load{i}": proc.pid for i, proc in enumerate(self.procs)}
        recorder = Recorder({**measure, **loads}, f"{self.kind}-{base}")
        recorder.start()
        try:
            sent_replies = await self._all(work.duration + 60)
            sent = sum(int(r["sent"]) for r in sent_replies)
            late = max(float(r["late_s"]) for r in sent_replies)
            self._tell({"expect": sent, "deadline": time.monotonic() + drain})
            done = await self._all(drain + 30)
            ended = time.monotonic()
            used = {name: cpu.stop() for name, cpu in cpus.items()}
        finally:
            recorder.stop()  # after the CPU figures: py-spy writing its file is not the run
        tally = {k: sum(int(r["done"][k]) for r in done) for k in done[0]["done"]}
        last = max(float(r["last_receipt"]) for r in done)
        latencies = array("d")
        acks = array("d")
        for path in self.results:
            for dst, name in ((latencies, path), (acks, path + ".ack")):
                dst.frombytes(Path(name).read_bytes())
        deliveries = tally["deliveries"]
        window = (last - start) if last > start else ended - start
        cpu_window = ended - start
        out: dict[str, Any] = {
            "offered": work.total,
            "offered_rate": round(work.senders * work.rate, 1),
            "sent": sent,
            "sender_late_s": late,
            "acked": sum(int(r["acks"]) for r in done),
            **tally,
            "window_s": round(window, 3),
            "deliveries_per_s": round(deliveries / window, 1) if window > 0 else None,
            "latency": summarize_ms(latencies),
            "commit_latency": summarize_ms(acks),
            "cpu_window_s": round(cpu_window, 3),
            "cpu_s": {name: round(v, 3) for name, v in used.items()},
            "load_cpu_s": [float(r["cpu_s"]) for r in done],
        }
        if "leader" in used:
            out["leader_cpu_us_per_delivery"] = (
                round(used["leader"] * 1e6 / deliveries, 3) if deliveries else None
            )
            acked = out["acked"]
            out["leader_cpu_us_per_message"] = (
                round(used["leader"] * 1e6 / acked, 3) if acked else None
            )
        return out

    async def rss(self) -> list[int]:
        self._tell({"stats": 1})
        return [int(r["rss"]) for r in await self._all(30)]

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                try:
                    proc.stdin.write(b'{"quit": 1}\n')
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
