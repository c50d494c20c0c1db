"""Reusable test harness: spawn real tchat daemons and headless clients, wait on their output.

Every process is a real ``python -m tchat`` child. Reader threads collect stdout/stderr lines;
tests wait on them with deadlines (``wait_for``), never with sleeps. ``Cluster.close()`` kills
every process it started (use it in a ``finally`` or fixture).

    with Cluster(tmp_path) as cluster:
        servers = [cluster.daemon(server_id=i) for i in (1, 2, 3)]
        alice = cluster.client("alice")
        alice.wait_event("ready")
        alice.send("/join lobby")
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

try:
    from tchat.crypto.cluster import ClusterSecret
    from tchat.runtime.secure import provision_cluster_secret
except ImportError:  # a tree before issue 15, to show an attack test fails there
    ClusterSecret = None  # type: ignore[assignment,misc]

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parent.parent


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
    interval: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns something truthy; return it. Bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_udp_port() -> int:
    """A random port outside Linux's ephemeral range, for discovery / multicast of one test."""
    return random.randrange(20000, 32000)


class Proc:
    """One child process with its output lines collected by reader threads."""

    def __init__(
        self, name: str, argv: Sequence[str], env: dict[str, str], stdin: bool = False
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=REPO,
            start_new_session=True,  # a stray signal to the test's group never reaches it
        )
        self._threads = [
            threading.Thread(
                target=self._pump, args=(self.popen.stdout, self.stdout_lines), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self.popen.stderr, self.stderr_lines), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                with self._cond:
                    sink.append(line.rstrip("\n"))
                    self._on_line(sink, line.rstrip("\n"))
                    self._cond.notify_all()

    def _on_line(self, sink: list[str], line: str) -> None:
        pass

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_line(
        self, pattern: str, timeout: float = DEFAULT_TIMEOUT, stream: str = "stderr", start: int = 0
    ) -> re.Match[str]:
        """The first line (from index ``start``) of ``stream`` matching regex ``pattern``."""
        lines = self.stderr_lines if stream == "stderr" else self.stdout_lines
        regex = re.compile(pattern)

        def find() -> re.Match[str] | None:
            for line in lines[start:]:
                match = regex.search(line)
                if match:
                    return match
            return None

        return self._wait(find, timeout, f"{self.name}: line /{pattern}/ on {stream}")

    def _wait(self, find: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(
                        f"timed out after {timeout:.1f}s waiting for {what}\n"
                        f"--- {self.name} stderr tail:\n" + self.tail()
                    )
                if not self.alive() and not any(t.is_alive() for t in self._threads):
                    raise WaitTimeout(
                        f"{self.name} exited ({self.popen.returncode}) while "
                        f"waiting for {what}\n" + self.tail()
                    )
                self._cond.wait(min(left, 0.1))

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.stderr_lines[-n:])

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """kill -9 and reap."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise WaitTimeout(f"{self.name} did not exit within {timeout}s\n{self.tail()}") from exc


class Daemon(Proc):
    """``tchat --daemon``; ``.server_id``, ``.addr`` and ``.data_dir`` come from its start line."""

    server_id: int
    addr: str
    data_dir: str

    def started(self, timeout: float = DEFAULT_TIMEOUT) -> Daemon:
        match = self.wait_line(r"tchat daemon id=(\d+) addr=(\S+) data=(.*)$", timeout)
        self.server_id, self.addr, self.data_dir = int(match[1]), match[2], match[3]
        return self

    def drop_count(self, reason: str) -> int:
        """Frames dropped for ``reason`` according to the daemon's log."""
        found = 0
        for line in self.stderr_lines:
            match = re.search(
                rf"dropped frame from \S+: {re.escape(reason)} .*\[(\d+) so far\]", line
            )
            if match:
                found = max(found, int(match[1]))
        return found


class Client(Proc):
    """``tchat --headless``: stdin commands, JSON-line events in ``.events``."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        super().__init__(name, argv, env, stdin=True)

    def _on_line(self, sink: list[str], line: str) -> None:
        if sink is self.stdout_lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "_unparsed", "line": line}
            self.events.append(event)

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()

    def wait_event(
        self,
        kind: str,
        timeout: float = DEFAULT_TIMEOUT,
        start: int = 0,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The first event (from index ``start``) of type ``kind`` with these field values."""

        def find() -> dict[str, Any] | None:
            for event in self.events[start:]:
                if event.get("event") != kind:
                    continue
                if all(event.get(k) == v for k, v in fields.items()) and (
                    where is None or where(event)
                ):
                    return event
            return None

        return self._wait(find, timeout, f"{self.name}: event {kind} {fields}")

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == kind]

    def user_names(self) -> set[str] | None:
        """Names in the latest ``users`` event (None before the first one)."""
        users = self.of("users")
        return {u["name"] for u in users[-1]["users"]} if users else None


