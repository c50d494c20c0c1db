"""Fail-stop: a core step that raises stops its node; the supervisor restarts it from disk.

A replica whose step raised is half-changed and has diverged from its own log: it must not
serve on. The driver stops it without carrying out anything more; a daemon exits non-zero
(its supervisor restarts it: it reloads from SQLite and rejoins); a client service starts
its session over. The live test injects the fault through ``sitecustomize`` in the daemons'
PYTHONPATH, so no product code carries a test hook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from test_commit_pipeline import CheckingTransport, PersistThenSend, wait_until
from test_store import make_entry

from tchat.core.config import Timing
from tchat.core.effects import (
    ClientEvent,
    ConnectionChanged,
    Effect,
    Persist,
    Ready,
    RoomEntered,
    Send,
    Sent,
)
from tchat.core.messages import JoinRoom, SendChat, Submit
from tchat.core.vclock import VectorClock
from tchat.runtime.client_service import ClientService
from tchat.runtime.driver import NodeDriver
from tchat.runtime.options import NetOptions
from tchat.runtime.server_service import ServerService
from tchat.runtime.store import DB_NAME, SqliteStore
from tests.cluster_harness import Cluster, wait_for
from tests.test_runtime_transport import on_uvloop

TIMEOUT = 10.0
SECRET = "the-launch-code-is-0000"  # chat text: no log line may show it


def chat(cmid: int, text: str = SECRET) -> Submit:
    return Submit("c1", cmid, SendChat("lobby", None, text, False), VectorClock(), 0.0)


class RaisingNode(PersistThenSend):
    """Persists and answers each Submit; raises on the one whose cmid is ``bad``."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def handle(self, message: Submit, src: str, now: float) -> list[Effect]:  # type: ignore[override]
        if message.cmid == self.bad:  # a bug whose message quotes the chat text
            raise RuntimeError(f"a core bug on {message.op.text!r}")  # type: ignore[attr-defined]
        return [Persist((make_entry(message.cmid),)), Send("127.0.0.1:9", message.cmid)]  # type: ignore[arg-type]


class CountingTransport(CheckingTransport):
    def send(self, addr: str, message: object) -> None:
        self.sent.append(message)  # type: ignore[arg-type]


