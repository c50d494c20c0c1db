"""A local tchat cluster for benchmarks: daemons on 127.0.0.1 with a private discovery port."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tchat.bench.irc import free_port
from tchat.bench.nodelog import read_events
from tchat.bench.priority import server_priority
from tchat.crypto.cluster import ClusterSecret
from tchat.runtime.options import NetOptions
from tchat.runtime.secure import provision_cluster_secret

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
# Node events that a run without faults must not show (a spurious election, a drop).
QUIET_RUN_EVENTS = (
    "election-started",
    "new-leader",
    "leader-suspected",
    "server-dropped",
    "client-dropped",
)
PORT_RETRIES = 3


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_node_port(attempts: int = 50) -> int:
    """A port free for both TCP and UDP, as a daemon binds both on its --port.

    A port free for TCP alone is often taken for UDP while another bench's thousands of
    clients hold a TCP+UDP pair each: the daemon then fails with "address in use".
    """
    import socket

    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    return free_port()


def _lift_nofile() -> None:
    import resource

    server_priority()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(slots=True)
class Daemon:
    server_id: int
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # wall clock, for reading the log after a kill
    port_retries: int = 0  # relaunches on another port after "address already in use"

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@dataclass(slots=True)
class Cluster:
    """``size`` daemons with ids 1..size; each keeps its port and data dir across restarts."""

    size: int = 3
    stock_asyncio: bool = False  # run the daemons on asyncio instead of uvloop
    extra_args: list[str] = field(default_factory=list)
    log_level: str = "INFO"
    raise_nofile: bool = False  # lift the daemons' open-files limit (thousands of clients)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tchat-bench-")))
    discovery_port: int = field(default_factory=free_udp_port)
    multicast_port: int = field(default_factory=free_udp_port)
    multicast_base: str = field(
        default_factory=lambda: f"239.255.{random.Random().randrange(100, 250)}.0"
    )
    daemons: dict[int, Daemon] = field(default_factory=dict)
    # --insecure (plaintext TCP, for side-by-side figures); else one cluster secret for all
    # daemons, and clients that accept exactly its key (``--cluster FINGERPRINT``).
    insecure: bool = False
    secret: ClusterSecret = field(default_factory=ClusterSecret.generate)

    @property
    def security(self) -> dict[str, Any]:
        """The client options that find this cluster's key (or say there is none)."""
        if self.insecure:
            return {"insecure": True}
        return {"cluster": self.secret.public_key.fingerprint}

    def load_config(self, **extra: Any) -> dict[str, Any]:
        """What a load process needs to find this cluster, plus ``extra`` settings."""
        return {
            "discovery_port": self.discovery_port,
            "multicast_base": self.multicast_base,
            "multicast_port": self.multicast_port,
            **self.security,
            **extra,
        }

    def net_options(self, multicast: bool = True, **extra: Any) -> NetOptions:
        """Options for an in-process client (or status probe) of this cluster."""
        return NetOptions(
            host=HOST,
            discovery_port=self.discovery_port,
            broadcast="127.255.255.255",
            mode="client",
            multicast=multicast,
            multicast_base=self.multicast_base,
            multicast_port=self.multicast_port,
            log_level="WARNING",
            **{**self.security, **extra},
        )

    def command(self, daemon: Daemon) -> list[str]:
        entry = "tchat.bench.asyncio_node" if self.stock_asyncio else "tchat"
        return [
            sys.executable, "-m", entry, "--daemon",
            "--host", HOST, "--port", str(daemon.port),
            "--discovery-port", str(self.discovery_port),
            "--broadcast", "127.255.255.255",
            "--multicast-base", self.multicast_base,
            "--multicast-port", str(self.multicast_port),
            "--id", str(daemon.server_id), "--data-dir", str(daemon.data_dir),
            "--rate-limit", "0", "--log-level", self.log_level,
            # Thousands of load clients share a few loopback addresses: lift the per-host
            # caps that protect a LAN server (the total stays under the open-file limit).
            "--max-connections-per-host", "0", "--max-connections", "100000",
            "--discovery-rate", "0",
            "--config", str(self.root / "empty.toml"),
            *(["--insecure"] if self.insecure else []),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        (self.root / "empty.toml").write_text("")
        # Load clients pin in the bench's own directory, never in the user's known_clusters.
        os.environ["XDG_DATA_HOME"] = str(self.root / "client-data")
        for sid in range(1, self.size + 1):
            d = Daemon(sid, free_node_port(), self.root / f"s{sid}", self.root / f"s{sid}.log")
            d.data_dir.mkdir(parents=True, exist_ok=True)
            if not self.insecure:
                provision_cluster_secret(d.data_dir, self.secret)
            self.daemons[sid] = d
            self.launch(sid)

    def launch(self, sid: int) -> None:
        d = self.daemons[sid]
        env = dict(os.environ)
        env["PYTHONPATH"] = (
            str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
        )
        log = open(d.log_path, "ab")  # noqa: SIM115 - the child owns it
        d.started_at = time.time()
        d.proc = subprocess.Popen(
            self.command(d),
            stdout=log,
            stderr=log,
            env=env,
            preexec_fn=_lift_nofile if self.raise_nofile else server_priority,
        )
        log.close()

    def kill(self, sid: int) -> float:
        """SIGKILL server ``sid``; returns the monotonic time of the kill."""
        d = self.daemons[sid]
        assert d.proc is not None
        t = time.monotonic()
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        return t

    def stop(self) -> None:
        for d in self.daemons.values():
            if d.alive:
                assert d.proc is not None
                d.proc.send_signal(signal.SIGTERM)
        for d in self.daemons.values():
            if d.proc is not None:
                try:
                    d.proc.wait(8)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                    d.proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get("TCHAT_BENCH_KEEP"):
            logger.warning("kept the cluster's logs and data in %s", self.root)
            return
        shutil.rmtree(self.root, ignore_errors=True)

    async def describe(self) -> dict[str, Any]:
        """Each server's exit code or its role as it answers a status probe now."""
        replies = {r.server_id: r for r in await self.status(0.4)}
        out: dict[str, Any] = {}
        for sid, d in sorted(self.daemons.items()):
            if not d.alive:
                out[str(sid)] = f"exited {d.proc.returncode if d.proc else None}"
            elif sid in replies:
                r = replies[sid]
                out[str(sid)] = f"{r.role.lower()} leader={r.leader_id} live={list(r.live)}"
            else:
                out[str(sid)] = "no status reply"
        return out

    def pid(self, sid: int) -> int:
        return self.daemons[sid].pid

    def log_marks(self) -> dict[int, int]:
        """Where each daemon's log ends now, for ``events_since``."""
        return {
            sid: d.log_path.stat().st_size if d.log_path.exists() else 0
            for sid, d in self.daemons.items()
        }

    def events_since(self, marks: dict[int, int]) -> dict[str, int]:
        """How many of each failure-detector/election node event the daemons logged since
        ``marks`` (INFO logging): a quiet run has none."""
        counts = dict.fromkeys(QUIET_RUN_EVENTS, 0)
        for sid, d in self.daemons.items():
            for event in read_events(d.log_path, sid, marks.get(sid, 0))[0]:
                if event.kind in counts:
                    counts[event.kind] += 1
        return counts

    async def status(self, wait: float = 0.3) -> list[Any]:
        from tchat.runtime.status import gather

        return await gather(self.net_options(), wait)

    async def wait_stable(self, timeout: float = 30.0, live: int | None = None) -> int:
        """Wait until one leader and ``live`` (default: all running) servers agree; its id."""
        want = live if live is not None else sum(d.alive for d in self.daemons.values())
        deadline = time.monotonic() + timeout
        last: list[Any] = []
        while time.monotonic() < deadline:
            for sid, d in self.daemons.items():
                if d.proc is not None and d.proc.poll() not in (None, -9, -15, 0):
                    tail = d.log_path.read_text(errors="replace")[-2000:]
                    if "address already in use" in tail and d.port_retries < PORT_RETRIES:
                        # Its port was taken between our probe and its bind (another
                        # bench's clients bind ports by the thousand): another port.
                        d.port_retries += 1
                        d.port = free_node_port()
                        self.launch(sid)
                        continue
                    raise RuntimeError(f"server {sid} exited ({d.proc.returncode}): {tail}")
            last = await self.status(0.25)
            leaders = {r.server_id for r in last if r.role.lower() == "leader"}
            if len(leaders) == 1 and len(last) >= want:
                leader = leaders.pop()
                agree = all(r.leader_id == leader for r in last)
                backups = sum(r.role.lower() == "backup" for r in last)
                views = [r for r in last if r.server_id == leader]
                in_view = len(views[0].live) >= want if views else False
                if agree and backups == want - 1 and in_view:
                    return leader
        roles = [(r.server_id, r.role, r.leader_id, r.live) for r in last]
        raise TimeoutError(f"cluster not stable within {timeout:.0f} s: {roles}")

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))
