"""scripts/cluster.sh for real: a detached tmux cluster on loopback, a failover, a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cluster.sh"
UP = 30.0  # a leader among three fresh daemons, on a loaded CI box
ATTACHED = "tchat-test-attached"  # tmux wait-for channel


class Cluster:
    """One run of the script, under a session name and data dir of this test only."""

    def __init__(self, tmp_path: Path) -> None:
        self.session = f"tchat-test-{os.getpid()}"
        self.data = tmp_path / "cluster"

    def script(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), "--data-dir", str(self.data), "--session", self.session, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    @property
    def discovery_port(self) -> int:
        state = (self.data / "cluster.state").read_text()
        match = re.search(r"^DISCOVERY_PORT=(\d+)$", state, re.M)
        assert match, state
        return int(match.group(1))

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in (self.data / "pids").glob("*.pid")}

    def status(self) -> dict[str, Any] | None:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tchat",
                "status",
                "--json",
                "--host",
                "127.0.0.1",
                "--discovery-port",
                str(self.discovery_port),
                "--wait",
                "0.4",
            ],
            capture_output=True,
            text=True,
            timeout=15,
        )
        return json.loads(done.stdout) if done.returncode == 0 else None

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = UP
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status()
            if last is not None and predicate(last):
                return last
        raise AssertionError(f"no {what} within {timeout}s; last status {last}\n{self.panes()}")

    def panes(self) -> str:
        """What every pane shows, for failure messages."""
        out = []
        listing = subprocess.run(
            [
                "tmux",
                "-L",
                self.session,
                "list-panes",
                "-s",
                "-t",
                self.session,
                "-F",
                "#{pane_id} #{@tchat_title}",
            ],
            capture_output=True,
            text=True,
        )
        for line in listing.stdout.splitlines():
            pane, _, title = line.partition(" ")
            shown = subprocess.run(
                ["tmux", "-L", self.session, "capture-pane", "-p", "-t", pane],
                capture_output=True,
                text=True,
            ).stdout.strip()
            out.append(f"--- {title}:\n" + "\n".join(shown.splitlines()[-12:]))
        return "\n".join(out)

    def has_session(self) -> bool:
        return (
            subprocess.run(
                ["tmux", "-L", self.session, "has-session", "-t", self.session], capture_output=True
            ).returncode
            == 0
        )


def answered(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in status["servers"] if s["answered"]]


def epoch(status: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(part) for part in str(status["epoch"]).split(":"))


def alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before open, or between open and read
        return False


def exited(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd, no polling) until pid is gone or a zombie."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return not alive(pid)


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class Terminal:
    """A person at a terminal attached to the session: presses tmux keys through a real pty."""

    def __init__(self, session: str) -> None:
        self.session = session
        # wait-for remembers a signal sent before anyone waits, so this cannot race.
        subprocess.run(
            ["tmux", "-L", session, "set-hook", "-g", "client-attached", f"wait-for -S {ATTACHED}"],
            check=True,
        )
        self.master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "TMUX"} | {"TERM": "xterm-256color"}
        self.proc = subprocess.Popen(
            ["tmux", "-L", session, "attach", "-t", session],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()
        prefix = subprocess.run(
            ["tmux", "-L", session, "show-options", "-gv", "prefix"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        # C-x is byte (x - 'a' + 1): the control code a terminal sends for it.
        assert re.fullmatch(r"C-[a-z]", prefix), f"unexpected tmux prefix {prefix!r}"
        self.prefix = bytes([ord(prefix[2]) - ord("a") + 1])

    def _read(self) -> None:
        """Keep reading the screen tmux draws, so its client never blocks on a full pty."""
        with contextlib.suppress(OSError):
            while os.read(self.master, 65536):
                pass

    def attached(self, timeout: float = 10.0) -> bool:
        """Wait for the client-attached hook (set before attaching) to signal its channel."""
        try:
            waited = subprocess.run(
                ["tmux", "-L", self.session, "wait-for", ATTACHED], timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return False
        return waited.returncode == 0

    def press(self, key: str) -> None:
        os.write(self.master, self.prefix + key.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path)
    yield made
    if made.has_session():  # the test failed before its own stop
        made.script("stop", timeout=30)
        subprocess.run(["tmux", "-L", made.session, "kill-server"], capture_output=True)


def test_detached_cluster_fails_over_and_stops_clean(cluster: Cluster) -> None:
    started = cluster.script("--detach", "--servers", "3", "--clients", "2")
    assert started.returncode == 0, started.stderr
    assert cluster.has_session()
    first = cluster.wait_status(
        lambda s: len(answered(s)) == 3 and s["leader"] in {101, 102, 103},
        "a leader answered for by all 3 servers",
    )
    pids = cluster.pids()
    assert set(pids) == {"server-1", "server-2", "server-3", "client-alice", "client-bob"}
    assert all(alive(pid) for pid in pids.values()), cluster.panes()

    killed = cluster.script("kill-leader", timeout=30)
    assert killed.returncode == 0, killed.stdout + killed.stderr
    old_leader = first["leader"]
    victim = pids[f"server-{old_leader - 100}"]
    assert f"pid {victim}" in killed.stdout
    assert exited(victim, timeout=5.0)
    second = cluster.wait_status(
        lambda s: (
            s["leader"] not in (0, None, old_leader)
            and epoch(s) > epoch(first)
            and len(answered(s)) == 2
        ),
        "a new leader with a higher epoch",
    )
    assert old_leader not in {s["id"] for s in answered(second)}

    restarted = cluster.script("restart-dead", timeout=30)
    assert restarted.returncode == 0 and f"server(s) {old_leader - 100}" in restarted.stdout
    cluster.wait_status(
        lambda s: len(answered(s)) == 3 and s["leader"] == second["leader"],
        "the old leader back as a backup",
    )

    # The same failover from the keyboard: prefix+K kills the leader, prefix+R restarts it.
    terminal = Terminal(cluster.session)
    try:
        assert terminal.attached(), "tmux attach did not attach"
        terminal.press("K")
        third = cluster.wait_status(
            lambda s: s["leader"] not in (0, None, second["leader"]) and epoch(s) > epoch(second),
            "a new leader after prefix+K",
        )
        assert not alive(pids[f"server-{second['leader'] - 100}"])
        terminal.press("R")
        cluster.wait_status(
            lambda s: len(answered(s)) == 3 and s["leader"] == third["leader"],
            "every server back after prefix+R",
        )
    finally:
        terminal.close()

    pids = cluster.pids()
    # Where -L puts the server's socket (tmux's #{socket_path} sometimes expands to nothing).
    socket = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / cluster.session
    assert socket.is_socket()
    stopped = cluster.script("stop", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert not cluster.has_session()
    assert not socket.exists()
    assert not [pid for pid in pids.values() if alive(pid)]
    assert not processes_mentioning(str(cluster.data))
    assert not processes_mentioning(f"--discovery-port {cluster.discovery_port}")