class Cluster:
    """Daemons and clients of one test: own discovery port, multicast port and data dirs."""

    def __init__(
        self, tmp: Path, host: str = "127.0.0.1", key: str | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.tmp = Path(tmp)
        self.host = host
        self.discovery_port = free_udp_port()
        self.multicast_port = free_udp_port()
        self.key = key
        self.extra = list(extra)
        self.procs: list[Proc] = []
        self.env = dict(os.environ)
        self.env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "XDG_CONFIG_HOME": str(self.tmp / "config"),
                "XDG_DATA_HOME": str(self.tmp / "data"),
            }
        )
        # The key goes by the environment, never the command line (ps shows that to all).
        # Without one, every daemon's data dir gets the cluster's secret (below).
        self.env.pop("TCHAT_CLUSTER_KEY", None)
        self._count = 0
        # One cluster: every daemon's data dir gets this secret before its first start,
        # as an operator would copy it (clients pin its key on first use).
        self.secret = ClusterSecret.generate() if ClusterSecret is not None else None
        if key:
            # A test names its key by a phrase; a cluster secret is 32 bytes of base64.
            raw = hashlib.sha256(key.encode()).digest()
            self.key = base64.b64encode(raw).decode("ascii")
            self.env["TCHAT_CLUSTER_KEY"] = self.key
            self.secret = ClusterSecret(raw) if ClusterSecret is not None else None

    @property
    def fingerprint(self) -> str:
        assert self.secret is not None
        return str(self.secret.public_key.fingerprint)

    def net_args(self, host: str | None = None) -> list[str]:
        args = [
            "--host",
            host or self.host,
            "--discovery-port",
            str(self.discovery_port),
            "--multicast-port",
            str(self.multicast_port),
        ]
        return args + self.extra

    def daemon(
        self,
        server_id: int | None = None,
        data_dir: Path | str | None = None,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        host: str | None = None,
        wait: bool = True,
        log_level: str = "INFO",
    ) -> Daemon:
        self._count += 1
        data = Path(data_dir) if data_dir else self.tmp / f"server-{server_id or self._count}"
        if self.secret is not None and "--insecure" not in (*self.extra, *args):
            provision_cluster_secret(data, self.secret)
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "tchat",
            "--daemon",
            *self.net_args(host),
            "--data-dir",
            str(data),
            "--log-level",
            log_level,
            *args,
        ]
        if server_id is not None:
            argv += ["--id", str(server_id)]
        proc = Daemon(f"daemon-{server_id or self._count}", argv, self.env)
        self.procs.append(proc)
        return proc.started() if wait else proc

    def client(
        self,
        name: str,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        host: str | None = None,
    ) -> Client:
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "tchat",
            "--headless",
            "--user",
            name,
            *self.net_args(host),
            *args,
        ]
        if "--identity" not in args:
            # One key per name: a later client of the name is its owner again, and each
            # name its own owner (one shared XDG key would make every name one account's).
            argv += ["--identity", str(self.tmp / "identities" / f"{name}.key")]
        proc = Client(name, argv, self.env)
        self.procs.append(proc)
        return proc

    def status_argv(self, wait: float, host: str | None = None) -> list[str]:
        """The ``tchat status --json`` command line for this cluster."""
        return [
            sys.executable,
            "-m",
            "tchat",
            "status",
            "--json",
            "--wait",
            str(wait),
            *self.net_args(host),
        ]

    def status_env(self, keyed: bool = True) -> dict[str, str]:
        """The environment of a ``tchat status``: with the cluster key (an operator's full
        view: users and rooms too), or without (what anyone on the LAN sees)."""
        env = dict(self.env)
        if self.secret is not None and keyed:
            env.setdefault("TCHAT_CLUSTER_KEY", self.secret.export_line())
        return env

    def status(
        self, wait: float = 0.5, host: str | None = None, keyed: bool = True
    ) -> dict[str, Any] | None:
        """``tchat status --json``; None when nothing answered. ``keyed``: as an operator
        with the cluster key (the full view), else as anyone on the LAN."""
        argv = self.status_argv(wait, host)
        env = self.status_env(keyed)
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=wait + 10
        )
        if done.returncode != 0:
            return None
        return dict(json.loads(done.stdout))

    def leader_of(self, daemons: Sequence[Daemon], timeout: float = DEFAULT_TIMEOUT) -> Daemon:
        """The daemon that the cluster's status names as leader (waits until there is one)."""

        def find() -> Daemon | None:
            status = self.status(0.3)
            if not status or not status.get("leader"):
                return None
            for d in daemons:
                if d.alive() and d.server_id == status["leader"]:
                    return d
            return None

        return wait_for(find, timeout, "a leader in tchat status")

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            for stream in (proc.popen.stdin, proc.popen.stdout, proc.popen.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close()
        if exc_type is not None:
            self.dump()

    def dump(self, lines: int = 60) -> None:
        """Every process's output tail, for a failing test's captured stdout."""
        for proc in self.procs:
            print(
                f"===== {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}): "
                f"{' '.join(proc.argv[2:])}"
            )
            print(proc.tail(lines))
            if isinstance(proc, Client):
                for event in proc.events[-lines:]:
                    print("   ", json.dumps(event))


@contextlib.contextmanager
def cluster(tmp: Path, **kw: Any) -> Iterator[Cluster]:
    c = Cluster(tmp, **kw)
    try:
        yield c
    finally:
        c.close()