@on_uvloop
async def test_a_core_step_that_raises_stops_the_node_and_sends_nothing_more(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path)
    transport = CountingTransport(tmp_path / DB_NAME)
    driver = NodeDriver(RaisingNode(bad=2), transport, store)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    try:
        driver.on_message(chat(1), "10.0.0.5:4000")
        await wait_until(lambda: transport.sent == [1])
        driver.on_message(chat(2), "10.0.0.5:4000")
        reason = await asyncio.wait_for(asyncio.shield(driver.stopped), TIMEOUT)
        assert reason == "core step handle Submit from 10.0.0.5:4000 raised RuntimeError"
        assert driver.failure == reason
        driver.on_message(chat(3), "10.0.0.5:4000")  # a stopped node takes nothing more
        for _ in range(5):
            await asyncio.sleep(0)
        assert transport.sent == [1]
    finally:
        driver.close()
        transport.close()
        store.close()
    records = [r for r in caplog.records if "core node raised" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.CRITICAL
    logged = records[0].getMessage()
    assert "raised RuntimeError in handle Submit from 10.0.0.5:4000" in logged
    assert 'raise RuntimeError(f"a core bug on' in logged  # the trace, down to the raise
    assert SECRET not in caplog.text


@on_uvloop
async def test_a_command_that_raises_stops_the_node_too(tmp_path: Path) -> None:
    transport = CountingTransport(tmp_path / "none.db")
    driver = NodeDriver(RaisingNode(bad=0), transport)  # type: ignore[arg-type]

    def broken(now: float) -> list[Effect]:
        raise ValueError("half-changed")

    try:
        with pytest.raises(ValueError):
            driver.call(broken, 0.0)
        assert driver.failure == "core step broken raised ValueError"
        assert driver.stopped.done()
    finally:
        driver.close()
        transport.close()


@on_uvloop
async def test_a_client_whose_core_raises_starts_its_session_over(tmp_path: Path) -> None:
    port = random.randrange(20000, 32000)
    # A short client timeout: the leader drops the old session soon (the new one, of the
    # same key, is admitted at once).
    timing = dataclasses.replace(Timing(), client_timeout=0.6)
    base = NetOptions(host="127.0.0.1", discovery_port=port, multicast_port=port + 1, timing=timing)
    server = ServerService(dataclasses.replace(base, server_id=1, data_dir=tmp_path / "s1"))
    events: list[ClientEvent] = []
    client = ClientService(base, "alice", events.append)

    def ready_count() -> int:
        return sum(isinstance(e, Ready) for e in events)

    try:
        await server.start()
        await client.start()
        await until(lambda: ready_count() == 1)
        await asyncio.wait_for(client.acked(client.submit(JoinRoom("lobby"))), TIMEOUT)
        first, first_id = client.node, client.client_id
        assert client.driver is not None

        def broken(now: float) -> list[Effect]:
            raise RuntimeError("a client core bug")

        assert first is not None
        first.tick = broken  # type: ignore[method-assign]  # its next timer step raises
        await until(lambda: ready_count() == 2)
        assert client.restarts == 1
        assert client.node is not first and client.client_id != first_id
        assert any(isinstance(e, ConnectionChanged) and "starts over" in e.detail for e in events)
        await until(lambda: client.node is not None and "lobby" in client.node.rooms)
        entered = [e for e in events if isinstance(e, RoomEntered) and e.info.room == "lobby"]
        assert len(entered) == 2  # joined again by the new session
        cmid = client.submit(SendChat("lobby", None, "after the restart", False))
        assert await asyncio.wait_for(client.acked(cmid), TIMEOUT)
        assert any(isinstance(e, Sent) and e.cmid == cmid for e in events)
        assert await client.stop()
    finally:
        await client.close()
        await server.close()


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


HOOK = textwrap.dedent(
    '''
    """Test-only fault injection (tests/test_runtime_failstop.py): the first Submit any
    daemon of the cluster handles after TCHAT_TEST_FAULT_FILE appears raises, once."""
    import functools
    import os

    from tchat.core.server import ServerNode

    _trigger = os.environ.get("TCHAT_TEST_FAULT_FILE")
    _handle = ServerNode.handle

    @functools.wraps(_handle)
    def _faulty(self, message, src, now):
        if _trigger and type(message).__name__ == "Submit":
            try:
                os.unlink(_trigger)  # whoever removes it raises: once in the whole cluster
            except FileNotFoundError:
                pass
            else:
                raise RuntimeError("injected core fault")
        return _handle(self, message, src, now)

    ServerNode.handle = _faulty
    '''
)


def test_a_daemon_whose_core_raises_exits_nonzero_and_its_restart_loses_nothing(
    tmp_path: Path,
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    trigger = tmp_path / "raise-now"
    with Cluster(tmp_path) as cluster:
        cluster.env["PYTHONPATH"] = os.pathsep.join(
            [str(hook), *filter(None, [cluster.env.get("PYTHONPATH")])]
        )
        cluster.env["TCHAT_TEST_FAULT_FILE"] = str(trigger)
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        daemons = [d.started() for d in daemons]
        alice, bob = cluster.client("alice"), cluster.client("bob")
        for c in (alice, bob):
            c.wait_event("ready", 15)
            c.send("/join lobby")
            c.wait_event("joined", room="lobby")
        alice.wait_event("ok", op="join", room="lobby")
        for i in range(5):
            alice.send(f"/say lobby before {i}")
        wait_for(lambda: len(alice.of("sent")) >= 5, 10, "5 acks")
        leader = cluster.leader_of(daemons)

        trigger.touch()
        alice.send(f"/say lobby {SECRET}")  # the Submit the leader's core raises on
        assert leader.wait_exit(10) == 1
        assert not trigger.exists()  # it raised, once
        log = "\n".join(leader.stderr_lines)
        assert "core node raised RuntimeError in handle Submit from 127.0.0.1:" in log
        assert 'raise RuntimeError("injected core fault")' in log  # the trace
        assert "daemon exits: core step handle Submit" in log
        assert SECRET not in log
        others = [d for d in daemons if d is not leader]
        assert all(d.alive() for d in others)

        # The supervisor's restart: the same data dir, no fault armed.
        restarted = cluster.daemon(server_id=leader.server_id, data_dir=leader.data_dir)
        wait_for(
            lambda: any(
                s["id"] == leader.server_id and s["answered"]
                for s in (cluster.status(0.3) or {"servers": []})["servers"]
            ),
            15,
            "the restarted server rejoins",
        )
        for i in range(3):
            alice.send(f"/say lobby after {i}")
        wait_for(lambda: len(alice.of("sent")) >= 9, 20, "every message acknowledged")
        acked = {e["id"] for e in alice.of("sent")}
        wanted = [f"before {i}" for i in range(5)] + [SECRET] + [f"after {i}" for i in range(3)]
        wait_for(
            lambda: len([e for e in bob.of("message") if e["from"] == "alice"]) >= 9,
            10,
            "bob gets every message",
        )
        got = [e for e in bob.of("message") if e["from"] == "alice"]
        assert sorted(e["text"] for e in got) == sorted(wanted)
        assert acked <= {e["id"] for e in got}

        # The restarted server holds everything acknowledged: left alone, it serves it all.
        for d in others:
            d.kill()
        carol = cluster.client("carol")
        carol.wait_event("ready", 20)
        carol.send("/join lobby")
        carol.wait_event("joined", room="lobby")
        carol.send("/history lobby 20")
        history = carol.wait_event("history", 10)
        assert sorted(m["text"] for m in history["messages"]) == sorted(wanted)
        assert restarted.alive()
