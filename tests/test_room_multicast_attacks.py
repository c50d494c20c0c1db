"""A LAN host against room multicast, on real sockets (127.0.0.1 groups): it can neither read
a room frame, nor forge or replay one, nor read on after it left; a member that missed a
key still sees every message (issue 15 part 5)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tchat.core import codec
from tchat.core.effects import ChatDelivered, ClientEvent, Ready, RoomEntered
from tchat.core.messages import Chat, JoinRoom, LeaveRoom, Message, RoomFrame, SendChat
from tchat.runtime import multicast
from tchat.runtime.client_service import ClientService
from tchat.runtime.options import NetOptions
from tchat.runtime.server_service import ServerService
from tests.test_runtime_transport import on_uvloop

TIMEOUT = 10.0
ROOM = "den"


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Sniffer:
    """A plain socket in the room's group: what any host of the LAN can read."""

    def __init__(self, group: str) -> None:
        ip, port = group.rsplit(":", 1)
        self.target = (ip, int(port))
        self.sock = multicast.group_socket(ip, int(port), "127.0.0.1")
        self.heard: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.setsockopt(
            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1")
        )
        self.sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)

    def _readable(self) -> None:
        for _ in range(256):  # bounded per wake-up
            try:
                self.heard.append(self.sock.recv(65536))
            except (BlockingIOError, InterruptedError):
                return

    def inject(self, data: bytes) -> None:
        self.sender.sendto(data, self.target)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.sender.close()


class Room:
    """One secure server and multicast clients, all in this event loop."""

    def __init__(self, tmp_path: Path, *, insecure: bool = False, name: str = ROOM) -> None:
        self.name = name
        port = random.randrange(20000, 32000)
        self.base = NetOptions(
            host="127.0.0.1", discovery_port=port, multicast_port=port + 1, insecure=insecure
        )
        self.server = ServerService(
            dataclasses.replace(self.base, server_id=1, data_dir=tmp_path / "s1")
        )
        self.others: list[ServerService] = []
        self.clients: dict[str, ClientService] = {}
        self.events: dict[str, list[ClientEvent]] = {}
        self.handled: dict[str, list[Message]] = {}
        self.sniffer: Sniffer | None = None  # overheard()'s, closed with the room

    async def start(self, *names: str) -> None:
        if not await multicast.probe("127.0.0.1"):
            pytest.skip("loopback multicast does not work here")
        await self.server.start()
        for server in self.others:
            await server.start()
        for name in names:
            await self.add(name)

    async def add(self, name: str) -> ClientService:
        events: list[ClientEvent] = []
        client = ClientService(self.base, name, events.append)
        self.clients[name], self.events[name] = client, events
        await client.start()
        await until(lambda: any(isinstance(e, Ready) for e in events))
        assert client.multicast, "the client receives rooms by multicast"
        node, handled = client.node, self.handled.setdefault(name, [])
        assert node is not None
        handle = node.handle

        def recording(message: Message, src: str, now: float) -> Any:
            handled.append(message)
            return handle(message, src, now)

        node.handle = recording  # type: ignore[method-assign,assignment]
        return client

    async def join(self, name: str) -> str:
        client = self.clients[name]
        await asyncio.wait_for(client.acked(client.submit(JoinRoom(self.name))), TIMEOUT)
        await until(lambda: any(isinstance(e, RoomEntered) for e in self.events[name]))
        entered = [e for e in self.events[name] if isinstance(e, RoomEntered)]
        return entered[-1].info.group

    async def say(self, name: str, text: str) -> None:
        client = self.clients[name]
        await asyncio.wait_for(
            client.acked(client.submit(SendChat(self.name, None, text, False))), TIMEOUT
        )

    async def overheard(self, texts: list[str], *names: str) -> Sniffer:
        """``names`` join the room, a plain socket joins its group, and the first of them
        says ``texts``: that socket, once it heard a datagram (closed with the room)."""
        await self.start(*names)
        groups = [await self.join(name) for name in names]
        sniffer = self.sniffer = Sniffer(groups[0])
        await self.say_and_see(names[0], texts)
        await until(lambda: len(sniffer.heard) >= 1)
        return sniffer

    async def say_and_see(self, name: str, texts: list[str], seen_by: str = "bob") -> None:
        """``name`` says ``texts`` in the room; returns once ``seen_by`` shows them all."""
        for text in texts:
            await self.say(name, text)
        await until(lambda: set(texts) <= set(self.shown(seen_by)))

    def shown(self, name: str) -> list[str]:
        return [
            e.entry.body.text
            for e in self.events[name]
            if isinstance(e, ChatDelivered) and isinstance(e.entry.body, Chat)
        ]

    def drops(self, name: str) -> dict[str, int]:
        return self.clients[name].transport.drops.snapshot()  # type: ignore[union-attr]

    async def close(self) -> None:
        if self.sniffer is not None:
            self.sniffer.close()
        for client in self.clients.values():
            await client.close()
        for server in [self.server, *self.others]:
            await server.close()


