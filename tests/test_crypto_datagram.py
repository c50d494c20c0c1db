"""Sealed server datagrams: round trip, tamper, replay window, forgery floods and bounds."""

from __future__ import annotations

import os
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.crypto import datagram as dg
from tchat.crypto.cluster import ClusterSecret
from tchat.crypto.datagram import (
    HEADER_SIZE,
    MAX_DATAGRAM,
    OVERHEAD,
    WINDOW,
    DatagramOpener,
    DatagramSealer,
)
from tchat.crypto.errors import CryptoError, Reason

SECRET = ClusterSecret(bytes(range(32)))
SALT = bytes(range(16))


def _reason(opener: DatagramOpener, datagram: bytes) -> Reason:
    with pytest.raises(CryptoError) as info:
        opener.open(datagram)
    return info.value.reason


def test_round_trip_and_header_layout() -> None:
    sealer = DatagramSealer(SECRET, 42)
    opener = DatagramOpener(SECRET)
    for i in range(5):
        blob = sealer.seal(b"heartbeat %d" % i)
        version, sender, salt, counter = struct.unpack_from(">BQ16sQ", blob)
        assert (version, sender, salt, counter) == (1, 42, sealer.boot_salt, i)
        assert len(blob) == OVERHEAD + len(b"heartbeat %d" % i)
        assert b"heartbeat" not in blob
        assert opener.open(blob) == (42, b"heartbeat %d" % i)


def test_each_boot_has_its_own_salt_and_key() -> None:
    a, b = DatagramSealer(SECRET, 1), DatagramSealer(SECRET, 1)
    assert a.boot_salt != b.boot_salt
    # Same counter, same plaintext: different ciphertexts (no nonce reuse across boots).
    assert a.seal(b"same")[HEADER_SIZE:] != b.seal(b"same")[HEADER_SIZE:]
    opener = DatagramOpener(SECRET)
    assert opener.open(a.seal(b"x")) == (1, b"x")
    assert opener.open(b.seal(b"y")) == (1, b"y")


def test_every_flipped_byte_is_refused_and_counted() -> None:
    blob = DatagramSealer(SECRET, 7, boot_salt=SALT).seal(b"NewLeader epoch 3")
    opener = DatagramOpener(SECRET)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= bit
            assert _reason(opener, bytes(bad)) in {
                Reason.BAD_TAG,
                Reason.UNKNOWN_VERSION,
                Reason.MALFORMED,
            }
    assert sum(opener.rejected.values()) == 2 * len(blob)
    assert len(opener) == 0
    # The genuine datagram still opens: no forgery moved the window.
    assert opener.open(blob) == (7, b"NewLeader epoch 3")


def test_wrong_sender_in_header_fails_the_tag() -> None:
    blob = bytearray(DatagramSealer(SECRET, 7, boot_salt=SALT).seal(b"I am 7"))
    blob[1:9] = (8).to_bytes(8, "big")
    assert _reason(DatagramOpener(SECRET), bytes(blob)) is Reason.BAD_TAG


def test_another_clusters_datagram_is_refused() -> None:
    blob = DatagramSealer(ClusterSecret.generate(), 7).seal(b"join me")
    assert _reason(DatagramOpener(SECRET), blob) is Reason.BAD_TAG


def test_replay_is_refused_once_accepted() -> None:
    sealer = DatagramSealer(SECRET, 3)
    opener = DatagramOpener(SECRET)
    heartbeat = sealer.seal(b"heartbeat")
    assert opener.open(heartbeat) == (3, b"heartbeat")
    for _ in range(3):
        assert _reason(opener, heartbeat) is Reason.REPLAY
    assert opener.rejected[Reason.REPLAY] == 3


