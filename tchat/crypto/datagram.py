"""Server-to-server datagrams sealed with ChaCha20-Poly1305 under a per-boot key, replay-checked.

A sealed datagram, version 1 (big-endian)::

    0    u8    version (1)
    1    u64   sender server id (0 .. 2**53-1)
    9    16    boot salt (random, chosen once per sender process)
    25   u64   counter (0, 1, 2, ... per boot; never 2**64-1)
    33   ..    ChaCha20-Poly1305 ciphertext of the payload, 16-byte tag at the end

The 33-byte header travels in clear and is the AEAD's associated data, so a flipped
sender, salt or counter fails the tag like a flipped ciphertext byte. The key is
``HKDF-SHA256(datagram root, salt=boot salt, info=b"tchat dgram v1")``: fresh per boot,
so the nonce ``4 zero bytes + counter`` never repeats under one key (the sealer refuses
to go past 2**64-2 rather than wrap). The datagram root comes from the cluster secret
(cluster.py), so only cluster members can seal or open.

``DatagramOpener`` keeps, per (sender, salt) that has sent one valid datagram, the
derived cipher and a 1024-wide sliding replay window (RFC 6479 / WireGuard): a counter
more than 1024 behind the highest seen is TOO_OLD, one already seen is REPLAY. The
window is checked before decryption and updated only after the tag verified, so a forgery
cannot move it. A forgery costs O(1): at most one HKDF and one AEAD attempt, and an
unverified (sender, salt) is never cached, so a flood of random salts neither grows
memory nor evicts a real peer; the cache holds at most ``max_peers`` verified pairs (LRU).

Limit: a datagram from a previous boot of a sender is accepted once more by a receiver
that restarted (or evicted that pair) since it was captured. Every server message
carries its epoch and the core drops stale epochs and duplicates, which bounds what such
a replay can do; keep that property when wiring.
"""

from __future__ import annotations

import os
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tchat.core.schema import MAX_INT
from tchat.crypto.cluster import ClusterSecret, hkdf
from tchat.crypto.errors import CryptoError, Reason

VERSION = 1
INFO = b"tchat dgram v1"
SALT_SIZE = 16
TAG_SIZE = 16
_HEADER = struct.Struct(">BQ16sQ")
HEADER_SIZE = _HEADER.size
OVERHEAD = HEADER_SIZE + TAG_SIZE
# The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507
MAX_COUNTER = 2**64 - 1
WINDOW = 1024
DEFAULT_MAX_PEERS = 1024


def boot_key(secret: ClusterSecret, salt: bytes) -> bytes:
    """The datagram key of one sender boot."""
    return hkdf(secret.datagram_root, INFO, salt=salt)


def _nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + counter.to_bytes(8, "big")


class DatagramSealer:
    """Seals this server's datagrams; one per process (a fresh boot salt each time)."""

    def __init__(
        self, secret: ClusterSecret, sender_id: int, *, boot_salt: bytes | None = None
    ) -> None:
        if not 0 <= sender_id <= MAX_INT:
            raise ValueError(f"a server id is in [0, 2**53), not {sender_id}")
        self.sender_id = sender_id
        # Tests pass a salt to build replays; the runtime never does.
        self.boot_salt = os.urandom(SALT_SIZE) if boot_salt is None else boot_salt
        if len(self.boot_salt) != SALT_SIZE:
            raise ValueError(f"a boot salt is {SALT_SIZE} bytes")
        self._aead = ChaCha20Poly1305(boot_key(secret, self.boot_salt))
        self._next = 0

    @property
    def counter(self) -> int:
        """The counter the next datagram will carry."""
        return self._next

    def seal(self, payload: bytes) -> bytes:
        """One sealed datagram; OverflowError once the counter would wrap (a new boot salt)."""
        if len(payload) + OVERHEAD > MAX_DATAGRAM:
            raise ValueError(f"payload of {len(payload)} bytes does not fit one datagram")
        counter = self._next
        if counter >= MAX_COUNTER:
            raise OverflowError("datagram counter exhausted: a new boot salt is needed")
        self._next = counter + 1
        header = _HEADER.pack(VERSION, self.sender_id, self.boot_salt, counter)
        return header + self._aead.encrypt(_nonce(counter), bytes(payload), header)


@dataclass(slots=True)
class _Peer:
    """One verified (sender, boot salt): its cipher and replay window."""

    aead: ChaCha20Poly1305
    highest: int = -1
    # Bit i set: counter ``highest - i`` was accepted.
    seen: int = 0

    def check(self, counter: int) -> Reason | None:
        if counter > self.highest:
            return None
        behind = self.highest - counter
        if behind >= WINDOW:
            return Reason.TOO_OLD
        return Reason.REPLAY if self.seen >> behind & 1 else None

    def accept(self, counter: int) -> None:
        if counter > self.highest:
            shift = counter - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = counter
        else:
            self.seen |= 1 << (self.highest - counter)


class DatagramOpener:
    """Opens sealed datagrams from any cluster member; raises CryptoError with a ``Reason``."""

    def __init__(self, secret: ClusterSecret, *, max_peers: int = DEFAULT_MAX_PEERS) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        self._secret = secret
        self._max_peers = max_peers
        self._peers: OrderedDict[tuple[int, bytes], _Peer] = OrderedDict()
        # Refusals by reason, for the runtime's counters and tests.
        self.rejected: Counter[Reason] = Counter()

    def __len__(self) -> int:
        return len(self._peers)

    def open(self, datagram: bytes) -> tuple[int, bytes]:
        """(sender id, payload) of a genuine, fresh datagram; CryptoError otherwise (counted)."""
        try:
            return self._open(bytes(datagram))
        except CryptoError as exc:
            self.rejected[exc.reason] += 1
            raise

    def _open(self, datagram: bytes) -> tuple[int, bytes]:
        if len(datagram) > MAX_DATAGRAM:
            raise CryptoError("datagram too large")
        if not datagram:
            raise CryptoError("empty datagram")
        if datagram[0] != VERSION:
            raise CryptoError(f"datagram version {datagram[0]} unknown", Reason.UNKNOWN_VERSION)
        if len(datagram) < OVERHEAD:
            raise CryptoError("datagram shorter than header and tag")
        _, sender, salt, counter = _HEADER.unpack_from(datagram)
        if sender > MAX_INT or counter >= MAX_COUNTER:
            raise CryptoError("datagram header out of range")
        key = (sender, salt)
        peer = self._peers.get(key)
        fresh = peer is None
        if peer is None:
            peer = _Peer(ChaCha20Poly1305(boot_key(self._secret, salt)))
        refusal = peer.check(counter)
        if refusal is not None:
            raise CryptoError(f"datagram {counter} from server {sender}: {refusal.value}", refusal)
        header = datagram[:HEADER_SIZE]
        try:
            payload = peer.aead.decrypt(_nonce(counter), datagram[HEADER_SIZE:], header)
        except InvalidTag:
            raise CryptoError("datagram failed authentication", Reason.BAD_TAG) from None
        peer.accept(counter)
        if fresh:
            self._peers[key] = peer
            if len(self._peers) > self._max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(key)
        return sender, payload
