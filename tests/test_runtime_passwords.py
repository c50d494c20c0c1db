"""Real daemons: an account password logs a new machine in, and guessing is bounded (issue 15).

The password travels only inside the Noise session, the leader's runtime hashes and checks
it (argon2id), and the core adds the new machine's key to the account on that fact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tchat.core.messages import Register, Rejected, Welcome
from tchat.runtime.passwords import (
    CONCURRENT_HASHES,
    MAX_NAMES,
    QUEUED_HASHES,
    PasswordDesk,
    hasher,
    password_problem,
)
from tests.cluster_harness import Client, Cluster, wait_for
from tests.test_runtime_untrusted import RawSession

pytestmark = pytest.mark.timeout(180)

PASSWORD = "correct horse battery staple"


def machine(cluster: Cluster, name: str, key: str, password: str | None) -> Client:
    """A headless client of ``name`` on a machine whose identity is ``key`` (a file of its
    own), with ``--password-prompt`` and TCHAT_PASSWORD when ``password`` is given."""
    argv = ["--identity", str(cluster.tmp / "identities" / f"{key}.key")]
    if password is None:
        return cluster.client(name, argv)
    cluster.env["TCHAT_PASSWORD"] = password
    try:
        return cluster.client(name, [*argv, "--password-prompt"])
    finally:
        del cluster.env["TCHAT_PASSWORD"]


def test_a_password_logs_a_new_machine_in_and_its_key_is_enough_next_time(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        desk = machine(cluster, "alice", "desk", None)
        desk.wait_event("ready", 20)
        desk.send("/password short")
        desk.wait_event("error", 15, where=lambda e: "at least 8 bytes" in e["message"])
        desk.send(f"/password {PASSWORD}")
        desk.wait_event("ok", 20, op="password")
        assert PASSWORD not in "".join(desk.stdout_lines)  # the ok event names no password

        wrong = machine(cluster, "alice", "laptop", "not the password")
        event = wrong.wait_event("error", 20, fatal=True)
        assert "wrong password for 'alice'" in event["message"]
        assert wrong.wait_exit(10) == 2

        laptop = machine(cluster, "alice", "laptop", PASSWORD)
        laptop.wait_event("ready", 20)
        # Both machines are alice at once, and each gets her PMs.
        bob = cluster.client("bob")
        bob.wait_event("ready", 20)
        bob.send("/msg alice to both of you")
        desk.wait_event("message", 15, text="to both of you")
        laptop.wait_event("message", 15, text="to both of you")
        laptop.send("/quit")
        assert laptop.wait_exit(10) == 0
        # The laptop's key is the account's now: no password needed.
        again = machine(cluster, "alice", "laptop", None)
        again.wait_event("ready", 20)
        # The laptop is lost: the desk lists the account's devices and removes it.
        desk.send("/devices remove 2")
        desk.wait_event("error", 10, where=lambda e: "no such device" in e["message"])
        desk.send("/devices")
        listing = desk.wait_event("devices", 15)
        assert [d["this"] for d in listing["devices"]] == [True, False]
        assert all(d["fingerprint"].startswith("SHA256:") for d in listing["devices"])
        desk.send("/devices remove 2")
        desk.wait_event("ok", 15, op="remove-device")
        gone = again.wait_event("error", 15, fatal=True)
        assert "key was removed" in gone["message"]
        refused = machine(cluster, "alice", "laptop", None)
        assert "belongs to another key" in refused.wait_event("error", 20, fatal=True)["message"]


def test_an_account_without_a_password_says_how_to_get_in(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        machine(cluster, "carol", "home", None).wait_event("ready", 20)
        away = machine(cluster, "carol", "work", "any password at all")
        event = away.wait_event("error", 20, fatal=True)
        assert (
            "this account has no password; copy the key or set one with /password"
            in (event["message"])
        )


def test_online_guessing_is_rate_limited_per_account(tmp_path: Path) -> None:
    """Each guess costs the leader an argon2id hash: past the account's burst (5) a guess
    is refused at once, without hashing, and every refusal is counted."""
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        owner = machine(cluster, "dave", "home", None)
        owner.wait_event("ready", 20)
        owner.send(f"/password {PASSWORD}")
        owner.wait_event("ok", 20, op="password")
        reasons = []
        for guess in range(8):
            session = RawSession(daemon.addr)
            try:
                register = Register("dave", f"guess-{guess}", session.addr, None, False, False, 1)
                signed = session.signed(register)
                session.send(replace(signed, password=f"guess {guess:04d}"))
                reply = session.until(lambda m: isinstance(m, Rejected | Welcome))
                assert isinstance(reply, Rejected)
                reasons.append(reply.reason)
            finally:
                session.close()
        assert reasons[:5] == ["wrong password for 'dave'"] * 5
        assert all(r.startswith("too many password attempts for 'dave'") for r in reasons[5:])
        # The owner, with the key, is never held back by the guesses.
        owner.send("/quit")
        assert owner.wait_exit(10) == 0
        machine(cluster, "dave", "home", None).wait_event("ready", 20)
        wait_for(lambda: daemon.alive, 1, "the daemon lives")


class _Node:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1


def test_the_guessing_bounds_per_account_per_host_and_in_all() -> None:
    """Many hosts guessing one account get 5 guesses, then one per 12 s; one host guessing
    many accounts gets 10, then one per 3 s; and at most 9 hashes are ever queued."""
    now = 100.0
    desk = PasswordDesk(_Node(), None, lambda: now, encrypted=True)  # type: ignore[arg-type]
    try:
        by_name = [desk._admit(f"10.0.0.{n}", "victim", now) for n in range(8)]
        assert by_name[:5] == [""] * 5
        assert all(r.startswith("too many password attempts for 'victim'") for r in by_name[5:])
        assert desk._admit("10.0.0.99", "victim", now + 12.0) == ""  # one more per 12 s
        by_host = [desk._admit("10.9.9.9", f"name{n}", now) for n in range(13)]
        assert by_host[:10] == [""] * 10
        assert all("from this host" in r for r in by_host[10:])
        desk.queued = CONCURRENT_HASHES + QUEUED_HASHES
        assert "busy" in desk._admit("10.1.1.1", "someone", now)
        assert desk.node.counters["password-busy"] == 1  # type: ignore[attr-defined]
        # The tables are bounded: a flood of names keeps MAX_NAMES buckets at most.
        for n in range(MAX_NAMES + 10):
            desk.names.bucket(f"n{n}", now)
        assert len(desk.names.buckets) == MAX_NAMES
    finally:
        desk.close()


def test_password_bounds_and_the_hash_parameters() -> None:
    assert password_problem("1234567") == "a password has at least 8 bytes"
    assert password_problem("12345678") is None
    assert password_problem("é" * 512) is None  # 1024 bytes
    assert password_problem("é" * 513) == "a password has at most 1024 bytes"
    phc = hasher().hash("12345678")
    assert phc.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert len(phc) < 128


def test_a_password_is_never_sent_without_encryption(tmp_path: Path) -> None:
    env = dict(os.environ, TCHAT_PASSWORD=PASSWORD, XDG_DATA_HOME=str(tmp_path / "d"))
    argv = [sys.executable, "-m", "tchat", "--headless", "--user", "erin", "--host", "127.0.0.1"]
    done = subprocess.run(
        [*argv, "--insecure", "--password-prompt"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "--password-prompt cannot go with --insecure" in done.stderr
    # /password on an --insecure client is refused before anything is sent.
    del env["TCHAT_PASSWORD"]
    done = subprocess.run(
        [*argv, "--insecure", "--discovery-hint", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        input=f"/password {PASSWORD}\n/quit\n",
    )
    errors = [line for line in done.stdout.splitlines() if '"error"' in line]
    assert errors and "only over an encrypted session" in errors[0], done.stdout
    assert PASSWORD not in done.stdout + done.stderr
