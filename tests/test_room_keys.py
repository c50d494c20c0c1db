"""Room keys in the runtime without a network: sealing, rotation, grants, holding, refusals."""

from __future__ import annotations

import time

import pytest

from tchat.core import codec
from tchat.core.messages import (
    MAX_ROOM,
    Chat,
    Dot,
    Entry,
    Epoch,
    Message,
    RoomFrame,
    RoomKeyGrant,
)
from tchat.core.vclock import EMPTY_CLOCK
from tchat.crypto.cluster import ClusterSecret, ServerKeys
from tchat.crypto.errors import CryptoError
from tchat.crypto.rooms import MAX_DATAGRAM, MAX_KEY_AGE
from tchat.runtime.connection import DropCounters
from tchat.runtime.datagram_auth import DatagramRefused
from tchat.runtime.room_keys import (
    HOLD_BYTES,
    HOLD_MAX,
    HOLD_SECONDS,
    KIND_ROOM,
    LeaderRoomKeys,
    MemberRoomKeys,
    RoomAudience,
)
from tchat.runtime.secure import ClusterTrust, WireSecurity

EPOCH = Epoch(3, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(room: str, gsn: int, text: str = "hello", epoch: Epoch = EPOCH) -> RoomFrame:
    chat = Chat("alice", room, None, text, False, EMPTY_CLOCK)
    entry = Entry(Dot(1, gsn), EMPTY_CLOCK, 1.0, None, chat)
    return RoomFrame(epoch, gsn, gsn - 1, room, 0, (), (), (entry,))


class Leader:
    """A leader's room sealer with an audience the test sets, and the grants it makes."""

    def __init__(self) -> None:
        self.secret = ClusterSecret.generate()
        security = WireSecurity.for_server(self.secret, ServerKeys.generate(), 1, time.time)
        self.audiences: dict[str, RoomAudience] = {}
        self.granted: list[tuple[str, Message]] = []
        self.clock = Clock()
        self.keys = LeaderRoomKeys(
            security,
            self.audiences.get,
            lambda addr, m: self.granted.append((addr, m)),
            self.clock,
        )

    def seat(self, room: str, *names: str, epoch: Epoch = EPOCH) -> None:
        addrs = tuple(f"127.0.0.1:{1000 + i}" for i, _ in enumerate(names))
        self.audiences[room] = RoomAudience(epoch, frozenset(names), addrs)

    def member(self, drops: DropCounters | None = None) -> MemberRoomKeys:
        member = MemberRoomKeys(
            ClusterTrust(self.secret.public_key),
            lambda data: codec.decode(data, None),
            drops or DropCounters(),
            self.clock,
        )
        for _, grant in self.granted:
            member.install(grant)  # type: ignore[arg-type]
        return member


def test_a_sealed_room_frame_opens_for_a_member_and_carries_no_text_in_clear() -> None:
    leader = Leader()
    leader.seat("den", "alice", "bob")
    data = leader.keys.seal(frame("den", 5, "the secret"))
    assert data[0] == KIND_ROOM and b"the secret" not in data
    assert [addr for addr, _ in leader.granted] == ["127.0.0.1:1000", "127.0.0.1:1001"]
    grant = leader.granted[0][1]
    assert isinstance(grant, RoomKeyGrant)
    # In clear: the kind, the sealed-frame version, the key id and the nonce; nothing else.
    assert data[1] == 2 and data[2:6] == grant.key_id.to_bytes(4, "big")
    assert b"den" not in data[:18]
    opened = leader.member().open(data, "127.0.0.1:9")
    assert opened == frame("den", 5, "the secret")


def test_key_ids_are_random_not_counted_nor_derived_from_the_room() -> None:
    """A key id in clear must tell a sniffer nothing: not the room (two leaders give one
    room unrelated ids), not how many keys came before (no counting up)."""
    ids: dict[str, list[int]] = {}
    for _ in range(2):
        leader = Leader()
        for i in range(32):
            leader.seat(f"room{i}", "alice")
            leader.keys.seal(frame(f"room{i}", 1))
        for _, grant in leader.granted:
            assert isinstance(grant, RoomKeyGrant)
            ids.setdefault(grant.room, []).append(grant.key_id)
    every = [key_id for pair in ids.values() for key_id in pair]
    assert len(set(every)) == len(every) == 64, "one id names one key"
    assert all(a != b for a, b in ids.values()), "a room's id is not a function of its name"
    steps = {b - a for a, b in zip(sorted(every), sorted(every)[1:], strict=False)}
    assert len(steps) > 8, "ids spread over the u32 range, not a counter"


def test_the_sealed_overhead_fits_what_the_run_builder_leaves() -> None:
    leader = Leader()
    room = "房" * MAX_ROOM  # the longest room name in UTF-8 bytes
    leader.seat(room, "alice")
    small = frame(room, 7, "x")
    overhead = len(leader.keys.seal(small)) - len(codec.encode(small, None))
    assert overhead <= codec.SEALED_ROOM_OVERHEAD, overhead
    # A run as big as the builder allows still fits one UDP datagram and the frame cap.
    text = "y" * 4000
    entries = []
    size = 0
    gsn = 10
    while True:
        entry = frame(room, gsn, text).entries[0]
        if size + codec.entry_size(entry) > codec.ROOM_FRAME_BUDGET:
            break
        entries.append(entry)
        size += codec.entry_size(entry)
        gsn += 1
    big = RoomFrame(EPOCH, gsn - 1, 9, room, 0, (), (), tuple(entries))
    sealed = leader.keys.seal(big)
    assert len(sealed) <= min(MAX_DATAGRAM, codec.MAX_FRAME)


def test_the_key_rotates_when_a_member_leaves_and_not_when_one_joins() -> None:
    leader = Leader()
    leader.seat("den", "alice", "bob")
    leader.keys.seal(frame("den", 1))
    carol_joins = leader.granted[:]
    leader.seat("den", "alice", "bob", "carol")
    leader.keys.seal(frame("den", 2))
    added = leader.granted[len(carol_joins) :]
    assert [addr for addr, _ in added] == ["127.0.0.1:1002"], "only the newcomer is granted"
    first = carol_joins[0][1].key_id  # type: ignore[attr-defined]
    assert added[0][1].key_id == first  # type: ignore[attr-defined]
    carol = leader.member()
    leader.seat("den", "alice", "bob")  # carol left (or was kicked)
    before = len(leader.granted)
    sealed = leader.keys.seal(frame("den", 3, "after carol"))
    rotated = leader.granted[before:]
    assert len({m.key_id for _, m in rotated}) == 1  # type: ignore[attr-defined]
    assert {m.key_id for _, m in rotated} != {first}  # type: ignore[attr-defined]
    assert "127.0.0.1:1002" not in {addr for addr, _ in rotated}
    drops = DropCounters()
    carol.drops = drops
    assert carol.open(sealed, "x") is None, "a key carol never gets: the frame waits, then goes"
    carol.clock.now += HOLD_SECONDS  # type: ignore[attr-defined]
    carol.expire()
    assert drops.snapshot() == {"unknown-key": 1}


def test_a_day_old_key_rotates_and_a_new_leader_starts_a_new_ring() -> None:
    leader = Leader()
    leader.seat("den", "alice")
    leader.keys.seal(frame("den", 1))
    leader.clock.now += MAX_KEY_AGE
    leader.keys.seal(frame("den", 2))
    day_one, day_two = (m.key_id for _, m in leader.granted)  # type: ignore[attr-defined]
    assert day_one != day_two
    member = leader.member()
    newer = Epoch(4, 2)
    leader.seat("den", "alice", epoch=newer)
    data = leader.keys.seal(frame("den", 3, epoch=newer))
    assert leader.granted[-1][1].epoch == newer  # type: ignore[attr-defined]
    assert leader.granted[-1][1].key_id not in (day_one, day_two)  # type: ignore[attr-defined]
    assert member.open(data, "x") is None  # held: the new leader's grant is on its way
    ready = member.install(leader.granted[-1][1])  # type: ignore[arg-type]
    assert [member.open(d, p) for d, p in ready] == [frame("den", 3, epoch=newer)]
    # An old leader's grant changes nothing any more.
    assert member.install(RoomKeyGrant(EPOCH, "den", 7, bytes(32))) == []
    assert member.rooms["den"].epoch == newer


def test_forged_tampered_replayed_and_plain_room_frames_are_refused_by_reason() -> None:
    leader = Leader()
    leader.seat("den", "alice")
    data = leader.keys.seal(frame("den", 1))
    member = leader.member()
    assert member.open(data, "x") is not None

    def reason(datagram: bytes) -> str:
        with pytest.raises(DatagramRefused) as refused:
            member.open(datagram, "x")
        return refused.value.reason

    assert reason(data) == "replayed"
    tampered = bytearray(leader.keys.seal(frame("den", 2)))
    tampered[-5] ^= 1
    assert reason(bytes(tampered)) == "bad-room-tag"
    assert reason(codec.encode(frame("den", 3), None)) == "unsealed-room"
    assert reason(bytes((KIND_ROOM, 1, 2))) == "bad-room-frame"
    assert reason(bytes((KIND_ROOM, 1)) + data[2:]) == "bad-room-frame"  # version 1: gone
    # A member holds the key but not the leader's signing key: it cannot forge a frame.
    from tchat.crypto.rooms import open_room_frame, seal_room_frame

    key = member.rooms["den"].ring.current
    assert key is not None
    fake = frame("den", 4, "as the leader")
    forged = bytes((KIND_ROOM,)) + seal_room_frame(
        key, b"\x01\x00" + codec.encode(fake, None) + bytes(64)
    )
    assert reason(forged) in {"bad-signature", "bad-room-frame"}
    # The room is inside, bound to the key that opened it: the leader's genuine frame of
    # another room, sealed again under this room's key (by a member of both), is refused.
    leader.seat("attic", "alice")
    attic = leader.keys.seal(frame("attic", 5))
    _, signed = open_room_frame(leader.keys.rooms["attic"].ring.keys_by_id(), attic[1:])
    moved = bytes((KIND_ROOM,)) + seal_room_frame(key, signed)
    assert reason(moved) == "bad-room-frame"


def test_frames_waiting_for_a_key_are_bounded_by_bytes_and_counted() -> None:
    leader = Leader()
    leader.seat("den", "alice")
    drops = DropCounters()
    member = leader.member(drops)
    leader.granted.clear()
    stranger = Leader()  # keys nobody granted us
    stranger.seat("den", "alice")
    big = [stranger.keys.seal(frame("den", gsn, "z" * 30000)) for gsn in range(1, 200)]
    fit, total = 0, 0  # the newest frames that fit the byte bound stay; older ones give way
    for data in reversed(big):
        if total + len(data) > HOLD_BYTES:
            break
        fit, total = fit + 1, total + len(data)
    assert fit < len(big) < HOLD_MAX
    for data in big:
        assert member.open(data, "x") is None
    assert member.held_bytes <= HOLD_BYTES
    assert len(member.held) == fit
    assert drops.snapshot() == {"unknown-key": len(big) - fit}
    # Past their second, they go (counted), the oldest first, and the bytes with them.
    member.clock.now += HOLD_SECONDS  # type: ignore[attr-defined]
    member.expire()
    assert not member.held and member.held_bytes == 0
    assert drops.snapshot() == {"unknown-key": len(big)}


def test_a_burst_sealed_under_a_key_still_in_flight_opens_whole_when_it_comes() -> None:
    """A new leader's key (its takeover rotation) rides each member's TCP session, behind
    whatever that session had queued, while its frames come by multicast at once: at
    8,000 msg/s a grant 100 ms behind is ~800 frames, which all open when it comes."""
    leader = Leader()
    leader.seat("den", "alice")
    leader.keys.seal(frame("den", 1))
    drops = DropCounters()
    member = leader.member(drops)
    newer = Epoch(4, 2)
    leader.seat("den", "alice", epoch=newer)
    burst = [leader.keys.seal(frame("den", gsn, epoch=newer)) for gsn in range(2, 802)]
    for data in burst:
        assert member.open(data, "x") is None
    member.clock.now += HOLD_SECONDS / 2  # type: ignore[attr-defined]
    member.expire()
    ready = member.install(leader.granted[-1][1])  # type: ignore[arg-type]
    opened = [member.open(d, p) for d, p in ready]
    assert opened == [frame("den", gsn, epoch=newer) for gsn in range(2, 802)]
    assert drops.snapshot() == {}
    assert not member.held and member.held_bytes == 0


def test_a_grant_out_of_range_is_refused_and_a_conflicting_one_restarts_the_ring() -> None:
    leader = Leader()
    member = leader.member()
    with pytest.raises(CryptoError):
        member.install(RoomKeyGrant(EPOCH, "den", 2**32, bytes(32)))
    member.install(RoomKeyGrant(EPOCH, "den", 1, bytes(32)))
    # The same id under other bytes: the leader's word wins, the ring starts over.
    member.install(RoomKeyGrant(EPOCH, "den", 1, bytes(31) + b"\x01"))
    assert member.rooms["den"].ring.keys_by_id()[1].key == bytes(31) + b"\x01"


def test_a_room_the_leader_forgot_gets_a_key_id_its_members_never_held() -> None:
    leader = Leader()
    leader.seat("den", "alice")
    leader.seat("attic", "alice")
    leader.keys.seal(frame("den", 1))
    del leader.keys.rooms["den"]  # as the LRU would, past ROOMS_KEPT rooms
    leader.keys.seal(frame("attic", 2))
    leader.keys.seal(frame("den", 3))
    ids = [(m.room, m.key_id) for _, m in leader.granted]  # type: ignore[attr-defined]
    assert [room for room, _ in ids] == ["den", "attic", "den"]
    assert len({key_id for _, key_id in ids}) == 3, "den's new key is not its old id"
    assert set(leader.keys.key_ids) >= {ids[1][1], ids[2][1]}


def test_a_welcomed_member_is_granted_again_and_an_unchanged_room_grants_nothing() -> None:
    leader = Leader()
    leader.seat("den", "alice", "bob")
    leader.keys.seal(frame("den", 1))
    assert len(leader.granted) == 2
    leader.keys.seal(frame("den", 2))
    assert len(leader.granted) == 2, "the same audience: no grant, no rotation"
    leader.keys.forget("127.0.0.1:1001")  # bob's Welcome (a resume: its session is new)
    # The key goes at once, ahead of the Welcome and its replay, not behind them.
    assert [addr for addr, _ in leader.granted[2:]] == ["127.0.0.1:1001"]
    assert leader.granted[2][1] == leader.granted[1][1], "the same key, not a rotation"
    leader.keys.seal(frame("den", 3))
    assert len(leader.granted) == 3, "granted once, not again at the next frame"
    leader.keys.forget("127.0.0.1:4242")  # never a member here: nothing to grant
    assert len(leader.granted) == 3


def test_lobby_datagrams_are_signed_and_a_plain_or_foreign_one_is_refused() -> None:
    from tchat.core.messages import LobbyBeat, LobbyFrame

    leader = Leader()
    member = leader.member()
    beat = LobbyBeat(EPOCH, 1, 40, 39, 1)
    lobby = LobbyFrame(EPOCH, 41, 39, (), (), ())
    for message in (beat, lobby):
        assert member.open(leader.keys.sign_lobby(message), "x") == message

    def reason(datagram: bytes) -> str:
        with pytest.raises(DatagramRefused) as refused:
            member.open(datagram, "x")
        return refused.value.reason

    assert reason(codec.encode(LobbyBeat(EPOCH, 1, 50, 49, 2), None)) == "unsigned-lobby"
    assert reason(Leader().keys.sign_lobby(LobbyBeat(EPOCH, 1, 60, 59, 3))) == "bad-signature"
    tampered = bytearray(leader.keys.sign_lobby(LobbyBeat(EPOCH, 1, 70, 69, 4)))
    tampered[-70] ^= 1  # in the body: the signature no longer matches
    assert reason(bytes(tampered)) == "bad-signature"


def test_the_replay_window_takes_a_late_frame_and_refuses_one_far_behind() -> None:
    leader = Leader()
    leader.seat("den", "alice")
    late, far, newest = (leader.keys.seal(frame("den", g)) for g in (299, 10, 300))
    member = leader.member()
    assert member.open(newest, "x") is not None
    assert member.open(late, "x") is not None, "out of order within the window"
    with pytest.raises(DatagramRefused) as refused:
        member.open(far, "x")
    assert refused.value.reason == "replayed"


def test_a_member_flooding_bad_signatures_costs_a_few_checks_and_blocks_only_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A member holds the room key, so it can seal frames whose signature every member
    must check (an Ed25519 verification each). After STRIKES bad ones its source is
    refused unverified: N forged frames cost O(STRIKES) checks, not O(N), and the
    leader's next frame, from its own address, still opens."""
    from tchat.crypto.rooms import open_room_frame, seal_room_frame
    from tchat.runtime import room_keys, signature_guard

    checks = 0
    real_verify = room_keys.verify_datagram

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal checks
        checks += 1
        return real_verify(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(room_keys, "verify_datagram", counting)
    leader = Leader()
    leader.seat("den", "alice", "mallory")
    first = leader.keys.seal(frame("den", 1))
    drops = DropCounters()
    member = leader.member(drops)
    leader_addr, mallory = "127.0.0.1:5000", "127.0.0.1:6000"
    assert member.open(first, leader_addr) is not None
    key = member.rooms["den"].ring.current
    assert key is not None
    # The leader's certificate, copied: only the signature (an Ed25519 check) fails.
    _, signed = open_room_frame({key.key_id: key}, first[1:])
    cert_end = 3 + int.from_bytes(signed[1:3], "big")
    n = 2000
    reasons: dict[str, int] = {}
    for gsn in range(2, 2 + n):
        fake = codec.encode(frame("den", gsn, "as the leader"), None)
        forged = bytes((KIND_ROOM,)) + seal_room_frame(key, signed[:cert_end] + fake + bytes(64))
        with pytest.raises(DatagramRefused) as refused:
            member.open(forged, mallory)
        reasons[refused.value.reason] = reasons.get(refused.value.reason, 0) + 1
    assert reasons == {
        "bad-signature": signature_guard.STRIKES,
        "bad-signature-source": n - signature_guard.STRIKES,
    }
    assert checks == 1 + signature_guard.STRIKES, checks
    assert member.guard.blocked(mallory) and not member.guard.blocked(leader_addr)
    assert member.open(leader.keys.seal(frame("den", 2 + n)), leader_addr) is not None
    # Blocked for a while, then checked again (and blocked again after as many).
    member.clock.now += signature_guard.BLOCKED_FOR  # type: ignore[attr-defined]
    assert not member.guard.blocked(mallory)


def test_bad_signatures_from_ever_new_sources_share_one_budget() -> None:
    """Spoofed or many-port sources: each gets a few strikes, but sources never seen
    signing genuinely share STRANGER_CHECKS, so their checks are bounded in total; a
    source that signed genuinely (the leader) is still checked."""
    from tchat.runtime import signature_guard
    from tchat.runtime.signature_guard import SignatureGuard

    clock = Clock()
    guard = SignatureGuard(clock)
    guard.passed("leader:1")
    allowed = 0
    for port in range(10_000):
        source = f"10.0.0.9:{port}"
        if guard.allow(source):
            allowed += 1
            guard.failed(source)
    assert allowed == signature_guard.STRANGER_CHECKS[1]
    assert guard.allow("leader:1"), "the leader is not starved by strangers"
    assert len(guard.strikes) <= signature_guard.STRIKE_SOURCES
    clock.now += 1.0
    assert sum(guard.allow(f"10.0.0.8:{p}") for p in range(1000)) == int(
        signature_guard.STRANGER_CHECKS[0]
    )
    # Spoofing the leader's address with bad signatures blocks that address for a while
    # (the members repair over TCP meanwhile): what SECURITY.md says such a member gains.
    for _ in range(signature_guard.STRIKES):
        assert guard.allow("leader:1")
        guard.failed("leader:1")
    assert not guard.allow("leader:1")
    clock.now += signature_guard.BLOCKED_FOR
    assert guard.allow("leader:1")


def test_a_flood_of_forged_lobby_signatures_is_bounded_too() -> None:
    """Anyone can send the lobby group a datagram to verify (a lobby frame needs no key)."""
    from tchat.core.messages import LobbyBeat
    from tchat.runtime import signature_guard

    leader = Leader()
    member = leader.member()
    reasons: dict[str, int] = {}
    for beat in range(1, 500):
        forged = Leader().keys.sign_lobby(LobbyBeat(EPOCH, 1, 40, 39, beat))
        with pytest.raises(DatagramRefused) as refused:
            member.open(forged, "127.0.0.1:6000")
        reasons[refused.value.reason] = reasons.get(refused.value.reason, 0) + 1
    assert reasons == {
        "bad-signature": signature_guard.STRIKES,
        "bad-signature-source": 499 - signature_guard.STRIKES,
    }
    genuine = LobbyBeat(EPOCH, 1, 41, 40, 600)
    assert member.open(leader.keys.sign_lobby(genuine), "127.0.0.1:5000") == genuine


def test_one_key_id_held_for_two_rooms_opens_each_under_its_own_key() -> None:
    """Ids are random: a new leader may draw one the member still holds for another room
    of the old epoch. Each candidate key is tried, the tag decides, the room is the key's."""
    from tchat.crypto.rooms import RoomKey, open_room_frame, seal_room_frame

    leader = Leader()
    leader.seat("den", "alice")
    den = leader.keys.seal(frame("den", 1))
    member = leader.member()
    den_id = member.rooms["den"].ring.current.key_id  # type: ignore[union-attr]
    # A grant for "attic" under den's id (another leader's draw, as far as ids go).
    member.install(RoomKeyGrant(EPOCH, "attic", den_id, bytes(range(32))))
    assert member.by_id[den_id] == ["den", "attic"]
    _, signed = open_room_frame(member.rooms["den"].ring.keys_by_id(), den[1:])
    attic_key = RoomKey(den_id, bytes(range(32)), 0.0)
    assert member.open(den, "127.0.0.1:5000") == frame("den", 1)
    # The leader's genuine den frame sealed under attic's key: den's key fails its tag,
    # attic's opens it, and it is refused as another room's frame.
    with pytest.raises(DatagramRefused) as refused:
        member.open(bytes((KIND_ROOM,)) + seal_room_frame(attic_key, signed), "127.0.0.1:5000")
    assert refused.value.reason == "bad-room-frame"


def test_a_frame_under_a_key_the_member_dropped_is_refused_at_once() -> None:
    leader = Leader()
    leader.seat("den", "alice", "bob")
    old = leader.keys.seal(frame("den", 1))
    member = leader.member()
    for gsn, names in ((2, ("alice",)), (3, ("alice", "bob")), (4, ("alice",))):
        leader.seat("den", *names)  # two leaves: two rotations, the first key drops out
        leader.keys.seal(frame("den", gsn))
    for _, grant in leader.granted:
        member.install(grant)  # type: ignore[arg-type]
    assert len(member.rooms["den"].ring.keys_by_id()) == 2
    with pytest.raises(DatagramRefused) as refused:
        member.open(old, "127.0.0.1:5000")
    assert refused.value.reason == "unknown-key" and not member.held
