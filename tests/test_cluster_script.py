"""scripts/cluster.sh for real: a detached tmux cluster on loopback, a failover, a clean stop."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import Client, free_udp_port

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
        # A port of this test's own: the script would take 47470, which other runs share.
        self.port = free_udp_port()

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

    def status(self, keyed: bool = True) -> dict[str, Any] | None:
        """``tchat status --json``; with the demo's key file, so users and rooms are shown."""
        key = ["--cluster-key-file", str(self.data / "cluster.key")] if keyed else []
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
                *key,
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

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.session, *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()

    def pane(self, role: str) -> str:
        """The pane id of a role (server-1, client-alice...), or ""."""
        for line in self.tmux(
            "list-panes", "-s", "-t", self.session, "-F", "#{@tchat_role} #{pane_id}"
        ).splitlines():
            found, _, pane = line.partition(" ")
            if found == role:
                return pane
        return ""

    def wait_pid(self, role: str, other_than: int = 0, timeout: float = 15.0) -> int:
        """The live pid of role's process (a new one when other_than is given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pids().get(role, 0)
            if pid and pid != other_than and alive(pid):
                return pid
            time.sleep(0.05)
        raise AssertionError(f"no live {role} within {timeout}s\n{self.panes()}")

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

    def __init__(self, session: str, size: tuple[int, int] = (100, 30)) -> None:
        self.session = session
        # wait-for remembers a signal sent before anyone waits, so this cannot race.
        subprocess.run(
            ["tmux", "-L", session, "set-hook", "-g", "client-attached", f"wait-for -S {ATTACHED}"],
            check=True,
        )
        self.master, slave = pty.openpty()
        columns, rows = size  # the terminal the README's user has
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
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
    started = cluster.script(
        "--detach", "--servers", "3", "--clients", "2", "--discovery-port", str(cluster.port)
    )
    assert started.returncode == 0, started.stderr
    assert cluster.has_session()
    first = cluster.wait_status(
        lambda s: len(answered(s)) == 3 and s["leader"] in {101, 102, 103},
        "a leader answered for by all 3 servers",
    )
    pids = cluster.pids()
    assert set(pids) == {"server-1", "server-2", "server-3", "client-alice", "client-bob"}
    assert all(alive(pid) for pid in pids.values()), cluster.panes()
    # The servers share one key, made once for the demo, private, and in no command line.
    key_file = cluster.data / "cluster.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) == 44 and not processes_mentioning(key)
    assert cluster.data.stat().st_mode & 0o777 == 0o700
    anonymous = cluster.status(keyed=False)
    assert anonymous is not None and anonymous["users"] is None, anonymous
    assert len(answered(anonymous)) == 3

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


def test_discovery_port_is_kept_and_a_hand_client_finds_the_cluster(cluster: Cluster) -> None:
    # Headless clients: they used to wait seconds on stop for a logout the dead leader
    # could not acknowledge (old code: 5.3 s).
    started = cluster.script(
        "--detach",
        "--servers",
        "1",
        "--clients",
        "1",
        "--headless",
        "--discovery-port",
        str(cluster.port),
    )
    assert started.returncode == 0, started.stderr
    hand = f"--host 127.0.0.1 --discovery-port {cluster.port}"
    assert f".venv/bin/tchat' --user NAME {hand}" in started.stdout, started.stdout
    cluster.wait_status(
        lambda s: s["leader"] == 101 and [u["name"] for u in s["users"]] == ["alice"],
        "alice served by a leader",
    )
    # The printed command, by hand: another client finds the cluster on that port.
    env = os.environ | {"XDG_DATA_HOME": str(cluster.data / "hand"), "PYTHONUNBUFFERED": "1"}
    bob = Client(
        "bob", [sys.executable, "-m", "tchat", "--headless", "--user", "bob", *hand.split()], env
    )
    try:
        bob.wait_event("ready", timeout=20)
        bob.send("/quit")
        assert bob.wait_exit(10) == 0
    finally:
        bob.kill()
    began = time.monotonic()
    stopped = cluster.script("stop", timeout=30)
    took = time.monotonic() - began
    print(f"stop, detached: {took:.2f} s")
    assert stopped.returncode == 0, stopped.stderr
    assert took < 3.0, f"stop took {took:.2f} s"
    # Started again without --discovery-port: the same port, from the data dir.
    again = cluster.script("--detach", "--servers", "1", "--clients", "1", "--headless")
    assert again.returncode == 0, again.stderr
    assert cluster.discovery_port == cluster.port
    assert hand in again.stdout
    cluster.wait_status(lambda s: s["leader"] == 101, "the leader again, on the stored port")
    assert cluster.script("stop", timeout=30).returncode == 0


def test_layout_at_100x30_client_restart_and_stop_attached(cluster: Cluster) -> None:
    started = cluster.script(
        "--detach", "--servers", "2", "--clients", "2", "--discovery-port", str(cluster.port)
    )
    assert started.returncode == 0, started.stderr
    # The clients are the Textual app, not the headless fallback (a renamed entry point
    # once turned every demo client headless without a word in any test).
    assert "clients run headless" not in started.stdout, started.stdout
    cluster.wait_status(lambda s: len(answered(s)) == 2 and bool(s["leader"]), "a leader")
    terminal = Terminal(cluster.session, size=(100, 30))
    try:
        assert terminal.attached(), "tmux attach did not attach"
        alice = cluster.pane("client-alice")
        assert alice, cluster.panes()
        # Each client has a window of its own: all of the terminal but tmux's status line.
        deadline = time.monotonic() + 10
        size = ""
        while time.monotonic() < deadline:
            size = cluster.tmux(
                "display",
                "-p",
                "-t",
                alice,
                "#{pane_width}x#{pane_height} #{window_panes} #{pane_active}",
            )
            if size.startswith("100x29 "):
                break
            time.sleep(0.05)
        assert size == "100x29 1 1", size
        assert cluster.tmux("display", "-p", "-t", cluster.session, "#{window_name}") == "alice"
        servers = cluster.tmux("list-panes", "-t", cluster.pane("server-1"), "-F", "#{@tchat_role}")
        assert servers.split() == ["server-1", "server-2"]

        # prefix+S shows `status` in a popup of the whole terminal, 98x28 inside its
        # border at 100x30: the status of this cluster fits, lines wrapped, without scrolling.
        shown = cluster.script("status", timeout=30).stdout.splitlines()
        assert sum(1 + max(0, len(line) - 1) // 98 for line in shown) + 1 <= 28, shown
        terminal.press("S")
        deadline = time.monotonic() + 15
        while not processes_mentioning(f"{cluster.session} --notify _status-popup"):
            assert time.monotonic() < deadline, "no status popup after prefix+S"
            time.sleep(0.05)
        popup = processes_mentioning(f"{cluster.session} --notify _status-popup")[0]
        assert not processes_mentioning("less -P"), "the status should fit without paging"
        os.write(terminal.master, b"\r")  # kept by the popup's pty until `read` takes it
        assert exited(popup, timeout=10), "Enter did not close the status popup"
        # client NAME: one more client, in a window of its own, against the running cluster.
        added = cluster.script("client", "carol", timeout=30)
        assert added.returncode == 0, added.stdout + added.stderr
        cluster.wait_pid("client-carol")
        cluster.wait_status(
            lambda s: "carol" in {u["name"] for u in s["users"]}, "carol among the users"
        )
        # A client that quit comes back with prefix+R.
        old = cluster.wait_pid("client-alice")
        cluster.tmux("send-keys", "-t", alice, "/quit", "Enter")
        assert exited(old, timeout=15), cluster.panes()
        terminal.press("R")
        cluster.wait_pid("client-alice", other_than=old)

        pids = cluster.pids()
        began = time.monotonic()
        stopped = cluster.script("stop", timeout=30)
        took = time.monotonic() - began
        print(f"stop, attached: {took:.2f} s")
        assert stopped.returncode == 0, stopped.stderr
        assert took < 3.0, f"stop took {took:.2f} s"
        assert not [pid for pid in pids.values() if alive(pid)]
        assert not cluster.has_session()
    finally:
        terminal.close()
