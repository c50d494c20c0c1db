"""Room keys and the AEAD-sealed multicast frame; a ring keeps a room's current and previous key.

A sealed room frame, version 2 (big-endian)::

    0    u8    version (2)
    1    u32   key id (random: which key sealed it, in clear so a receiver finds the key)
    5    12    nonce (random)
    17   ..    ChaCha20-Poly1305 ciphertext of the payload, 16-byte tag at the end

The associated data is bytes 0..5 (version, key id): neither can be changed without failing
the tag. Nothing else is in clear. Version 1 carried a clear header (the room's name and its
sequence numbers, for the receiver to pick the room's keys by): a sniffer learnt every
room's name and could count its messages. The key id is drawn at random, so it says nothing
of the room; a receiver looks it up among the keys of all its rooms, and whatever the
frame says of its room is inside the AEAD.

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
import secrets
import struct
from collections.abc import Container, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tchat.crypto.errors import CryptoError, Reason

VERSION = 2
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_HEAD = struct.Struct(">BI12s")  # version, key id, nonce: all a receiver sees in clear
_AAD = struct.Struct(">BI")
OVERHEAD = _HEAD.size + TAG_SIZE
MAX_DATAGRAM = 65507
MAX_KEY_ID = 2**32 - 1
MAX_FRAMES_PER_KEY = 2**32
MAX_KEY_AGE = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RoomKey:
    """One room key: ``key_id`` (a random u32: ``random_key_id``), 32 bytes, creation time."""

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


def random_key_id(taken: Container[int] = ()) -> int:
    """A key id for a new key: random, so that it tells a sniffer nothing (not the room,
    not how many keys came before), and not one of ``taken`` (the ids its sealer still
    uses), so that a receiver's lookup by id finds one key, not two."""
    for _ in range(64):  # with 2**32 ids and a few thousand taken, the first draw does
        key_id = secrets.randbits(32)
        if key_id not in taken:
            return key_id
    raise OverflowError("no free room key id")


def key_id_of(datagram: bytes) -> int:
    """The key id in clear of a sealed room frame (CryptoError if it has none)."""
    if len(datagram) < OVERHEAD:
        raise CryptoError("room frame shorter than its header and tag")
    if datagram[0] != VERSION:
        raise CryptoError(f"room frame version {datagram[0]} unknown", Reason.UNKNOWN_VERSION)
    key_id: int = _AAD.unpack_from(datagram)[1]
    return key_id


def seal_room_frame(room_key: RoomKey, plaintext: bytes) -> bytes:
    """A sealed room datagram: the key id and nonce in clear, ``plaintext`` sealed."""
    size = OVERHEAD + len(plaintext)
    if size > MAX_DATAGRAM:
        raise ValueError(f"a room frame holds at most {MAX_DATAGRAM} bytes, not {size}")
    nonce = os.urandom(NONCE_SIZE)
    sealed = ChaCha20Poly1305(room_key.key).encrypt(
        nonce, bytes(plaintext), _AAD.pack(VERSION, room_key.key_id)
    )
    return _HEAD.pack(VERSION, room_key.key_id, nonce) + sealed


def open_room_frame(keys_by_id: Mapping[int, RoomKey], datagram: bytes) -> tuple[int, bytes]:
    """(key id, plaintext) of a genuine room frame; CryptoError with a Reason otherwise.

    UNKNOWN_KEY means the receiver lacks that key id: it repairs over TCP (missed rotation).
    """
    data = bytes(datagram)
    if len(data) > MAX_DATAGRAM:
        raise CryptoError("room frame too large")
    if not data:
        raise CryptoError("empty room frame")
    key_id = key_id_of(data)
    room_key = keys_by_id.get(key_id)
    if room_key is None or room_key.key_id != key_id:
        raise CryptoError(f"room key {key_id} is not known here", Reason.UNKNOWN_KEY)
    nonce = data[_AAD.size : _HEAD.size]
    try:
        plaintext = ChaCha20Poly1305(room_key.key).decrypt(
            nonce, data[_HEAD.size :], _AAD.pack(VERSION, key_id)
        )
    except InvalidTag:
        raise CryptoError("room frame failed authentication", Reason.BAD_TAG) from None
    return key_id, plaintext


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

    def rotate(self, now: float, taken: Container[int] = ()) -> RoomKey:
        """Make and install the next key (the leader: daily, on leave, or when worn out),
        under a random id that is neither held here nor in ``taken``."""
        held = self.keys_by_id()
        key_id = random_key_id(_Either(held, taken))
        key = RoomKey.generate(key_id, now)
        self.install(key)
        return key

    def install(self, key: RoomKey) -> bool:
        """Take a key; False if it is held already (a grant sent again: ignored).

        Key ids are random, so they do not order keys: the newest is the one that came
        last. A leader sends a member its current key only, over one ordered session, so
        a key not held is newer than the ones held: it becomes current, and the current
        one previous. Re-sending the same id with other bytes is refused: a key id names
        one key.
        """
        for held in (self._current, self._previous):
            if held is not None and held.key_id == key.key_id:
                if held.key != key.key:
                    raise CryptoError(f"room key {key.key_id} conflicts with the one held")
                return False
        self._previous, self._current = self._current, key
        self._sealed = 0
        return True

    def seal(self, plaintext: bytes) -> bytes:
        """Seal under the current key, counting its use (see ``needs_rotation``)."""
        if self._current is None:
            raise ValueError("no room key yet")
        if self._sealed >= MAX_FRAMES_PER_KEY:
            raise OverflowError("room key worn out: rotate before sealing more")
        self._sealed += 1
        return seal_room_frame(self._current, plaintext)

    def open(self, datagram: bytes) -> tuple[int, bytes]:
        """Open with the current or previous key (CryptoError UNKNOWN_KEY: repair over TCP)."""
        return open_room_frame(self.keys_by_id(), datagram)

    def needs_rotation(self, now: float) -> bool:
        """Whether the current key is missing, a day old, or near its frame budget."""
        if self._current is None:
            return True
        too_old = now - self._current.created_at >= MAX_KEY_AGE
        return too_old or self._sealed >= MAX_FRAMES_PER_KEY - 2**20


@dataclass(frozen=True, slots=True)
class _Either:
    """Ids taken in either of two collections (no copy of the larger one)."""

    first: Container[int]
    second: Container[int]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.first or key_id in self.second