@on_uvloop
async def test_a_lan_host_in_the_group_reads_no_text_and_cannot_forge_or_replay(
    tmp_path: Path,
) -> None:
    room = Room(tmp_path)
    try:
        texts = [f"secret plans number {i}" for i in range(5)]
        sniffer = await room.overheard(texts, "alice", "bob")
        for datagram in sniffer.heard:
            assert b"secret plans" not in datagram, "room text readable off the wire"
        # One grant per member, not per frame; an unchanged room reuses its audience.
        sealer = room.server.transport.room_sealer  # type: ignore[union-attr]
        assert sealer is not None and sealer.grants == 2 and sealer.rotations == 1
        assert room.server._room_audience(ROOM) is room.server._room_audience(ROOM)
    finally:
        await room.close()


@on_uvloop
async def test_a_sniffer_learns_no_room_name_and_cannot_link_frames_to_it(tmp_path: Path) -> None:
    """What is in clear is what a member needs to find its key: the key id, random, not the
    room's name nor its sequence numbers (a sniffer could tell rooms apart and count them)."""
    name = "war-room-of-the-board"
    room = Room(tmp_path, name=name)
    try:
        sniffer = await room.overheard([f"agenda item {i}" for i in range(5)], "alice", "bob")
        frames = [m for m in room.handled["bob"] if type(m) is RoomFrame and m.room == name]
        gsns = {(f.prev, f.gsn) for f in frames}
        for datagram in sniffer.heard:
            assert name.encode() not in datagram, "the room's name is readable off the wire"
            for prev, gsn in gsns:
                assert prev.to_bytes(8, "big") + gsn.to_bytes(8, "big") not in datagram
    finally:
        await room.close()


@on_uvloop
async def test_a_forged_or_replayed_room_datagram_is_not_shown_and_is_counted(
    tmp_path: Path,
) -> None:
    room = Room(tmp_path)
    try:
        texts = [f"secret plans number {i}" for i in range(5)]
        sniffer = await room.overheard(texts, "alice", "bob")

        # A forged frame: the next one in the chain, from a user who does not exist.
        frames = [m for m in room.handled["bob"] if type(m) is RoomFrame and m.room == ROOM]
        real = frames[-1]
        entry = real.entries[-1]
        body = dataclasses.replace(entry.body, sender="mallory", text="forged words")  # type: ignore[type-var]
        forged_entry = dataclasses.replace(
            entry, dot=dataclasses.replace(entry.dot, counter=entry.dot.counter + 1000), body=body
        )
        forged = dataclasses.replace(real, gsn=real.gsn + 1, prev=real.gsn, entries=(forged_entry,))
        shown_before = len(room.shown("bob"))
        drops_before = sum(room.drops("bob").values())
        sniffer.inject(codec.encode(forged, None))
        # ... and every datagram the group carried, again (replays).
        for datagram in list(sniffer.heard):
            sniffer.inject(datagram)
        # ... and a sealed one with a flipped byte.
        tampered = bytearray(sniffer.heard[-1])
        tampered[-20] ^= 0x01
        sniffer.inject(bytes(tampered))
        injected = 2 + len(sniffer.heard) - 1
        await until(lambda: sum(room.drops("bob").values()) - drops_before >= injected)
        drops = room.drops("bob")
        assert drops.get("unsealed-room", 0) >= 1
        assert drops.get("replayed", 0) >= 1
        assert drops.get("bad-room-tag", 0) >= 1
        await room.say("alice", "still talking")  # bob goes on, and saw nothing forged
        await until(lambda: "still talking" in room.shown("bob"))
        assert "forged words" not in room.shown("bob")
        assert room.shown("bob")[shown_before:] == ["still talking"]
        assert room.shown("bob").count(texts[0]) == 1, "a replay was shown twice"
    finally:
        await room.close()


