"""``tchat bench burst``: an honest user sends N maximum-size lines at once; does chat go on?

Three real daemons on 127.0.0.1 and two real headless clients (``tchat --headless``): alice
writes N ``/say`` lines (3,990 characters each by default) to her stdin in one go, bob
counts what he receives within the deadline, then alice sends one short line and bob must
receive it too (the cluster still commits). Everything runs as ``python -m tchat`` child
processes of the tree named by ``--tree`` (default: this one), so the same bench measures
an older tree whose protocol the bench's own code no longer speaks. The daemons run with
their default limits (rate limit, connection caps): an honest burst must pass them.

Longer than 400 lines: one scenario with its own driver (it starts the daemons and clients
of any source tree, to compare before and after), which shares nothing with the other
benches' load generators.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tchat.bench.priority import SERVER_PRIORITY, at_priority, boost_priority
from tchat.crypto.cluster import ClusterSecret
from tchat.runtime.secure import provision_cluster_secret

HOST = "127.0.0.1"
LINE_CHARS = 3990  # the client's longest message, in characters
AFTER_TEXT = "and after the burst"
# Daemon log lines that say a frame did not go out or a run was not quiet.
LOG_MARKS = (
    "too-big",
    "dropped frame",
    "leader-suspected",
    "election-started",
    "new-leader",
    "client-dropped",
    "server-dropped",
    "Traceback",
)


def burst_line(i: int, chars: int, ascii_only: bool) -> str:
    """``chars`` characters; by default multi-byte ones among them (~2 bytes a character)."""
    head = f"{i:03d} "
    body = "xyzw" if ascii_only else "é🙂ab"
    return head + (body * (chars // len(body) + 1))[: chars - len(head)]


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Child:
    """A child process whose stdout/stderr lines are collected with their arrival time."""

    def __init__(
        self, argv: list[str], env: dict[str, str], stdin: bool, preexec: Callable[[], None]
    ) -> None:
        self.out: list[tuple[float, str]] = []
        self.err: list[str] = []
        self.cond = threading.Condition()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            preexec_fn=preexec,
        )
        for stream, sink in ((self.popen.stdout, self.out), (self.popen.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: Any, sink: list[Any]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                with self.cond:
                    if sink is self.out:
                        sink.append((time.monotonic(), line.rstrip("\n")))
                    else:
                        sink.append(line.rstrip("\n"))
                    self.cond.notify_all()

    def events(self, kind: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        with self.cond:
            lines = list(self.out)
        found = []
        for t, line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if isinstance(event, dict) and (kind is None or event.get("event") == kind):
                    found.append((t, event))
        return found

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """``predicate()`` once truthy, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    return predicate() or None
                self.cond.wait(min(left, 0.1))

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class BurstRun:
    def __init__(self, tree: Path, servers: int, root: Path, server_nice: int) -> None:
        self.tree = tree
        self.server_nice = server_nice
        self.root = root
        self.servers = servers
        self.discovery_port = _free_udp_port()
        self.multicast_port = _free_udp_port()
        self.multicast_base = f"239.255.{random.Random().randrange(100, 250)}.0"
        self.env = dict(os.environ)
        self.env.update(
            {
                "PYTHONPATH": str(tree),
                "PYTHONUNBUFFERED": "1",
                "XDG_CONFIG_HOME": str(root / "config"),
                "XDG_DATA_HOME": str(root / "data"),
            }
        )
        self.env.pop("TCHAT_CLUSTER_KEY", None)
        (root / "empty.toml").write_text("")
        self.children: list[Child] = []
        self.daemons: dict[int, Child] = {}
        self.secret = ClusterSecret.generate()

    def net_args(self) -> list[str]:
        # No cluster key, as the trees compared ran before daemons made their own: a tree
        # that makes them takes --insecure (else each daemon would have its own key).
        insecure = any(
            (self.tree / "tchat" / sub).exists()
            for sub in ("runtime/private_files.py", "crypto/keyfiles.py")
        )
        return [
            "--host", HOST,
            "--discovery-port", str(self.discovery_port),
            "--broadcast", "127.255.255.255",
            "--multicast-base", self.multicast_base,
            "--multicast-port", str(self.multicast_port),
            "--config", str(self.root / "empty.toml"),
            *(["--insecure"] if insecure else []),
        ]  # fmt: skip

    def start_daemons(self) -> None:
        for sid in range(1, self.servers + 1):
            data = self.root / f"s{sid}"
            data.mkdir()
            provision_cluster_secret(data, self.secret)  # one cluster (a tree before ignores it)
            argv = [
                sys.executable, "-m", "tchat", "--daemon", *self.net_args(),
                "--port", "0", "--id", str(sid), "--data-dir", str(data),
                "--log-level", "INFO",
            ]  # fmt: skip
            child = Child(argv, self.env, False, at_priority(self.server_nice))
            self.children.append(child)
            self.daemons[sid] = child

    def status(self) -> dict[str, Any] | None:
        argv = [sys.executable, "-m", "tchat", "status", "--json", "--wait", "0.4"]
        done = subprocess.run(
            argv + self.net_args(), capture_output=True, text=True, env=self.env, timeout=20
        )
        if done.returncode != 0:
            return None
        with contextlib.suppress(json.JSONDecodeError):
            return dict(json.loads(done.stdout))
        return None

    def wait_stable(self, timeout: float) -> int:
        """The leader's id once every server answers and one leader has them all live."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            for sid, d in self.daemons.items():
                if d.popen.poll() is not None:
                    raise RuntimeError(f"server {sid} exited: {d.err[-20:]}")
            last = self.status()
            if last and last.get("leader"):
                servers = last.get("servers", [])
                roles = [s["role"] for s in servers if s.get("answered")]
                if (
                    len(roles) == self.servers
                    and roles.count("leader") == 1
                    and all(s.get("live") for s in servers)
                ):
                    return int(last["leader"])
        raise TimeoutError(f"cluster not stable within {timeout:.0f} s: {last}")

    def client(self, name: str) -> Child:
        argv = [sys.executable, "-m", "tchat", "--headless", "--user", name, *self.net_args()]
        child = Child(argv, self.env, True, boost_priority)
        self.children.append(child)
        return child

    def log_sizes(self) -> dict[int, int]:
        """How many log lines each daemon has written so far (for ``log_marks``)."""
        return {sid: len(d.err) for sid, d in self.daemons.items()}

    def log_marks(self, since: dict[int, int]) -> dict[str, int]:
        """Lines of the daemons' logs (since ``since``) that contain each of LOG_MARKS."""
        counts = dict.fromkeys(LOG_MARKS, 0)
        for sid, d in self.daemons.items():
            with d.cond:
                lines = d.err[since.get(sid, 0) :]
            for line in lines:
                for mark in LOG_MARKS:
                    if mark in line:
                        counts[mark] += 1
        return counts

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()


