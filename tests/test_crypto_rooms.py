"""Room keys: sealed multicast frames, tampering, unknown keys, the bounded two-key ring."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.crypto import rooms
from tchat.crypto.certificate import issue_certificate, sign_datagram, verify_datagram
from tchat.crypto.cluster import ClusterSecret, ServerKeys
from tchat.crypto.errors import CryptoError, Reason
from tchat.crypto.rooms import (
    MAX_DATAGRAM,
    OVERHEAD,
    RoomKey,
    RoomKeyRing,
    open_room_frame,
    seal_room_frame,
)

KEY = RoomKey(3, bytes(range(32)), 100.0)


def _reason(keys: dict[int, RoomKey], frame: bytes) -> Reason:
    with pytest.raises(CryptoError) as info:
        open_room_frame(keys, frame)
    return info.value.reason


def test_round_trip_hides_the_text_and_shows_only_the_key_id() -> None:
    frame = seal_room_frame(KEY, b"room=war-room seq=17: secret plans")
    assert b"secret plans" not in frame and b"war-room" not in frame
    assert frame[0] == rooms.VERSION == 2 and frame[1:5] == (3).to_bytes(4, "big")
    assert len(frame) == OVERHEAD + len(b"room=war-room seq=17: secret plans") == 17 + 16 + 34
    assert open_room_frame({3: KEY}, frame) == (3, b"room=war-room seq=17: secret plans")


def test_random_key_ids_avoid_the_taken_ones() -> None:
    taken = {rooms.random_key_id() for _ in range(100)}
    assert len(taken) >= 99  # 100 draws from 2**32
    assert all(rooms.random_key_id(taken) not in taken for _ in range(100))
    with pytest.raises(OverflowError):
        rooms.random_key_id(_Everything())


class _Everything:
    def __contains__(self, _item: object) -> bool:
        return True


def test_random_nonces_differ_between_frames() -> None:
    a, b = seal_room_frame(KEY, b"same"), seal_room_frame(KEY, b"same")
    assert a[5:17] != b[5:17]
    assert a != b


def test_every_flipped_byte_is_refused() -> None:
    frame = seal_room_frame(KEY, b"hello room")
    # Key 3 and key 2 both held, so a flipped key id hits a real key and fails its tag.
    keys = {3: KEY, 2: RoomKey(2, bytes(32), 0.0)}
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x01
        assert _reason(keys, bytes(bad)) in {
            Reason.BAD_TAG,
            Reason.UNKNOWN_VERSION,
            Reason.MALFORMED,
            Reason.UNKNOWN_KEY,
        }


def test_a_lan_host_without_the_key_cannot_forge_or_read() -> None:
    outsider = RoomKey(3, bytes(32), 0.0)  # right id, wrong key
    forged = seal_room_frame(outsider, b"I am alice")
    assert _reason({3: KEY}, forged) is Reason.BAD_TAG


def test_the_key_id_is_bound_by_the_tag() -> None:
    # Two keys of the same bytes under two ids: a frame relabelled to the other id fails.
    frame = seal_room_frame(KEY, b"first")
    relabelled = frame[:1] + (4).to_bytes(4, "big") + frame[5:]
    assert _reason({4: RoomKey(4, KEY.key, 0.0)}, relabelled) is Reason.BAD_TAG


def test_unknown_key_id_asks_for_repair() -> None:
    frame = seal_room_frame(RoomKey(9, bytes(32), 0.0), b"x")
    assert _reason({3: KEY}, frame) is Reason.UNKNOWN_KEY


def test_a_key_filed_under_another_id_is_not_used() -> None:
    frame = seal_room_frame(KEY, b"x")
    assert _reason({3: RoomKey(4, KEY.key, 0.0)}, frame) is Reason.UNKNOWN_KEY


def test_bounds() -> None:
    fits = b"p" * (MAX_DATAGRAM - OVERHEAD)
    assert len(seal_room_frame(KEY, fits)) == MAX_DATAGRAM
    with pytest.raises(ValueError):
        seal_room_frame(KEY, fits + b"p")
    assert _reason({3: KEY}, b"") is Reason.MALFORMED
    assert _reason({3: KEY}, b"\x02" * (OVERHEAD - 1)) is Reason.MALFORMED
    assert _reason({3: KEY}, b"\x07" + b"\0" * 40) is Reason.UNKNOWN_VERSION
    # Version 1 (the room's name in a clear header) is no longer read.
    assert _reason({3: KEY}, b"\x01" + b"\0" * 40) is Reason.UNKNOWN_VERSION
    assert _reason({3: KEY}, b"\x02" * (MAX_DATAGRAM + 1)) is Reason.MALFORMED
    with pytest.raises(CryptoError):
        RoomKey(2**32, bytes(32), 0.0)
    with pytest.raises(CryptoError):
        RoomKey(1, bytes(31), 0.0)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_open_raises_only_crypto_error(blob: bytes) -> None:
    with pytest.raises(CryptoError):
        open_room_frame({3: KEY, 0: RoomKey(0, bytes(32), 0.0)}, blob)


def test_ring_keeps_current_and_previous_only() -> None:
    ring = RoomKeyRing()
    assert ring.needs_rotation(0.0)
    first = ring.rotate(0.0)
    frame_first = ring.seal(b"under the first key")
    second = ring.rotate(10.0)
    assert first.key_id != second.key_id
    assert ring.current == second and ring.previous == first
    # A frame in flight across the rotation still opens.
    assert ring.open(frame_first) == (first.key_id, b"under the first key")
    third = ring.rotate(20.0, taken={first.key_id})
    assert sorted(ring.keys_by_id()) == sorted([second.key_id, third.key_id])
    with pytest.raises(CryptoError) as info:
        ring.open(frame_first)
    assert info.value.reason is Reason.UNKNOWN_KEY


def test_ring_install_from_tcp_orders_keys_by_arrival_and_refuses_conflicts() -> None:
    # Ids are random, so they say nothing of age: the key that came last is the newest
    # (a leader grants its current key only, over one ordered session).
    k1, k2, k3 = (RoomKey(i, bytes([i]) * 32, float(i)) for i in (9, 2, 5))
    ring = RoomKeyRing()
    assert ring.install(k1)
    assert ring.install(k2)  # came later: becomes current, though its id is lower
    assert not ring.install(k2)  # the same grant again
    assert not ring.install(k1)  # still held (previous): nothing changes
    assert (ring.current, ring.previous) == (k2, k1)
    assert ring.install(k3)
    assert (ring.current, ring.previous) == (k3, k2)
    with pytest.raises(CryptoError, match="conflicts"):
        ring.install(RoomKey(5, bytes(32), 0.0))


def test_ring_rotation_rules() -> None:
    ring = RoomKeyRing()
    ring.rotate(1000.0)
    assert not ring.needs_rotation(1000.0 + rooms.MAX_KEY_AGE - 1)
    assert ring.needs_rotation(1000.0 + rooms.MAX_KEY_AGE)
    ring._sealed = rooms.MAX_FRAMES_PER_KEY - 2**20
    assert ring.needs_rotation(1000.0)
    ring._sealed = rooms.MAX_FRAMES_PER_KEY
    with pytest.raises(OverflowError):
        ring.seal(b"one too many")
    ring.rotate(1001.0)
    assert not ring.needs_rotation(1001.0)
    ring.seal(b"fresh key")
    with pytest.raises(ValueError):
        RoomKeyRing().seal(b"no key")


def test_signed_then_sealed_frame_stops_a_member_forging_the_leader() -> None:
    secret, keys = ClusterSecret.generate(), ServerKeys.generate()
    cert = issue_certificate(secret, 1, keys, 1000.0)
    frame = seal_room_frame(KEY, sign_datagram(keys.signing_key, cert, b"bob: hi"))
    _, inner = open_room_frame({3: KEY}, frame)
    assert verify_datagram(secret.public_key, inner, 1000.0).body == b"bob: hi"
    # A member holds the room key but not a certified server key.
    member = ServerKeys.generate()
    forged = seal_room_frame(KEY, sign_datagram(member.signing_key, cert, b"bob: lol"))
    _, inner = open_room_frame({3: KEY}, forged)
    with pytest.raises(CryptoError):
        verify_datagram(secret.public_key, inner, 1000.0)
