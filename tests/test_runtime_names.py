"""Real daemons and headless clients refuse deceptive names (issue 15, part 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tchat.core.messages import Register, Rejected
from tests.cluster_harness import Cluster, wait_for
from tests.test_runtime_untrusted import RawSession

pytestmark = pytest.mark.timeout(90)


def test_look_alike_and_invisible_names_are_refused_on_a_real_cluster(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        # A headless client is told at once, before it registers anything.
        mallory = cluster.client("\u0430lice")  # Cyrillic а
        error = mallory.wait_event("error", 15)
        assert "Cyrillic" in error["message"] and "U+0430" in error["message"], error
        assert mallory.wait_exit(10) != 0
        # A modified client skips that check: the leader refuses it the same.
        for name, words in (("al1ce", "too similar to 'alice'"), ("bob\u3164", "U+3164")):
            raw = RawSession(daemon.addr)
            try:
                raw.send(Register(name, f"raw-{len(name)}", raw.addr, None, False, False, 1))
                refused = raw.until(lambda m: isinstance(m, Rejected))
                assert isinstance(refused, Rejected) and words in refused.reason, refused
            finally:
                raw.close()
        assert cluster.client("bob").wait_event("ready", 15)["user"] == "bob"
        wait_for(lambda: alice.user_names() == {"alice", "bob"}, 15, "alice sees bob alone")
        seen = {u["name"] for e in alice.of("users") for u in e["users"]}
        assert seen == {"alice", "bob"}, seen
