"""Rotating the cluster secret one server at a time, the cluster up throughout (issue 15)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from cluster_harness import REPO, Client, Cluster, Daemon, wait_for

from tchat.crypto.cluster import ClusterSecret


def key_file(path: Path, secret: ClusterSecret) -> str:
    path.write_text(secret.export_line() + "\n")
    path.chmod(0o600)
    return str(path)


def restart(cluster: Cluster, daemon: Daemon, args: list[str]) -> Daemon:
    """A graceful stop, then the same server (ID, data dir) with ``args``: once it is a
    backup again (or leads), the rolling restart goes on."""
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0
    again = cluster.daemon(daemon.server_id, data_dir=daemon.data_dir, args=args)
    again.wait_line(r"\[(admitted|serving)\]", 20)
    return again


def chat(alice: Client, bob: Client, texts: list[str], text: str) -> None:
    """One PM acknowledged and received: the cluster serves at this step."""
    texts.append(text)
    alice.send(f"/msg bob {text}")
    bob.wait_event("message", 20, text=text)


def unpinned_status(cluster: Cluster, home: Path) -> dict[str, object]:
    """``tchat status --json`` as a LAN user who never pinned this cluster (no key)."""
    env = {**cluster.status_env(keyed=False), "XDG_DATA_HOME": str(home)}
    done = subprocess.run(
        cluster.status_argv(0.6), capture_output=True, text=True, env=env, cwd=REPO, timeout=15
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_rolling_rotation_keeps_the_cluster_up_and_shuts_the_old_key_out(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path) as cluster:
        old = cluster.secret
        assert old is not None
        new = ClusterSecret.generate()
        old_file = key_file(tmp_path / "old.key", old)
        new_file = key_file(tmp_path / "new.key", new)
        daemons = [cluster.daemon(server_id=i) for i in (1, 2, 3)]
        alice, bob = cluster.client("alice"), cluster.client("bob")
        alice.wait_event("ready", 20)
        bob.wait_event("ready", 20)
        texts: list[str] = []
        chat(alice, bob, texts, "before")

        steps = [
            ["--next-cluster-key-file", new_file],  # 1. the new key as next
            ["--cluster-key-file", new_file, "--previous-cluster-key-file", old_file],  # 2.
            ["--cluster-key-file", new_file],  # 3. the old key dropped
        ]
        for step, args in enumerate(steps, 1):
            for i, daemon in enumerate(list(daemons)):
                # Sent as the server stops: acknowledged by whichever leader there is.
                texts.append(f"while server {daemon.server_id} restarts at step {step}")
                alice.send(f"/msg bob {texts[-1]}")
                daemons[i] = restart(cluster, daemon, args)
                chat(alice, bob, texts, f"step {step} server {daemon.server_id}")
                if step == 2 and i == 0:
                    # Servers answer under two keys now: one cluster to a user with no pin
                    # (the old key vouches for the new), not a choice between two.
                    seen = unpinned_status(cluster, tmp_path / "stranger")
                    assert seen["cluster"] == {
                        "fingerprint": new.public_key.fingerprint,
                        "pinned": None,
                        "rotating_from": old.public_key.fingerprint,
                    }, seen
                    assert {s["id"] for s in seen["servers"] if s["answered"]} == {1, 2, 3}

        # Nothing lost, nothing twice: every PM reached bob once (one sender: in order).
        got = [e["text"] for e in bob.of("message")]
        assert got == texts, (got, texts)
        # The clients followed the vouched key, without a key-changed stop; the pin is new.
        assert not alice.of("error") and not bob.of("error")
        pins = (tmp_path / "data" / "tchat" / "known_clusters").read_text()
        assert new.public_key.fingerprint in pins and old.public_key.fingerprint not in pins

        # A server that kept only the old key is refused by every one of them.
        intruder = cluster.daemon(server_id=9, args=["--cluster-key-file", old_file])
        wait_for(
            lambda: sum(d.drop_count("bad-signature") for d in daemons) >= 3,
            15,
            "the old key's datagrams refused",
        )
        assert not any("[admitted]" in line for line in intruder.stderr_lines)
        chat(alice, bob, texts, "after")
