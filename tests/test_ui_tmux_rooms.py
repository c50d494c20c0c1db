"""End to end, rooms kept across a logout (issue 16): the real ``tchat --user`` in tmux
quits and logs in again, and is back in its room with what was said meanwhile unread, and
in its private conversation where nothing was said since (the Welcome's peers)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.cluster_harness import Cluster, wait_for
from tests.test_ui_tmux import Tmux, servers_and_bob, tui_env

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def test_rooms_kept_across_a_logout(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        bob = servers_and_bob(cluster, "ops")
        env = tui_env(cluster)
        command = [sys.executable, "-m", "tchat", "--user", "alice", *cluster.net_args()]

        first = Tmux(env, tmp_path / "first.exit")
        try:
            first.start(command, (100, 30))
            first.wait_screen("serving", 20)
            first.keys("/join ops")
            first.wait_screen("joined #ops")
            first.keys("/msg bob a quiet word")
            bob.wait_event("message", text="a quiet word", timeout=15)
            first.keys("/quit")
            assert wait_for(first.exit_status, 15, "tchat to exit after /quit") == "0"
        finally:
            first.close()
        wait_for(lambda: bob.user_names() == {"bob"}, 10, "alice logged out")
        for text in ("while alice was away", "and a second line"):
            bob.send(f"/say ops {text}")
            bob.wait_event("message", text=text, timeout=15)

        again = Tmux(env, tmp_path / "again.exit")
        try:
            again.start(command, (100, 30))
            again.wait_screen("serving", 20)
            # Back in #ops without a /join, with bob's two lines unread.
            wait_for(
                lambda: re.search(r"#ops 2\b", again.screen()),
                15,
                "#ops with 2 unread in the conversation list",
            )
            again.run("send-keys", "-t", "t", "M-2")  # status is 1, #ops 2
            again.wait_screen("and a second line")
            assert "while alice was away" in again.screen()
            # The quiet conversation with bob is listed too (nothing replayed: no count).
            assert "@bob" in again.screen() and not re.search(r"@bob \d", again.screen())
            again.keys("back again")
            got = bob.wait_event("message", text="back again", timeout=15)
            assert got["from"] == "alice" and got["room"] == "ops"
            again.keys("/quit")
            assert wait_for(again.exit_status, 15, "tchat to exit after /quit") == "0"
        finally:
            again.close()
