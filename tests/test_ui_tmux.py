"""End to end: the real ``tchat --user`` in tmux (send-keys, capture-pane) against real daemons."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cluster_harness import REPO, Client, Cluster, WaitTimeout, wait_for

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    """One private tmux server (its own socket): never touches the user's sessions."""

    def __init__(self, env: dict[str, str], exit_file: Path) -> None:
        self.socket = f"tchat-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.exit_file = exit_file

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=10,
            check=False,
        )
        return done.stdout

    def start(self, command: list[str], size: tuple[int, int]) -> None:
        """Run ``command`` in a fresh pane; its exit status lands in ``exit_file``."""
        width, height = size
        line = " ".join(_quote(part) for part in command)
        shell = f"{line}; echo $? > {_quote(str(self.exit_file))}"
        # remain-on-exit is set before the pane exists, so a fast exit still leaves its screen.
        self.run(
            "start-server",
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(width),
            "-y",
            str(height),
            shell,
        )

    def exit_status(self) -> str | None:
        """The command's exit status once it has exited, else None."""
        try:
            return self.exit_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def keys(self, text: str, enter: bool = True) -> None:
        self.run("send-keys", "-t", "t", "-l", text)
        if enter:
            self.run("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def wait_screen(self, text: str, timeout: float = 15.0) -> str:
        try:
            return wait_for(lambda: text in (s := self.screen()) and s, timeout, repr(text))
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc} on the tmux screen:\n{self.screen()}") from None

    def close(self) -> None:
        socket_path = self.run("display-message", "-p", "#{socket_path}").strip()
        self.run("kill-server")
        if socket_path:  # tmux 3.3 leaves the socket file behind
            Path(socket_path).unlink(missing_ok=True)


def tui_env(cluster: Cluster) -> dict[str, str]:
    """The environment of a tchat run in a private tmux server against ``cluster``."""
    env = dict(cluster.env, TERM="xterm-256color", PYTHONPATH=str(REPO))
    env.pop("TMUX", None)
    return env


def servers_and_bob(cluster: Cluster, room: str) -> Client:
    """Two daemons, and bob (headless) in ``room``: whom the client under test talks to."""
    for daemon in [cluster.daemon(server_id=i, wait=False) for i in (1, 2)]:
        daemon.started()
    bob = cluster.client("bob")
    bob.wait_event("ready", 15)
    bob.send(f"/join {room}")
    bob.wait_event("joined", room=room)
    return bob


def _quote(part: str) -> str:
    return "'" + part.replace("'", "'\\''") + "'"


def test_tchat_user_in_tmux(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        for daemon in daemons:
            daemon.started()
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        bob.send("/join lobby")
        bob.wait_event("joined", room="lobby")
        env = tui_env(cluster)
        tmux = Tmux(env, tmp_path / "tui.exit")
        command = [
            sys.executable,
            "-m",
            "tchat",
            "--user",
            "alice",
            "--theme",
            "light",
            *cluster.net_args(),
            "--log-file",
            str(tmp_path / "tui.log"),
        ]
        try:
            tmux.start(command, (100, 30))
            tmux.wait_screen("serving", 20)
            tmux.keys("/join lobby")
            tmux.wait_screen("joined #lobby")
            tmux.keys("hello via tmux")
            got = bob.wait_event("message", text="hello via tmux", timeout=15)
            assert got["from"] == "alice" and got["room"] == "lobby"
            bob.send("/say lobby \x1b]0;pwned\x07[bold]reply[/bold]")
            screen = tmux.wait_screen("[bold]reply[/bold]")
            assert "␛]0;pwned␇[bold]reply[/bold]" in screen
            tmux.keys("/quit")
            assert wait_for(tmux.exit_status, 15, "tchat to exit after /quit") == "0"
            wait_for(lambda: bob.user_names() == {"bob"}, 10, "alice logged out")
        finally:
            tmux.close()
    config = Path(env["XDG_CONFIG_HOME"]) / "tchat" / "config.toml"
    assert 'theme = "light"' in config.read_text()
    assert os.path.exists(tmp_path / "tui.log")


def test_tchat_server_dashboard_in_tmux(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        for daemon in [cluster.daemon(server_id=i, wait=False) for i in (1, 2)]:
            daemon.started()
        env = tui_env(cluster)
        tmux = Tmux(env, tmp_path / "dash.exit")
        command = [
            sys.executable,
            "-m",
            "tchat",
            "--server",
            "--id",
            "9",
            "--data-dir",
            str(tmp_path / "dash"),
            *cluster.net_args(),
            "--log-file",
            str(tmp_path / "dash.log"),
        ]
        try:
            tmux.start(command, (80, 24))
            screen = tmux.wait_screen("9 *", 20)
            tmux.wait_screen("self")
            assert "Ring" in screen and "Elections" in screen
            tmux.run("send-keys", "-t", "t", "F4")
            tmux.wait_screen("leader")
            tmux.keys("l", enter=False)
            status = wait_for(tmux.exit_status, 15, "the dashboard to leave and exit")
            log_tail = (tmp_path / "dash.log").read_text()[-3000:]
            assert status == "0", f"exit status {status}\n{tmux.screen()}\n{log_tail}"
        finally:
            tmux.close()


def test_fast_typing_and_a_multiline_paste_in_tmux(tmp_path: Path) -> None:
    """Keys in one burst arrive line by line; a bracketed paste is one message with its lines."""
    with Cluster(tmp_path) as cluster:
        bob = servers_and_bob(cluster, "lobby")
        env = tui_env(cluster)
        tmux = Tmux(env, tmp_path / "tui.exit")
        command = [sys.executable, "-m", "tchat", "--user", "alice", *cluster.net_args()]
        try:
            tmux.start(command, (100, 30))
            tmux.wait_screen("serving", 20)
            tmux.keys("/join lobby")
            tmux.wait_screen("joined #lobby")
            # One send-keys: the terminal hands tchat all of it in a single read.
            tmux.keys("one\rtwo\rthree\r", enter=False)
            for text in ("one", "two", "three"):
                bob.wait_event("message", text=text, timeout=15)
            tmux.run("set-buffer", "first line\nsecond line\nthird line")
            tmux.run("paste-buffer", "-p", "-t", "t")  # -p: bracketed, as the app asked
            tmux.wait_screen("third line")
            tmux.keys("", enter=True)
            got = bob.wait_event("message", text="first line\nsecond line\nthird line", timeout=15)
            assert got["from"] == "alice"
            screen = tmux.wait_screen("        second line")
            assert "<alice> first line" in screen
            tmux.keys("upper", enter=False)
            tmux.run("send-keys", "-t", "t", "M-Enter")  # ESC CR: a newline, not a send
            tmux.keys("lower", enter=True)
            bob.wait_event("message", text="upper\nlower", timeout=15)
            texts = [e["text"] for e in bob.of("message") if e["from"] == "alice"]
            assert texts == [
                "one",
                "two",
                "three",
                "first line\nsecond line\nthird line",
                "upper\nlower",
            ]
            tmux.keys("/quit")
            assert wait_for(tmux.exit_status, 15, "tchat to exit after /quit") == "0"
        finally:
            tmux.close()
