"""Real daemons: a name is bound to a key, a login proves it on its own session (issue 15)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tchat.core.messages import (
    Chat,
    HistoryReply,
    HistoryRequest,
    Message,
    Register,
    Rejected,
    Replay,
    SendChat,
    SessionFrame,
    Submit,
    Welcome,
)
from tchat.core.vclock import EMPTY_CLOCK
from tchat.runtime import connection
from tchat.runtime.transport import Transport
from tests.cluster_harness import Cluster, wait_for
from tests.test_runtime_transport import Inbox, on_uvloop, options, wait_until
from tests.test_runtime_untrusted import RawSession

pytestmark = pytest.mark.timeout(120)


def answer(session: RawSession, seen: list[Message]) -> Message:
    """The next Welcome or Rejected on ``session``; what came before it goes to ``seen``."""

    def found(message: Message) -> bool:
        seen.append(message)
        return isinstance(message, Welcome | Rejected)

    return session.until(found)


def test_a_login_proof_is_good_for_its_own_session_only(tmp_path: Path) -> None:
    """A Register captured on one session and replayed on another logs nobody in."""
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        honest, thief = RawSession(daemon.addr), RawSession(daemon.addr)
        try:
            register = Register("alice", "alice-1", thief.addr, None, False, False, 1)
            # Signed by alice for her session, sent by the thief on his.
            signed = honest.signed(register)
            thief.send(signed)
            refused = thief.until(lambda m: isinstance(m, Rejected | Welcome))
            assert refused == Rejected("login proof failed")
            wait_for(lambda: daemon.drop_count("bad-proof") == 1, 10, "the drop counted")
        finally:
            honest.close()
            thief.close()


def test_a_client_id_is_no_credential(tmp_path: Path) -> None:
    """With alice's client ID a stranger (his own key, his own session) could post as her,
    read her PMs and take her session over: now the leader serves a client ID only on the
    session that proved its login."""
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        alice = RawSession(daemon.addr)
        stranger = RawSession(daemon.addr)
        try:
            alice.send(Register("alice", "alice-1", alice.addr, None, False, False, 1))
            alice.until(lambda m: isinstance(m, Welcome))
            alice.send(
                Submit("alice-1", 1, SendChat(None, "bob", "private", False), EMPTY_CLOCK, 0.0)
            )
            bob.wait_event("message", 15, text="private")

            forged = SendChat(None, "bob", "forged", False)
            stranger.send(Submit("alice-1", 1_000, forged, EMPTY_CLOCK, 0.0))
            stranger.send(HistoryRequest("alice-1", 1, None, "bob", None, 50))
            # Frames of one session are handled in order: the answer to this Register
            # comes after whatever the two above earned.
            takeover = Register("alice", "alice-1", stranger.addr, EMPTY_CLOCK, False, False, 1)
            stranger.send(takeover)
            seen: list[Message] = []
            reply = answer(stranger, seen)
            assert reply == Rejected("this client ID belongs to another key's session")
            assert not [m for m in seen if isinstance(m, HistoryReply | Replay)]

            alice.send(
                Submit("alice-1", 2, SendChat(None, "bob", "genuine", False), EMPTY_CLOCK, 0.0)
            )
            bob.wait_event("message", 15, text="genuine")
            assert not [e for e in bob.of("message") if e["text"] == "forged"]
            # Alice still has her session: bob's answer reaches her.
            bob.send("/msg alice still yours")
            alice.until(
                lambda m: (
                    isinstance(m, SessionFrame)
                    and isinstance(m.entry.body, Chat)
                    and m.entry.body.text == "still yours"
                )
            )
        finally:
            alice.close()
            stranger.close()


def test_an_offline_name_is_not_anyones_to_take(tmp_path: Path) -> None:
    """Another key asking for the name of a user who is offline is refused, and reads
    nothing of hers; her own key comes back to her PMs."""
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        bob.send("/quit")
        assert bob.wait_exit(10) == 0
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        alice.send("/msg bob while you were away")
        alice.wait_event("sent", 15)

        stranger = RawSession(daemon.addr)
        try:
            stranger.send(Register("bob", "not-bob", stranger.addr, None, False, False, 1))
            seen: list[Message] = []
            reply = answer(stranger, seen)
            assert reply == Rejected("the name 'bob' belongs to another key")
            assert not [m for m in seen if isinstance(m, Replay)]
        finally:
            stranger.close()
        bob = cluster.client("bob")  # the same key file: bob himself
        bob.wait_event("message", 15, text="while you were away")


def test_two_terminals_of_one_identity_are_both_served_at_once(tmp_path: Path) -> None:
    """The same identity logs in again while its first session is online (a second
    terminal, or a restart before the old session timed out): admitted at once, and
    every session gets the user's PMs."""
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        key = ["--identity", str(tmp_path / "alice.key")]
        first = cluster.client("alice", key)
        first.wait_event("ready", 15)
        second = cluster.client("alice", key)
        second.wait_event("ready", 15)
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        bob.send("/msg alice to every terminal")
        first.wait_event("message", 15, text="to every terminal")
        second.wait_event("message", 15, text="to every terminal")
        # One user, online once in everyone's list.
        assert [u["name"] for u in bob.of("users")[-1]["users"]].count("alice") == 1


@on_uvloop
async def test_a_client_waits_for_the_challenge_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that sends no Challenge (an older tchat, or not a tchat) gets no login:
    the client gives up on that connection after CHALLENGE_WAIT, counted, and says why."""
    monkeypatch.setattr(connection, "CHALLENGE_WAIT", 0.3)
    heard: list[bytes] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):  # until the client hangs up
            heard.append(chunk)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Transport(options(), Inbox())
    client.signer = lambda register, binding: register
    await client.start()
    try:
        client.send(f"127.0.0.1:{port}", Register("alice", "c1", client.addr, None, True, True))
        await wait_until(lambda: client.drops.counts.get("no-challenge", 0) == 1, 5.0)
        await wait_until(lambda: bool(heard))  # the hello
        assert all(b"alice" not in chunk for chunk in heard)  # the Register never went out
    finally:
        await client.close()
        server.close()
