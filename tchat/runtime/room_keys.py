"""Room keys in the runtime: the leader seals each multicast room frame; members open them.

A room's multicast datagram (docs/PROTOCOL.md, "Room keys") is, under a secure leader::

    0xD5 | rooms.seal_room_frame(key, sign_datagram(server key, cert, frame))

Sign, then seal: the AEAD under the room key keeps the text, the room's name and its
sequence numbers from whoever is not a member, and the server's certified signature inside
keeps a member (who holds the key) from forging a frame as the leader. Only the key id is
in clear: random, so a sniffer cannot tell which room a frame is of, and a member finds
the key (and so the room) by it among its rooms' keys. The opened frame must be of the
room whose key opened it.

A member holds its room's key, so it can seal frames whose signature each receiver must
check: ``signature_guard.SignatureGuard`` stops checking a source after a few bad ones.

Keys are the leader's runtime state, never replicated and never in the log: each leader
draws fresh ones (``os.urandom``, not the deterministic core), so a new leader rotates
every room at its first frame, and hands the key to each multicast member over its Noise
session (``RoomKeyGrant``) before that frame goes out. A room rotates when its member set
loses a name (a leave; a kick is a membership-ending entry too, see ``members_left``),
when its key is a day old or worn (``RoomKeyRing.needs_rotation``), and at takeover.

Lobby datagrams are signed, not sealed (every client follows the lobby; what must not
happen is a forged user list): ``0xD6 | sign_datagram(server key, cert, frame)``.

A member's frame under a key id it does not hold yet (its grant still in flight on TCP,
where the leader's datagram may overtake it) waits a moment for the key; past that, or
if the key never comes (a grant lost with its session), it is dropped and counted, and
the core repairs the gap over TCP as it repairs any lost datagram.

Longer than 400 lines: the leader's sealer and the member's opener are the two halves of
one datagram format and one key schedule (ids, grants, rotation, holding); split, a change
to the format would have to be made in two modules that must agree byte for byte.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tchat.core import codec
from tchat.core.errors import RemoteProtocolError
from tchat.core.messages import Epoch, LobbyBeat, LobbyFrame, Message, RoomFrame, RoomKeyGrant
from tchat.crypto.certificate import sign_datagram, verify_datagram
from tchat.crypto.cluster import ClusterPublicKey
from tchat.crypto.errors import CryptoError, Reason
from tchat.crypto.rooms import (
    MAX_KEY_ID,
    RoomKey,
    RoomKeyRing,
    key_id_of,
    open_room_frame,
)
from tchat.runtime.connection import DropCounters
from tchat.runtime.datagram_auth import DatagramRefused
from tchat.runtime.secure import ClusterTrust, WireSecurity
from tchat.runtime.signature_guard import SignatureGuard

KIND_ROOM = 0xD5  # first byte of a sealed room datagram (no codec frame starts with it)
KIND_LOBBY = 0xD6  # first byte of a signed lobby datagram: 0xD6 | sign_datagram(frame)
ROOMS_KEPT = 4096  # rooms whose keys a leader or a member keeps (LRU: a lost one rotates)
# A frame under a key not here yet waits this long for its grant. The grant rides the
# member's TCP session, behind whatever it had queued, while the frames come by multicast
# at once: under load (8,000 msg/s) a grant 100 ms late is ~800 frames, so the wait is
# bounded by bytes (what it costs) and a frame count (the bookkeeping), not a handful of
# frames (16 were 2 ms of a busy room: the rest dropped, a storm of TCP repairs).
HOLD_SECONDS = 1.0
HOLD_MAX = 4096
HOLD_BYTES = 2 * 1024 * 1024
REPLAY_WINDOW = 256  # gsns remembered per room: one seen again is a replay
RETIRED_KEPT = 1024  # key ids a member dropped lately: their late frames are refused at once
OPENED_CACHE = 512  # datagrams opened lately in this process (many clients, one socket)
OPENED_CACHE_BYTES = 16384


def members_left(before: frozenset[str], now: frozenset[str]) -> bool:
    """Whether a membership ended since ``before`` (leave or kick alike): the key rotates.

    The hook for kicks: a kick ends a membership the way RoomLeft does (the name drops
    out of the room's member set), so it rotates the key with no wiring of its own."""
    return not before <= now


@dataclass(frozen=True, slots=True)
class RoomAudience:
    """Who a room's frame goes to now, as the leader's core knows it."""

    epoch: Epoch
    members: frozenset[str]
    multicast_addrs: tuple[str, ...]  # sessions of members that receive by multicast


@dataclass(slots=True)
class _SealingRoom:
    epoch: Epoch
    ring: RoomKeyRing
    members: frozenset[str]
    holders: set[str] = field(default_factory=set)  # addrs granted the current key
    audience: RoomAudience | None = None  # the one every holder was checked against


class LeaderRoomKeys:
    """The leader's side: one ring per room, sign-then-seal, grants to members."""

    def __init__(
        self,
        security: WireSecurity,
        audience: Callable[[str], RoomAudience | None],
        grant: Callable[[str, Message], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert security.credentials is not None
        self.security = security
        self.audience = audience
        self.grant = grant
        self.clock = clock
        self.rooms: OrderedDict[str, _SealingRoom] = OrderedDict()
        # Every key id our rings hold, so that a new one is unlike all of them: a member
        # finds a key by its id across its rooms, and one id must name one key.
        self.key_ids: dict[int, str] = {}
        self.rotations = 0
        self.grants = 0

    def seal(self, frame: RoomFrame) -> bytes:
        """``frame`` as its multicast datagram, granting the key first where it is new.

        Raises ValueError when the room has no audience here (we are not its leader)."""
        audience = self.audience(frame.room)
        if audience is None:
            raise ValueError(f"no audience for room frame {frame.gsn}")
        room = self.rooms.get(frame.room)
        if room is None or room.audience is not audience or room.ring.needs_rotation(self.clock()):
            # Something changed (or a key wore out): who must hold which key, again. An
            # unchanged audience is the same object, so a busy room's frames skip this.
            room = self._room_for(frame.room, audience)
            current = room.ring.current
            assert current is not None
            for addr in audience.multicast_addrs:
                if addr not in room.holders:
                    room.holders.add(addr)
                    self.grants += 1
                    self.grant(
                        addr, RoomKeyGrant(audience.epoch, frame.room, current.key_id, current.key)
                    )
            room.audience = audience
        creds = self.security.credentials
        assert creds is not None
        signed = sign_datagram(
            creds.keys.signing_key,
            creds.current_cert(self.security.clock()),
            codec.encode(frame, None),
        )
        return bytes((KIND_ROOM,)) + room.ring.seal(signed)

    def sign_lobby(self, message: LobbyFrame | LobbyBeat) -> bytes:
        """A lobby datagram, signed (not sealed: every client follows the lobby, and
        user-list changes are no secret from the LAN, but forging them must be
        impossible)."""
        creds = self.security.credentials
        assert creds is not None
        return bytes((KIND_LOBBY,)) + sign_datagram(
            creds.keys.signing_key,
            creds.current_cert(self.security.clock()),
            codec.encode(message, None),
        )

    def _room_for(self, name: str, audience: RoomAudience) -> _SealingRoom:
        now = self.clock()
        room = self.rooms.get(name)
        if room is not None:
            self.rooms.move_to_end(name)
        if room is None or room.epoch != audience.epoch:
            # A new leader (or a room we forgot) starts a fresh ring: nothing of another
            # leader's keys is kept, and members take a newer epoch's key over any older.
            if room is not None:
                self._release(room.ring)
            room = _SealingRoom(audience.epoch, RoomKeyRing(), audience.members)
            self._rotate(name, room.ring, now)
            self.rooms[name] = room
            while len(self.rooms) > ROOMS_KEPT:
                self._release(self.rooms.popitem(last=False)[1].ring)
        elif members_left(room.members, audience.members) or room.ring.needs_rotation(now):
            self._rotate(name, room.ring, now)
            room.holders.clear()
        else:
            # Sessions gone since are forgotten: the table stays the size of the audience.
            room.holders.intersection_update(audience.multicast_addrs)
        room.members = audience.members
        return room

    def _rotate(self, name: str, ring: RoomKeyRing, now: float) -> None:
        """A new key for ``ring``, under a random id that no ring of ours holds. A key id
        that counted up would say how many keys came before and link a room's keys to
        each other; a random one says nothing. A room forgotten (LRU) and sealed again
        gets a fresh id too, never its old one under other bytes."""
        previous = ring.previous
        key = ring.rotate(now, self.key_ids)
        if previous is not None and self.key_ids.get(previous.key_id) == name:
            del self.key_ids[previous.key_id]  # out of the ring: its id is free again
        self.key_ids[key.key_id] = name
        self.rotations += 1

    def _release(self, ring: RoomKeyRing) -> None:
        for key_id in ring.keys_by_id():
            self.key_ids.pop(key_id, None)

    def forget(self, addr: str) -> None:
        """``addr`` is being welcomed (a new session, or a resume): its keys go to it again,
        now, ahead of the Welcome and of the replay behind it. Granted at the next frame
        instead, a key would queue behind that replay on a busy session while its frames
        came by multicast at once (and waited, or were dropped and repaired over TCP)."""
        for name, room in self.rooms.items():
            if addr not in room.holders:
                continue
            room.audience = None  # the next frame checks the room again (a rotation due?)
            current = room.ring.current
            if current is None:
                room.holders.discard(addr)
                continue
            self.grants += 1
            self.grant(addr, RoomKeyGrant(room.epoch, name, current.key_id, current.key))


@dataclass(slots=True)
class _OpeningRoom:
    epoch: Epoch
    ring: RoomKeyRing
    seen: OrderedDict[int, None] = field(default_factory=OrderedDict)  # gsns, the window
    highest: int = -1  # the highest gsn opened (frames may arrive out of order)


# Datagrams this process opened lately: data -> (room, key id, key, frame). The clients of
# a load generator share one socket per group; each checks that it holds that very key.
_opened: OrderedDict[bytes, tuple[str, int, bytes, RoomFrame]] = OrderedDict()
# Lobby datagrams this process verified lately (signed under the pin every client of a
# process shares: a hit needs no key of its own, the bytes are what was verified).
_verified: OrderedDict[bytes, Message] = OrderedDict()


class MemberRoomKeys:
    """A member's side: the keys granted to it, and the frames it opens with them."""

    def __init__(
        self,
        trust: ClusterTrust,
        decode: Callable[[bytes], Message],
        drops: DropCounters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trust = trust
        self.drops = drops
        self.decode = decode  # a plain multicast frame (the lobby's)
        self.clock = clock
        self.wall = time.time  # certificates expire by the wall clock
        self.rooms: OrderedDict[str, _OpeningRoom] = OrderedDict()
        # key id -> the rooms whose ring holds a key of that id: the only way from a
        # datagram to its room. Ids are random, so two rooms (of two leaders' epochs)
        # sharing one is rare, not impossible: each candidate is tried, the tag decides.
        self.by_id: dict[int, list[str]] = {}
        # Ids dropped from a ring lately: a late frame under one is refused at once, not
        # held for a key that will not come.
        self.retired: OrderedDict[int, None] = OrderedDict()
        # (until, key id, data, peer), oldest first: ``until`` only grows, so expiry and
        # eviction take from the left and cost only what they drop.
        self.held: deque[tuple[float, int, bytes, str]] = deque()
        self.held_bytes = 0
        self.guard = SignatureGuard(clock)

    # -- keys -----------------------------------------------------------------
    def install(self, grant: RoomKeyGrant) -> list[tuple[bytes, str]]:
        """Take a grant from our leader's session; returns the held datagrams to open now.

        Raises CryptoError for a key id out of range. A key id that names other bytes
        than the ones held (a leader that lost track of a room) starts the room's ring
        over: grants come only from our cluster's certified servers, which we trust."""
        if not 0 <= grant.key_id <= MAX_KEY_ID:
            raise CryptoError(f"room key id {grant.key_id} is not a u32")
        room = self.rooms.get(grant.room)
        if room is None or grant.epoch > room.epoch:
            if room is not None:
                self._unindex(grant.room, room.ring.keys_by_id())
            room = _OpeningRoom(grant.epoch, RoomKeyRing())
            self.rooms[grant.room] = room
            while len(self.rooms) > ROOMS_KEPT:
                name, gone = self.rooms.popitem(last=False)
                self._unindex(name, gone.ring.keys_by_id())
        elif grant.epoch < room.epoch:
            return []  # an old leader's key: its frames are over
        self.rooms.move_to_end(grant.room)
        key = RoomKey(grant.key_id, grant.key, self.clock())
        before = room.ring.keys_by_id()
        try:
            room.ring.install(key)
        except CryptoError:
            room.ring = RoomKeyRing(key)
            room.seen.clear()
            room.highest = -1
        after = room.ring.keys_by_id()
        self._unindex(grant.room, {k: v for k, v in before.items() if after.get(k) is not v})
        for key_id in after:
            names = self.by_id.setdefault(key_id, [])
            if grant.room not in names:
                names.append(grant.room)
            self.retired.pop(key_id, None)
        if not any(held[1] == grant.key_id for held in self.held):
            return []
        ready = [(data, peer) for _, key_id, data, peer in self.held if key_id == grant.key_id]
        self.held = deque(held for held in self.held if held[1] != grant.key_id)
        self.held_bytes = sum(len(held[2]) for held in self.held)
        return ready

    def _unindex(self, name: str, keys: dict[int, RoomKey]) -> None:
        """``name``'s ring no longer holds ``keys``: their ids lead there no more."""
        for key_id in keys:
            names = self.by_id.get(key_id)
            if names is None or name not in names:
                continue
            names.remove(name)
            if not names:
                del self.by_id[key_id]
                self.retired[key_id] = None
                self.retired.move_to_end(key_id)
                while len(self.retired) > RETIRED_KEPT:
                    self.retired.popitem(last=False)

    def expire(self) -> None:
        """Drop held frames whose key did not come in time (their gaps repair over TCP)."""
        now = self.clock()
        held = self.held
        while held and held[0][0] <= now:
            _, key_id, data, peer = held.popleft()
            self.held_bytes -= len(data)
            self.drops.count("unknown-key", peer, f"no room key {key_id} in time")

    # -- frames ---------------------------------------------------------------
    def open(self, data: bytes, peer: str) -> Message | None:
        """A multicast datagram's message; None when it waits for its key; DatagramRefused
        (with the drop reason) for anything not a genuine, fresh frame of a room we hold."""
        if data and data[0] == KIND_LOBBY:
            return self._open_lobby(data, peer)
        if not data or data[0] != KIND_ROOM:
            message = self.decode(data)
            if type(message) is RoomFrame:
                raise DatagramRefused("unsealed-room", f"plain room frame {message.room!r}")
            if type(message) in (LobbyFrame, LobbyBeat):
                raise DatagramRefused("unsigned-lobby", f"plain {type(message).__name__}")
            return message
        sealed = data[1:]
        try:
            key_id = key_id_of(sealed)
        except CryptoError as exc:
            raise DatagramRefused("bad-room-frame", f"sealed room frame: {exc}") from None
        names = self.by_id.get(key_id)
        if not names:
            if key_id in self.retired:
                raise DatagramRefused("unknown-key", f"room key {key_id} is gone")
            self._hold(key_id, data, peer)
            return None
        refusal: DatagramRefused | None = None
        for name in tuple(names):  # one, but for a (rare) id two leaders drew alike
            room = self.rooms[name]
            keys = room.ring.keys_by_id()
            try:
                frame = self._cached(data, name, keys[key_id])
                if frame is None:
                    frame = self._open(data, sealed, name, keys[key_id], peer)
            except DatagramRefused as exc:
                if exc.reason != "bad-room-tag":
                    raise
                refusal = exc
                continue
            return self._fresh(frame, name, room)
        assert refusal is not None
        raise refusal

    def _fresh(self, frame: RoomFrame, name: str, room: _OpeningRoom) -> RoomFrame:
        """``frame`` opened under ``name``'s key: of that room, its epoch, not seen before."""
        if frame.room != name:
            raise DatagramRefused("bad-room-frame", "room frame sealed under another room's key")
        if frame.epoch != room.epoch:
            raise DatagramRefused("stale-epoch", f"room frame of epoch {frame.epoch}")
        gsn = frame.gsn
        seen = room.seen
        if gsn in seen or gsn + REPLAY_WINDOW <= room.highest:
            raise DatagramRefused("replayed", f"room frame {gsn} of {name!r} seen already")
        seen[gsn] = None
        room.highest = max(room.highest, gsn)
        if len(seen) > REPLAY_WINDOW:
            seen.popitem(last=False)
        return frame

    def _open_lobby(self, data: bytes, peer: str) -> Message:
        """A signed lobby frame or beat (verified once per process: see ``_verified``)."""
        found = _verified.get(data)
        if found is not None:
            return found
        pinned = self.trust.key
        if pinned is None:
            raise DatagramRefused("unknown-cluster", "no pinned cluster to verify the lobby by")
        # Anyone can send the lobby group a datagram to verify, and a signed lobby frame
        # needs no key: the guard bounds what that costs us, as for a member's room frames.
        body = self._verified_body(pinned, data[1:], peer, "lobby frame", "bad-lobby-frame")
        try:
            message = codec.decode(body, None)
        except RemoteProtocolError as exc:
            raise DatagramRefused(exc.reason, f"lobby frame: {exc}") from None
        if type(message) not in (LobbyFrame, LobbyBeat):
            raise DatagramRefused("bad-lobby-frame", f"{type(message).__name__} signed as lobby")
        if len(data) <= OPENED_CACHE_BYTES:
            _verified[data] = message
            while len(_verified) > OPENED_CACHE:
                _verified.popitem(last=False)
        return message

    def _hold(self, key_id: int, data: bytes, peer: str) -> None:
        """Wait for a key we may be about to get; anyone can send such frames, so few wait."""
        self.expire()
        held = self.held
        while held and (len(held) >= HOLD_MAX or self.held_bytes + len(data) > HOLD_BYTES):
            _, old, old_data, old_peer = held.popleft()  # the oldest gives way (TCP repairs)
            self.held_bytes -= len(old_data)
            self.drops.count("unknown-key", old_peer, f"held frames full, room key {old}")
        held.append((self.clock() + HOLD_SECONDS, key_id, data, peer))
        self.held_bytes += len(data)

    def _cached(self, data: bytes, name: str, key: RoomKey) -> RoomFrame | None:
        found = _opened.get(data)
        if found is None or found[0] != name or found[1] != key.key_id or found[2] != key.key:
            return None
        return found[3]

    def _open(self, data: bytes, sealed: bytes, name: str, key: RoomKey, peer: str) -> RoomFrame:
        """The frame in a sealed datagram under ``name``'s ``key``: the tag, then the
        signature (the caller checks that it is of that room)."""
        pinned = self.trust.key
        if pinned is None:
            raise DatagramRefused("unknown-cluster", "no pinned cluster to verify rooms by")
        if self.guard.blocked(peer):  # not even the AEAD pass (up to 64 KiB) for its frames
            raise DatagramRefused("bad-signature-source", "room frame: too many bad signatures")
        try:
            _, signed = open_room_frame({key.key_id: key}, sealed)
        except CryptoError as exc:
            reason = "bad-room-tag" if exc.reason is Reason.BAD_TAG else "bad-room-frame"
            raise DatagramRefused(reason, f"room frame: {exc}") from None
        body = self._verified_body(pinned, signed, peer, "room frame", "bad-room-frame")
        try:
            frame = codec.decode(body, None)
        except RemoteProtocolError as exc:
            raise DatagramRefused(exc.reason, f"room frame: {exc}") from None
        if type(frame) is not RoomFrame:
            raise DatagramRefused("bad-room-frame", f"{type(frame).__name__} sealed as a room")
        if len(data) <= OPENED_CACHE_BYTES:
            _opened[data] = (name, key.key_id, key.key, frame)
            while len(_opened) > OPENED_CACHE:
                _opened.popitem(last=False)
        return frame

    def _verified_body(
        self, pinned: ClusterPublicKey, signed: bytes, peer: str, what: str, malformed: str
    ) -> bytes:
        """The body of a signed datagram from ``peer``, if the guard still checks that source
        (``bad-signature-source`` otherwise) and it verifies under our cluster."""
        guard = self.guard
        if not guard.allow(peer):
            raise DatagramRefused("bad-signature-source", f"{what}: too many bad signatures")
        try:
            body = verify_datagram(
                pinned, signed, self.wall(), self.trust.certificates(pinned)
            ).body
        except CryptoError as exc:
            guard.failed(peer)
            reason = "bad-signature" if exc.reason is Reason.BAD_SIGNATURE else malformed
            raise DatagramRefused(reason, f"{what}: {exc}") from None
        guard.passed(peer)
        return body