@on_uvloop
async def test_a_member_flooding_forged_signatures_costs_each_member_a_few_checks(
    tmp_path: Path,
) -> None:
    """A member holds the room key: it can seal frames whose signature every other member
    must check. N of them cost a member O(STRIKES) checks, the rest are refused unverified
    (``bad-signature-source``), and the leader's next frame is still shown."""
    from tchat.crypto.rooms import open_room_frame, seal_room_frame
    from tchat.runtime import signature_guard

    room = Room(tmp_path)
    try:
        sniffer = await room.overheard(["before the flood"], "alice", "bob", "mallory")
        keys = room.clients["mallory"].transport.room_keys  # type: ignore[union-attr]
        assert keys is not None
        key = keys.rooms[ROOM].ring.current
        assert key is not None
        _, signed = open_room_frame({key.key_id: key}, sniffer.heard[-1][1:])
        cert_end = 3 + int.from_bytes(signed[1:3], "big")
        frames = [m for m in room.handled["bob"] if type(m) is RoomFrame and m.room == ROOM]
        real = frames[-1]
        before = room.drops("bob")
        n = 400
        for i in range(n):
            fake = dataclasses.replace(real, gsn=real.gsn + 1 + i, prev=real.gsn + i)
            body = signed[:cert_end] + codec.encode(fake, None) + bytes(64)
            sniffer.inject(bytes((0xD5,)) + seal_room_frame(key, body))

        def refused() -> int:
            now = room.drops("bob")
            return sum(now.get(r, 0) - before.get(r, 0) for r in now)

        await until(lambda: refused() >= n)
        drops = room.drops("bob")
        checked = drops.get("bad-signature", 0) - before.get("bad-signature", 0)
        strikes = signature_guard.STRIKES
        assert checked <= strikes, f"{checked} signature checks for {n} forged frames"
        assert drops.get("bad-signature-source", 0) >= n - strikes
        # ... and bob can see it: his status (what /info shows) counts them by reason.
        shown = dict(room.clients["bob"].status().drops)
        assert shown.get("bad-signature-source", 0) >= n - strikes
        await room.say_and_see("alice", ["after the flood"])
        assert room.shown("bob").count("after the flood") == 1
    finally:
        await room.close()


@on_uvloop
async def test_a_blocked_leader_address_still_delivers_over_the_session(tmp_path: Path) -> None:
    """What a member gains by spoofing the leader's address with bad signatures: that
    address is blocked at its victims for a while. Nothing is lost: the frames refused
    unverified come over the session instead (docs/SECURITY.md, "A member forging
    signatures")."""
    from tchat.runtime import signature_guard

    room = Room(tmp_path)
    try:
        await room.start("alice", "bob")
        await room.join("alice")
        await room.join("bob")
        await room.say_and_see("alice", ["before the block"])
        leader = room.server.transport.addr  # type: ignore[union-attr]
        # Blocked at every client of this process: a frame one of them verified would
        # reach the others from the process's cache of opened datagrams.
        for client in room.clients.values():
            keys = client.transport.room_keys  # type: ignore[union-attr]
            assert keys is not None
            for _ in range(signature_guard.STRIKES):  # as a spoofer's bad signatures would
                keys.guard.failed(leader)
            assert keys.guard.blocked(leader)
        before = room.drops("bob").get("bad-signature-source", 0)
        texts = [f"while blocked {i}" for i in range(5)]
        await room.say_and_see("alice", texts)
        assert [t for t in room.shown("bob") if t.startswith("while blocked")] == texts
        assert room.drops("bob").get("bad-signature-source", 0) > before, "refused by multicast"
    finally:
        await room.close()