def _tree_commit(tree: Path) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def burst(
    lines: int,
    chars: int,
    deadline: float,
    servers: int,
    tree: Path,
    ascii_only: bool = False,
    after_deadline: float = 15.0,
    pause: float = 0.0,
    server_nice: int = SERVER_PRIORITY,
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="tchat-burst-"))
    run = BurstRun(tree, servers, root, server_nice)
    texts = [burst_line(i, chars, ascii_only) for i in range(lines)]
    result: dict[str, Any] = {
        "bench": "burst",
        "tree": str(tree),
        "tree_commit": _tree_commit(tree),
        "servers": servers,
        "lines": lines,
        "chars_per_line": chars,
        "utf8_bytes_per_line": len(texts[0].encode()) if texts else 0,
        "deadline_s": deadline,
        "leader_paused_ms": round(pause * 1000),
        "server_nice": server_nice,
    }
    try:
        run.start_daemons()
        leader = run.wait_stable(60)
        result["leader"] = leader
        alice, bob = run.client("alice"), run.client("bob")
        for c in (alice, bob):
            if not c.wait(partial(c.events, "ready"), 30):
                raise RuntimeError(f"client not ready: {c.err[-20:]}")

        def sees_both(c: Child) -> bool:
            users = c.events("users")
            return bool(users) and {"alice", "bob"} <= {u["name"] for u in users[-1][1]["users"]}

        for c in (alice, bob):
            if not c.wait(partial(sees_both, c), 20):
                raise RuntimeError("the clients do not see each other")
            c.send("/join r\n")
        for c in (alice, bob):
            if not c.wait(partial(c.events, "joined"), 20):
                raise RuntimeError(f"join not answered: {c.events()[-5:]}")
        # Alice's own join answer lists bob when his join committed first.
        if not alice.wait(
            lambda: any(
                {"alice", "bob"} <= set(e.get("members", ()))
                for _, e in alice.events()
                if e.get("event") in ("joined", "members")
            ),
            20,
        ):
            raise RuntimeError("alice does not see bob in r")

        def received() -> list[tuple[float, str]]:
            return [
                (t, e["text"])
                for t, e in bob.events("message")
                if e.get("from") == "alice" and e.get("text") != AFTER_TEXT
            ]

        # The whole burst in one write: as fast as a paste or a script can type.
        marks = run.log_sizes()
        leader_proc = run.daemons[leader].popen
        resume: threading.Timer | None = None
        if pause > 0:
            # The leader busy for a moment (a collector pause, a starved CPU: 50-150 ms
            # happen, docs/BENCHMARKS.md) while the burst arrives: it then reads the whole
            # burst in one go, as a leader does whenever the lines come faster than it works.
            leader_proc.send_signal(signal.SIGSTOP)
            resume = threading.Timer(pause, leader_proc.send_signal, (signal.SIGCONT,))
            resume.start()
        t0 = time.monotonic()
        try:
            alice.send("".join(f"/say r {text}\n" for text in texts))
        finally:
            if resume is not None:
                resume.join()
        bob.wait(lambda: len(received()) >= lines, deadline)
        got = received()
        in_time = [(t, x) for t, x in got if t - t0 <= deadline]
        result.update(
            {
                "received_within_deadline": len(in_time),
                "received_in_order_and_intact": [x for _, x in in_time] == texts[: len(in_time)],
                "first_receipt_s": round(in_time[0][0] - t0, 3) if in_time else None,
                "all_delivered_s": (
                    round(in_time[-1][0] - t0, 3) if len(in_time) >= lines else None
                ),
            }
        )
        # Chat goes on: one short line after the burst.
        t1 = time.monotonic()
        alice.send(f"/say r {AFTER_TEXT}\n")
        after = bob.wait(
            lambda: [t for t, e in bob.events("message") if e.get("text") == AFTER_TEXT],
            after_deadline,
        )
        # Acknowledgements trail the deliveries (bob hears the room before alice her acks).
        ids = {e.get("id") for _, e in bob.events("message") if e.get("text") in set(texts)}
        acked = [t - t0 for t, e in alice.events("sent") if e.get("id") in ids]
        result["acked_within_deadline"] = sum(1 for t in acked if t <= deadline)
        result["last_ack_s"] = round(max(acked), 3) if acked else None
        result["after_line_delivered"] = bool(after)
        result["after_line_s"] = round(after[0] - t1, 3) if after else None
        result["after_line_deadline_s"] = after_deadline
        result["alice_errors"] = [e.get("message") for _, e in alice.events("error")][:5]
        result["daemon_log_marks"] = run.log_marks(marks)
        result["daemons_alive"] = sum(d.popen.poll() is None for d in run.daemons.values())
        result["ok"] = (
            result["received_within_deadline"] == lines
            and result["received_in_order_and_intact"]
            and result["after_line_delivered"]
        )
    finally:
        run.close()
        if os.environ.get("TCHAT_BENCH_KEEP"):
            for sid, d in run.daemons.items():
                (root / f"s{sid}.log").write_text("\n".join(d.err) + "\n")
            print(f"kept the cluster's logs and data in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return result


def run(args: Any) -> dict[str, Any]:
    tree = Path(args.tree).resolve() if args.tree else Path(__file__).resolve().parents[2]
    return burst(
        args.lines,
        args.chars,
        args.deadline,
        args.servers,
        tree,
        args.ascii,
        args.after_deadline,
        args.pause_leader / 1000,
        args.server_nice,
    )
