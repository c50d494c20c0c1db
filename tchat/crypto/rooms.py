"""Room keys and the AEAD-sealed multicast frame; a ring keeps a room's current and previous key.

A sealed room frame, version 1 (big-endian)::

    0    u8    version (1)
    1    u32   key id (which room key sealed it; in clear so a receiver picks the key)
    5    12    nonce (random)
    17   u16   header length H
    19   H     header (in clear, authenticated: e.g. room and sequence for gap detection)
    ..   ..    ChaCha20-Poly1305 ciphertext of the payload, 16-byte tag at the end

The associated data is bytes 0..4 and 17..19+H (version, key id, header length, header),
so neither the key id nor the clear header can be changed without failing the tag.

Why a random 96-bit nonce is safe here: the leader is the only sealer of a room's frames
(members send over TCP), and a key seals at most ``MAX_FRAMES_PER_KEY`` = 2**32 frames
before ``RoomKeyRing.needs_rotation`` asks for a new one; by the birthday bound the chance
that two of 2**32 random 96-bit nonces collide is about 2**-33, NIST SP 800-38D's limit.
Keys also rotate at least daily (``MAX_KEY_AGE``) and whenever a member leaves or is
removed, so real keys seal far fewer. A random nonce needs no state to survive a
failover, where a counter would need the new leader to know the old leader's position.

A room key is shared by every member, so AEAD alone would let a member forge a frame as
the leader: the payload should be a ``certificate.sign_datagram`` blob (sign, then seal),
which members verify against the pinned cluster key. Replays of a room frame carry an old
sequence number, which the client's per-room hold-back queue already drops.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tchat.crypto.errors import CryptoError, Reason

VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_HEAD = struct.Struct(">BI12sH")
OVERHEAD = _HEAD.size + TAG_SIZE
MAX_DATAGRAM = 65507
MAX_KEY_ID = 2**32 - 1
MAX_FRAMES_PER_KEY = 2**32
MAX_KEY_AGE = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RoomKey:
    """One room key: ``key_id`` (u32, grows by one per rotation), 32 key bytes, creation time."""

    key_id: int
    key: bytes = field(repr=False)
    created_at: float

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= MAX_KEY_ID:
            raise CryptoError(f"a room key id is a u32, not {self.key_id}")
        if len(self.key) != KEY_SIZE:
            raise CryptoError(f"a room key is {KEY_SIZE} bytes, not {len(self.key)}")

    @classmethod
    def generate(cls, key_id: int, now: float) -> RoomKey:
        """A fresh random key."""
        return cls(key_id, os.urandom(KEY_SIZE), now)


def _aad(key_id: int, header: bytes) -> bytes:
    return struct.pack(">BIH", VERSION, key_id, len(header)) + header


def seal_room_frame(room_key: RoomKey, header_bytes: bytes, plaintext: bytes) -> bytes:
    """A sealed room datagram: ``header_bytes`` clear but authenticated, ``plaintext`` sealed."""
    header = bytes(header_bytes)
    size = OVERHEAD + len(header) + len(plaintext)
    if len(header) > 0xFFFF or size > MAX_DATAGRAM:
        raise ValueError(f"a room frame holds at most {MAX_DATAGRAM} bytes, not {size}")
    nonce = os.urandom(NONCE_SIZE)
    sealed = ChaCha20Poly1305(room_key.key).encrypt(
        nonce, bytes(plaintext), _aad(room_key.key_id, header)
    )
    return _HEAD.pack(VERSION, room_key.key_id, nonce, len(header)) + header + sealed


def open_room_frame(keys_by_id: Mapping[int, RoomKey], datagram: bytes) -> tuple[int, bytes, bytes]:
    """(key id, header, plaintext) of a genuine room frame; CryptoError with a Reason otherwise.

    UNKNOWN_KEY means the receiver lacks that key id: it repairs over TCP (missed rotation).
    """
    data = bytes(datagram)
    if len(data) > MAX_DATAGRAM:
        raise CryptoError("room frame too large")
    if not data:
        raise CryptoError("empty room frame")
    if data[0] != VERSION:
        raise CryptoError(f"room frame version {data[0]} unknown", Reason.UNKNOWN_VERSION)
    if len(data) < OVERHEAD:
        raise CryptoError("room frame shorter than its header and tag")
    _, key_id, nonce, header_size = _HEAD.unpack_from(data)
    body_start = _HEAD.size + header_size
    if len(data) < body_start + TAG_SIZE:
        raise CryptoError("room frame shorter than its header length says")
    room_key = keys_by_id.get(key_id)
    if room_key is None or room_key.key_id != key_id:
        raise CryptoError(f"room key {key_id} is not known here", Reason.UNKNOWN_KEY)
    header = data[_HEAD.size : body_start]
    try:
        plaintext = ChaCha20Poly1305(room_key.key).decrypt(
            nonce, data[body_start:], _aad(key_id, header)
        )
    except InvalidTag:
        raise CryptoError("room frame failed authentication", Reason.BAD_TAG) from None
    return key_id, header, plaintext


class RoomKeyRing:
    """A room's keys: the current one (seals) and the previous one (opens late frames). Bounded."""

    def __init__(self, current: RoomKey | None = None) -> None:
        self._current = current
        self._previous: RoomKey | None = None
        self._sealed = 0

    @property
    def current(self) -> RoomKey | None:
        """The key that seals new frames (None before the first key arrives)."""
        return self._current

    @property
    def previous(self) -> RoomKey | None:
        """The key before the current one, kept so frames in flight across a rotation open."""
        return self._previous

    def keys_by_id(self) -> dict[int, RoomKey]:
        """The keys to open frames with (at most two)."""
        return {k.key_id: k for k in (self._previous, self._current) if k is not None}

    def rotate(self, now: float) -> RoomKey:
        """Make and install the next key (the leader: daily, on leave, or when worn out)."""
        next_id = 0 if self._current is None else self._current.key_id + 1
        if next_id > MAX_KEY_ID:
            raise OverflowError("room key ids exhausted")
        key = RoomKey.generate(next_id, now)
        self.install(key)
        return key

    def install(self, key: RoomKey) -> bool:
        """Take a key received over TCP; False if it is not newer than what is held (ignored).

        A newer key becomes current and the old current becomes previous; an older key
        than the current one is kept as previous only if it is newer than the previous.
        Re-sending the same id with other bytes is refused: a key id names one key.
        """
        for held in (self._current, self._previous):
            if held is not None and held.key_id == key.key_id:
                if held.key != key.key:
                    raise CryptoError(f"room key {key.key_id} conflicts with the one held")
                return False
        if self._current is None or key.key_id > self._current.key_id:
            self._previous, self._current = self._current, key
            self._sealed = 0
            return True
        if self._previous is None or key.key_id > self._previous.key_id:
            self._previous = key
            return True
        return False

    def seal(self, header_bytes: bytes, plaintext: bytes) -> bytes:
        """Seal under the current key, counting its use (see ``needs_rotation``)."""
        if self._current is None:
            raise ValueError("no room key yet")
        if self._sealed >= MAX_FRAMES_PER_KEY:
            raise OverflowError("room key worn out: rotate before sealing more")
        self._sealed += 1
        return seal_room_frame(self._current, header_bytes, plaintext)

    def open(self, datagram: bytes) -> tuple[int, bytes, bytes]:
        """Open with the current or previous key (CryptoError UNKNOWN_KEY: repair over TCP)."""
        return open_room_frame(self.keys_by_id(), datagram)

    def needs_rotation(self, now: float) -> bool:
        """Whether the current key is missing, a day old, or near its frame budget."""
        if self._current is None:
            return True
        too_old = now - self._current.created_at >= MAX_KEY_AGE
        return too_old or self._sealed >= MAX_FRAMES_PER_KEY - 2**20