@on_uvloop
async def test_a_member_who_left_cannot_read_on(tmp_path: Path) -> None:
    from tchat.crypto.errors import CryptoError
    from tchat.crypto.rooms import RoomKeyRing

    room = Room(tmp_path)
    sniffer: Sniffer | None = None
    try:
        await room.start("alice", "bob", "carol")
        group = await room.join("alice")
        await room.join("bob")
        await room.join("carol")
        await room.say("alice", "hello all three")
        await until(lambda: "hello all three" in room.shown("carol"))
        keys = getattr(room.clients["carol"].transport, "room_keys", None)
        held = RoomKeyRing()
        if keys is not None:  # (the tree before room keys has none: the text is in clear)
            for key in sorted(keys.rooms[ROOM].ring.keys_by_id().values(), key=lambda k: k.key_id):
                held.install(key)  # what carol walks away with

        carol = room.clients["carol"]
        await asyncio.wait_for(carol.acked(carol.submit(LeaveRoom(ROOM))), TIMEOUT)
        sniffer = Sniffer(group)
        await room.say("alice", "now that carol is gone")
        await until(lambda: "now that carol is gone" in room.shown("bob"))
        await until(lambda: len(sniffer.heard) >= 1)  # type: ignore[union-attr]
        for datagram in sniffer.heard:
            assert b"carol is gone" not in datagram
            with pytest.raises(CryptoError):
                held.open(datagram[1:])
        assert "now that carol is gone" not in room.shown("carol")
    finally:
        if sniffer is not None:
            sniffer.close()
        await room.close()


@on_uvloop
async def test_a_member_who_missed_a_rotation_repairs_and_sees_everything(
    tmp_path: Path,
) -> None:
    room = Room(tmp_path)
    try:
        await room.start("alice", "bob", "carol")
        await room.join("alice")
        await room.join("bob")
        await room.join("carol")
        await room.say("alice", "before")
        await until(lambda: "before" in room.shown("bob"))
        # Past the join's grace, when the leader still sends bob the room over the session:
        # from here on bob has the room by multicast alone.
        leadership = room.server.node.leadership  # type: ignore[union-attr]
        assert leadership is not None
        fresh = leadership.streams._fresh
        await until(lambda: "bob" not in fresh.get(ROOM, {}))
        transport = room.clients["bob"].transport
        assert transport is not None
        on_grant = getattr(transport, "_on_grant", None)
        lost: list[object] = []

        def losing(grant: Any, src: str) -> None:
            lost.append(grant)
            if len(lost) == 1:  # the first grant after this point never arrives
                return
            assert on_grant is not None
            on_grant(grant, src)

        transport._on_grant = losing  # type: ignore[method-assign]
        carol = room.clients["carol"]
        await asyncio.wait_for(carol.acked(carol.submit(LeaveRoom(ROOM))), TIMEOUT)
        texts = [f"after the rotation {i}" for i in range(10)]
        await room.say_and_see("alice", texts)
        assert lost, "bob was granted the rotated key (and lost it)"
        assert [t for t in room.shown("bob") if t.startswith("after")] == texts
        # Bob's repair welcomes him again, and the Welcome carries his keys at once (not
        # the room's next frame, which may never come): the lost key comes back.
        await until(lambda: len(lost) >= 2)
        assert [g.key_id for g in lost[:2]] == [lost[0].key_id] * 2  # type: ignore[attr-defined]
    finally:
        with contextlib.suppress(Exception):
            await room.close()


@on_uvloop
async def test_insecure_seals_nothing(tmp_path: Path) -> None:
    """--insecure is the plaintext of before (and says so): no keys, plain room frames."""
    room = Room(tmp_path, insecure=True)
    sniffer: Sniffer | None = None
    try:
        await room.start("alice", "bob")
        group = await room.join("alice")
        await room.join("bob")
        sniffer = Sniffer(group)
        await room.say("alice", "in the clear")
        await until(lambda: "in the clear" in room.shown("bob"))
        await until(lambda: any(b"in the clear" in d for d in sniffer.heard))  # type: ignore[union-attr]
        transport = room.clients["bob"].transport
        assert transport is not None and transport.room_keys is None
    finally:
        if sniffer is not None:
            sniffer.close()
        await room.close()


