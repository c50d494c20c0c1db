"""tchat.crypto.records: sealing, opening, framing, bounds and hostile streams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.crypto.noise import MAX_MESSAGE, TAG_LEN, CipherState, NoiseError
from tchat.crypto.records import (
    LENGTH_LEN,
    MAX_RECORD,
    MAX_RECORD_PLAINTEXT,
    RecordOpener,
    RecordReader,
    RecordSealer,
    frame,
)

KEY = bytes(range(32))


def _pair() -> tuple[RecordSealer, RecordOpener]:
    return RecordSealer(CipherState("ChaChaPoly", KEY)), RecordOpener(
        CipherState("ChaChaPoly", KEY)
    )


def _records(stream: bytes) -> list[int]:
    """The body lengths of the records in a stream."""
    lengths = []
    pos = 0
    while pos < len(stream):
        length = int.from_bytes(stream[pos : pos + LENGTH_LEN], "big")
        lengths.append(length)
        pos += LENGTH_LEN + length
    assert pos == len(stream)
    return lengths


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        200,
        MAX_RECORD_PLAINTEXT,
        MAX_RECORD_PLAINTEXT + 1,
        64 * 1024,
        3 * MAX_RECORD_PLAINTEXT,
    ],
)
def test_seal_splits_at_the_cap_and_round_trips(size: int) -> None:
    sealer, opener = _pair()
    data = bytes(i % 251 for i in range(size))
    stream = sealer.seal(data)
    lengths = _records(stream)
    assert all(length <= MAX_MESSAGE for length in lengths)
    assert len(lengths) == max(1, -(-size // MAX_RECORD_PLAINTEXT))
    assert b"".join(opener.feed(stream)) == data
    assert opener.buffered == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 70_000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 300_000), max_size=12),
)
def test_any_chunking_gives_the_same_plaintexts(sizes: list[int], cuts: list[int]) -> None:
    sealer, opener = _pair()
    payloads = [bytes([n % 256]) * n for n in sizes]
    stream = b"".join(sealer.seal(p) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    out: list[bytes] = []
    for start, end in zip(points, points[1:], strict=False):
        out.extend(opener.feed(stream[start:end]))
        assert opener.buffered <= MAX_RECORD
    assert b"".join(out) == b"".join(payloads)
    assert opener.buffered == 0


def test_idle_opener_holds_no_buffer() -> None:
    sealer, opener = _pair()
    stream = sealer.seal(b"x" * 1000)
    opener.feed(stream[:500])
    assert opener.buffered == 500
    assert opener.feed(stream[500:]) == [b"x" * 1000]
    assert opener.buffered == 0
    assert opener._reader._partial is None  # the buffer itself is gone, not just emptied


def test_one_byte_at_a_time_keeps_at_most_one_record() -> None:
    sealer, opener = _pair()
    stream = sealer.seal(b"y" * 70_000)
    out: list[bytes] = []
    for i in range(len(stream)):
        out.extend(opener.feed(stream[i : i + 1]))
        assert opener.buffered <= MAX_RECORD
    assert b"".join(out) == b"y" * 70_000


def test_bad_tag_fails_and_the_opener_stays_failed() -> None:
    sealer, opener = _pair()
    stream = bytearray(sealer.seal(b"hello"))
    stream[-1] ^= 1
    with pytest.raises(NoiseError, match="tag"):
        opener.feed(bytes(stream))
    with pytest.raises(NoiseError, match="closed"):
        opener.feed(sealer.seal(b"anything"))
    assert opener.buffered == 0


def test_replayed_record_fails() -> None:
    sealer, opener = _pair()
    record = sealer.seal(b"pay alice 10")
    assert opener.feed(record) == [b"pay alice 10"]
    with pytest.raises(NoiseError, match="tag"):
        opener.feed(record)


def test_reordered_records_fail() -> None:
    sealer, opener = _pair()
    first, second = sealer.seal(b"1"), sealer.seal(b"2")
    with pytest.raises(NoiseError, match="tag"):
        opener.feed(second + first)


@pytest.mark.parametrize("length", [0, 1, TAG_LEN - 1])
def test_impossible_length_is_refused_at_the_header(length: int) -> None:
    _, opener = _pair()
    with pytest.raises(NoiseError, match="below the minimum"):
        opener.feed(length.to_bytes(2, "big"))  # no body needed to know


def test_truncated_record_yields_nothing_and_is_kept() -> None:
    sealer, opener = _pair()
    stream = sealer.seal(b"z" * 100)
    assert opener.feed(stream[:-1]) == []
    assert opener.buffered == len(stream) - 1
    assert opener.feed(stream[-1:]) == [b"z" * 100]


def test_records_wholly_inside_a_feed_are_opened_in_place() -> None:
    # Many records in one feed: each costs its own size, the rest is not copied per record.
    sealer, opener = _pair()
    stream = b"".join(sealer.seal(b"m" * 200) for _ in range(2000))
    assert len(opener.feed(stream)) == 2000
    assert opener.buffered == 0


def test_frame_refuses_an_oversize_message() -> None:
    assert frame(b"ab") == b"\x00\x02ab"
    with pytest.raises(NoiseError):
        frame(bytes(MAX_MESSAGE + 1))


def test_reader_max_records_keeps_the_rest_pending() -> None:
    reader = RecordReader()
    stream = frame(b"one") + frame(b"two") + frame(b"three")[:3]
    assert reader.feed(stream, max_records=1) == [b"one"]
    assert reader.take_pending() == stream[5:]
    assert reader.buffered == 0


def test_opener_reads_pending_bytes_first() -> None:
    sealer, _ = _pair()
    stream = sealer.seal(b"early") + sealer.seal(b"late")
    opener = RecordOpener(CipherState("ChaChaPoly", KEY), pending=stream[:30])
    assert opener.buffered == 30
    assert opener.feed(b"") == [b"early"]
    assert opener.feed(stream[30:]) == [b"late"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_hostile_bytes_raise_only_noise_error(junk: bytes) -> None:
    _, opener = _pair()
    try:
        out = opener.feed(junk)
    except NoiseError:
        return
    assert out == []  # nothing forged gets through
    assert opener.buffered <= MAX_RECORD