def test_reordering_inside_the_window_is_accepted_once() -> None:
    sealer = DatagramSealer(SECRET, 3)
    blobs = [sealer.seal(b"%d" % i) for i in range(WINDOW)]
    opener = DatagramOpener(SECRET)
    order = list(range(WINDOW))
    order.reverse()
    order = order[1:] + order[:1]  # newest first except one, then the rest descending
    for i in order:
        assert opener.open(blobs[i]) == (3, b"%d" % i)
    for i in (0, WINDOW // 2, WINDOW - 1):
        assert _reason(opener, blobs[i]) is Reason.REPLAY


def test_counter_beyond_the_window_is_too_old() -> None:
    sealer = DatagramSealer(SECRET, 3)
    old = sealer.seal(b"old")
    edge = sealer.seal(b"edge")
    for _ in range(WINDOW - 2):
        sealer.seal(b"skipped")
    opener = DatagramOpener(SECRET)
    newest = sealer.seal(b"newest")  # counter WINDOW: 'old' (0) is WINDOW behind
    assert opener.open(newest) == (3, b"newest")
    assert _reason(opener, old) is Reason.TOO_OLD
    assert opener.open(edge) == (3, b"edge")  # exactly WINDOW-1 behind: still inside


def test_large_jump_resets_the_window() -> None:
    sealer = DatagramSealer(SECRET, 3)
    opener = DatagramOpener(SECRET)
    first = sealer.seal(b"a")
    opener.open(first)
    sealer._next = 10**12  # a long-running sender
    late = sealer.seal(b"b")
    assert opener.open(late) == (3, b"b")
    assert _reason(opener, first) is Reason.TOO_OLD
    assert _reason(opener, late) is Reason.REPLAY


def test_counter_never_wraps() -> None:
    sealer = DatagramSealer(SECRET, 3)
    sealer._next = dg.MAX_COUNTER - 1
    last = sealer.seal(b"last")
    with pytest.raises(OverflowError):
        sealer.seal(b"wrapped")
    assert DatagramOpener(SECRET).open(last) == (3, b"last")
    # A header claiming the forbidden counter is malformed before any crypto.
    forged = bytearray(last)
    forged[25:33] = dg.MAX_COUNTER.to_bytes(8, "big")
    assert _reason(DatagramOpener(SECRET), bytes(forged)) is Reason.MALFORMED


def test_size_and_range_bounds() -> None:
    sealer = DatagramSealer(SECRET, 3)
    fits = b"p" * (MAX_DATAGRAM - OVERHEAD)
    assert len(sealer.seal(fits)) == MAX_DATAGRAM
    with pytest.raises(ValueError):
        sealer.seal(fits + b"p")
    for bad_id in (-1, 2**53):
        with pytest.raises(ValueError):
            DatagramSealer(SECRET, bad_id)
    opener = DatagramOpener(SECRET)
    assert _reason(opener, b"") is Reason.MALFORMED
    assert _reason(opener, b"\x01" * (OVERHEAD - 1)) is Reason.MALFORMED
    assert _reason(opener, b"\x02" + b"\0" * 60) is Reason.UNKNOWN_VERSION
    assert _reason(opener, b"\x01" * (MAX_DATAGRAM + 1)) is Reason.MALFORMED
    big_sender = b"\x01" + (2**53).to_bytes(8, "big") + b"\0" * 40
    assert _reason(opener, big_sender) is Reason.MALFORMED


def test_cache_is_bounded_lru_of_verified_peers() -> None:
    opener = DatagramOpener(SECRET, max_peers=4)
    sealers = [DatagramSealer(SECRET, i) for i in range(6)]
    firsts = [s.seal(b"hello") for s in sealers]
    for blob in firsts[:4]:
        opener.open(blob)
    # Sender 0 speaks again: it is the most recently used, so 1 and 2 are evicted first.
    again = sealers[0].seal(b"still here")
    opener.open(again)
    for blob in firsts[4:]:
        opener.open(blob)
    assert len(opener) == 4
    assert _reason(opener, again) is Reason.REPLAY  # sender 0's window was kept
    # An evicted pair starts a fresh window: its old datagram is accepted again (documented).
    assert opener.open(firsts[1]) == (1, b"hello")
    assert len(opener) == 4


def test_flood_of_forged_random_salts_is_all_refused_in_bounded_memory() -> None:
    opener = DatagramOpener(SECRET, max_peers=64)
    genuine = DatagramSealer(SECRET, 9)
    assert opener.open(genuine.seal(b"before")) == (9, b"before")
    flood, traced = 100_000, 10_000
    header = struct.Struct(">BQ16sQ")

    def forge(i: int) -> None:
        forged = header.pack(1, i % 50, os.urandom(16), i) + os.urandom(40)
        try:
            opener.open(forged)
        except CryptoError:
            return
        raise AssertionError("a forged datagram was accepted")

    for i in range(flood - traced):
        forge(i)
    # Memory is measured over the last part only: tracemalloc slows every allocation.
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(flood - traced, flood):
            forge(i)
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert opener.rejected[Reason.BAD_TAG] == flood
    assert len(opener) == 1  # no forged pair was cached, the genuine one was not evicted
    assert grown < 64 * 1024, grown
    assert opener.open(genuine.seal(b"after")) == (9, b"after")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_open_raises_only_crypto_error(blob: bytes) -> None:
    opener = DatagramOpener(SECRET)
    with pytest.raises(CryptoError):
        opener.open(blob)
    assert len(opener) == 0