@on_uvloop
async def test_a_new_leader_rotates_every_room_and_members_read_on(tmp_path: Path) -> None:
    from tchat.crypto.cluster import ClusterSecret

    room = Room(tmp_path)
    # Two servers of one cluster (a server given no secret makes its own).
    secret = ClusterSecret.generate().export_line().encode()
    keyed = dataclasses.replace(room.base, cluster_key=secret, key_source="the test")
    room.server = ServerService(dataclasses.replace(keyed, server_id=1, data_dir=tmp_path / "s1"))
    room.others = [ServerService(dataclasses.replace(keyed, server_id=2, data_dir=tmp_path / "s2"))]
    try:
        await room.start("alice", "bob")
        await room.join("alice")
        await room.join("bob")
        await room.say("alice", "under the first leader")
        await until(lambda: "under the first leader" in room.shown("bob"))
        bob = room.clients["bob"]
        keys = bob.transport.room_keys  # type: ignore[union-attr]
        assert keys is not None
        first_epoch = keys.rooms[ROOM].epoch
        servers = [room.server, *room.others]
        leader = next(s for s in servers if s.server_id == bob.node.leader_id)  # type: ignore[union-attr]
        other = next(s for s in servers if s is not leader)
        assert leader.step_down()
        await until(lambda: bob.node.leader_id == other.server_id)  # type: ignore[union-attr]
        await until(lambda: room.clients["alice"].node.leader_id == other.server_id)  # type: ignore[union-attr]
        texts = [f"under the second leader {i}" for i in range(5)]
        await room.say_and_see("alice", texts)
        assert keys.rooms[ROOM].epoch > first_epoch, "the new leader's own key"
        assert room.drops("bob").get("bad-room-tag", 0) == 0
        assert room.shown("bob").count(texts[0]) == 1
    finally:
        with contextlib.suppress(Exception):
            await room.close()


@on_uvloop
async def test_a_forged_lobby_frame_changes_no_user_list(tmp_path: Path) -> None:
    from tchat.core.effects import UsersChanged
    from tchat.core.messages import LobbyFrame, UserOnline

    room = Room(tmp_path)
    sniffer: Sniffer | None = None
    try:
        await room.start("bob", "alice")  # bob hears alice's login in a lobby frame
        bob = room.clients["bob"]
        assert bob.node is not None
        frames = room.handled["bob"]
        await until(
            lambda: any(type(m) is LobbyFrame and m.entries for m in frames)  # type: ignore[attr-defined]
        )
        real = [m for m in frames if type(m) is LobbyFrame and m.entries][-1]
        entry = next(e for e in real.entries if isinstance(e.body, UserOnline))  # type: ignore[attr-defined]
        fake = dataclasses.replace(
            entry,
            dot=dataclasses.replace(entry.dot, counter=entry.dot.counter + 1000),
            body=dataclasses.replace(entry.body, name="mallory"),  # type: ignore[type-var]
        )
        forged = dataclasses.replace(real, gsn=real.gsn + 1, prev=real.gsn, entries=(fake,))
        sniffer = Sniffer(bob.node.lobby_group)
        before = room.drops("bob").get("unsigned-lobby", 0)
        sniffer.inject(codec.encode(forged, None))
        await until(lambda: room.drops("bob").get("unsigned-lobby", 0) > before)
        await room.add("carol")  # a genuine change after it still arrives
        await until(
            lambda: any(
                isinstance(e, UsersChanged) and "carol" in {u.name for u in e.users}
                for e in room.events["bob"]
            )
        )
        for event in room.events["bob"]:
            if isinstance(event, UsersChanged):
                assert "mallory" not in {u.name for u in event.users}
    finally:
        if sniffer is not None:
            sniffer.close()
        await room.close()
