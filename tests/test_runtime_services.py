"""The in-process services the Textual UI uses: two servers and a client in one event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from tchat.core.effects import ClientEvent, Effect, LeaderChanged, LeaderLearned, LogEvent, Ready
from tchat.core.messages import JoinRoom, SendChat
from tchat.crypto.cluster import ClusterSecret
from tchat.runtime.client_service import ClientService
from tchat.runtime.options import NetOptions
from tchat.runtime.secure import provision_cluster_secret
from tchat.runtime.server_service import ServerService
from tests.test_runtime_transport import on_uvloop

TIMEOUT = 10.0


async def until(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@on_uvloop
async def test_services_step_down_and_graceful_stop_in_one_loop(tmp_path: Path) -> None:
    port = random.randrange(20000, 32000)
    base = NetOptions(host="127.0.0.1", discovery_port=port, multicast_port=port + 1)
    secret = ClusterSecret.generate()  # one cluster: each data dir gets its secret
    for i in (1, 2):
        provision_cluster_secret(tmp_path / f"s{i}", secret)
    servers = [
        ServerService(dataclasses.replace(base, server_id=i, data_dir=tmp_path / f"s{i}"))
        for i in (1, 2)
    ]
    effects: list[Effect] = []
    events: list[ClientEvent] = []
    client = ClientService(base, "alice", events.append)
    try:
        for server in servers:
            server.add_listener(effects.append)
            await server.start()
        await client.start()
        await until(lambda: any(isinstance(e, Ready) for e in events))
        leader = next(s for s in servers if s.server_id == client.node.leader_id)
        other = next(s for s in servers if s is not leader)
        assert any(isinstance(e, LogEvent) for e in effects)
        assert any(isinstance(e, LeaderChanged) for e in effects)

        assert leader.step_down()
        await until(lambda: client.node.leader_id == other.server_id)
        assert any(isinstance(e, LeaderLearned) and e.leader_id == other.server_id for e in events)
        client.submit(JoinRoom("lobby"))
        cmid = client.submit(SendChat("lobby", None, "after the handover", False))
        entry_id = await asyncio.wait_for(client.acked(cmid), TIMEOUT)
        assert entry_id
        assert client.rtt is not None and 0 < client.rtt < TIMEOUT
        # What the UIs read: snapshots, not the nodes.
        seen = client.status()
        assert seen.state == "SERVING" and seen.leader_id == other.server_id
        assert seen.rtt_ms == client.rtt * 1000 and seen.pending == 0
        status = other.status()
        assert status.role == "LEADER" and status.server_id == other.server_id
        assert [p.server_id for p in status.peers] == [1, 2]
        assert [p.me for p in status.peers].count(True) == 1
        assert [u.name for u in status.users] == ["alice"]
        assert [(r.name, r.members) for r in status.rooms] == [("lobby", ("alice",))]
        assert status.log_size > 0 and status.recent[-1].body.text == "after the handover"  # type: ignore[attr-defined]

        await other.stop()  # graceful: hands over to the server that stepped down
        await until(lambda: client.node.leader_id == leader.server_id)
        assert await client.stop()
    finally:
        await client.close()
        for server in servers:
            await server.close()


@on_uvloop
async def test_an_idle_multicast_client_lives_on_lobby_beats_alone(tmp_path: Path) -> None:
    from tchat.core.messages import ClientHeartbeat, LobbyBeat
    from tchat.runtime import multicast

    if not await multicast.probe("127.0.0.1"):
        pytest.skip("loopback multicast does not work here")
    port = random.randrange(20000, 32000)
    base = NetOptions(host="127.0.0.1", discovery_port=port, multicast_port=port + 1)
    server = ServerService(dataclasses.replace(base, server_id=1, data_dir=tmp_path / "s1"))
    events: list[ClientEvent] = []
    client = ClientService(base, "idle", events.append)
    seen: list[type] = []
    try:
        await server.start()
        await client.start()
        await until(lambda: any(isinstance(e, Ready) for e in events))
        node = client.node
        handle = node.handle

        def recording(message, src, now):  # type: ignore[no-untyped-def]
            seen.append(type(message))
            return handle(message, src, now)

        node.handle = recording  # type: ignore[method-assign]
        await until(lambda: seen.count(LobbyBeat) >= 4)  # two seconds of rounds
        assert ClientHeartbeat not in seen, "nothing moved: no session heartbeat"
        assert node.state.name == "SERVING"
        assert node._probed_for == 0.0, "it never had to ask for a heartbeat"
    finally:
        await client.close()
        await server.close()
