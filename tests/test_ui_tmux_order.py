"""End to end in tmux: the bell on a mention, and a message typed with every server down.

The real ``tchat --user alice`` runs in a private tmux server at 100x30 against real daemons
on 127.0.0.1; headless clients speak to it. Every wait has a deadline (``wait_for``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster_harness import Cluster, Daemon, wait_for
from tests.test_ui_tmux import Tmux, _quote, servers_and_bob, tui_env

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def tui(cluster: Cluster, tmp: Path) -> tuple[Tmux, list[str]]:
    env = tui_env(cluster)
    command = [
        sys.executable,
        "-m",
        "tchat",
        "--user",
        "alice",
        *cluster.net_args(),
        "--log-file",
        str(tmp / "tui.log"),
    ]
    return Tmux(env, tmp / "tui.exit"), command


@contextlib.contextmanager
def running(tmux: Tmux, command: list[str]) -> Iterator[Tmux]:
    try:
        tmux.start(command, (100, 30))
        yield tmux
    finally:
        tmux.close()


def test_a_mention_rings_the_terminal_bell_in_tmux(tmp_path: Path) -> None:
    """A plain line stays quiet; a line naming alice rings: tmux sees the BEL (alert-bell)."""
    rang = tmp_path / "bell"
    with Cluster(tmp_path) as cluster:
        bob = servers_and_bob(cluster, "lobby")
        tmux, command = tui(cluster, tmp_path)
        with running(tmux, command):
            # tmux runs the hook for every bell in a window (monitor-bell and bell-action
            # are on by default); the file is the event the test waits on.
            tmux.run(
                "set-hook", "-g", "alert-bell", f"run-shell 'echo rang >> {_quote(str(rang))}'"
            )
            tmux.wait_screen("serving", 20)
            tmux.keys("/join lobby")
            tmux.wait_screen("joined #lobby")
            bob.send("/say lobby a line for everyone")
            tmux.wait_screen("<bob> a line for everyone")
            assert not rang.exists(), "a line without a mention rang the bell"
            assert tmux.run("display-message", "-p", "#{window_bell_flag}").strip() == "0"
            bob.send("/say lobby alice: are you there?")
            tmux.wait_screen("<bob> alice: are you there?")
            wait_for(rang.exists, 15, "tmux to see the bell (alert-bell hook)")
            assert tmux.run("display-message", "-p", "#{window_bell_flag}").strip() == "1"
            assert rang.read_text().count("rang") == 1
            tmux.keys("/quit")
            assert wait_for(tmux.exit_status, 15, "tchat to exit after /quit") == "0"


def _tui_pid(tmux: Tmux) -> int:
    """The tchat process in the pane (the pane's shell runs it, then writes its status)."""
    shell = tmux.run("display-message", "-p", "#{pane_pid}").strip()
    children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
    assert len(children) == 1, f"expected one child of the pane's shell, got {children}"
    return int(children[0])


def _down(daemons: list[Daemon]) -> None:
    for daemon in daemons:
        daemon.kill()  # kill -9 by PID: processes this test started


def test_a_line_typed_with_every_server_down_lands_in_the_committed_order(
    tmp_path: Path,
) -> None:
    """Issue 16, item 6: alice types during an outage; carol's line is committed before
    alice's comes back. alice's line shows pending, then moves below carol's: the order
    carol sees, not the order alice typed."""
    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2)]
        for daemon in daemons:
            daemon.started()
        carol = cluster.client("carol")
        carol.wait_event("ready", 15)
        carol.send("/join lobby")
        carol.wait_event("joined", room="lobby")
        tmux, command = tui(cluster, tmp_path)
        paused: int | None = None
        pid: int | None = None
        with running(tmux, command):
            try:
                tmux.wait_screen("serving", 20)
                tmux.keys("/join lobby")
                tmux.wait_screen("joined #lobby")
                leader = cluster.leader_of(daemons)
                _down([leader, *(d for d in daemons if d is not leader)])
                tmux.keys("alice typed this first")
                tmux.wait_screen("<alice> alice typed this first  (sending)")
                # Hold alice's client still, so carol's line is committed before alice's
                # resend whatever the machine's load: the order to show is then known.
                pid = paused = _tui_pid(tmux)
                os.kill(paused, signal.SIGSTOP)
                daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2)]
                for daemon in daemons:
                    daemon.started()
                carol.send("/say lobby carol said this after the restart")
                # Delivered back to carol: committed, before alice can resend anything.
                carol.wait_event("message", 30, text="carol said this after the restart")
                os.kill(paused, signal.SIGCONT)
                paused = None
                carol.wait_event("message", 30, text="alice typed this first")
                order = [e["text"] for e in carol.of("message") if e["room"] == "lobby"]
                assert order == ["carol said this after the restart", "alice typed this first"]
                carol_line = "<carol> carol said this after the restart"
                alice_line = "<alice> alice typed this first"

                def settled() -> str:
                    screen = tmux.screen()
                    shown = carol_line in screen and alice_line in screen
                    return screen if shown and "(sending)" not in screen else ""

                screen = wait_for(settled, 30, "carol's line, then alice's, no longer pending")
                assert screen.count("alice typed this first") == 1
                assert screen.index(carol_line) < screen.index(alice_line), screen
            finally:
                if paused is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(paused, signal.SIGCONT)
            # No /quit: Textual takes the SIGCONT for a return from Ctrl+Z and restarts its
            # input thread, which may leave the keyboard half-read. Closing tmux hangs it up.
        if pid is not None:
            _reap(pid)


def _reap(pid: int) -> None:
    """Make sure the client we started is gone (tmux's hang-up ends it), by its PID."""
    try:
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, "tchat to exit")
    except AssertionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def test_scrollback_from_the_input_line_in_tmux(tmp_path: Path) -> None:
    """PgUp and End work while typing; scrolled up, new lines show as "-- more (N new) --"."""
    with Cluster(tmp_path) as cluster:
        bob = servers_and_bob(cluster, "lobby")
        tmux, command = tui(cluster, tmp_path)
        with running(tmux, command):
            tmux.wait_screen("serving", 20)
            tmux.keys("/join lobby")
            tmux.wait_screen("joined #lobby")
            for i in range(60):
                bob.send(f"/say lobby backlog line {i:02d}")
            tmux.wait_screen("backlog line 59")
            tmux.keys("half a sentence", enter=False)  # the focus stays in the input
            tmux.run("send-keys", "-t", "t", "PPage")
            wait_for(lambda: "backlog line 59" not in tmux.screen(), 15, "PgUp to scroll up")
            bob.send("/say lobby arrived while scrolled up")
            screen = tmux.wait_screen("-- more (1 new, End) --")
            assert "arrived while scrolled up" not in screen
            tmux.run("send-keys", "-t", "t", "End")
            screen = tmux.wait_screen("<bob> arrived while scrolled up")
            assert "-- more" not in screen
            tmux.keys(" and the rest")  # what was typed before the keys is still there
            got = bob.wait_event("message", 15, text="half a sentence and the rest")
            assert got["from"] == "alice"
            tmux.keys("/quit")
            assert wait_for(tmux.exit_status, 15, "tchat to exit after /quit") == "0"
