"""Wire codec: messages to versioned, optionally HMAC-signed msgpack frames and back, validated."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgpack

from tchat.core.errors import (
    BadSignature,
    LocalProtocolError,
    MalformedFrame,
    OversizedFrame,
    TruncatedFrame,
    UnknownVersion,
)
from tchat.core.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Admit,
    Append,
    Entry,
    Message,
    SyncData,
)
from tchat.core.packing import pack, pack_message, packed_entry, remember
from tchat.core.schema import ENCODERS, decode_message
from tchat.core.schema import decode_entry as schema_decode_entry

logger = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
MAC_SIZE = 32
FLAG_SIGNED = 0x01
HEADER_SIZE = 2  # version byte + flags byte
# What the variable part of one frame (its entries, users, rooms...) may weigh. The rest of
# the frame (header, MAC, msgpack headers, epoch, ids, flags: a few dozen bytes) fits the
# 8 KiB left; a message that also carries the server list (up to MAX_SERVERS addresses)
# gives its other lists a half or a third of the budget.
FRAME_BUDGET = MAX_FRAME - 8 * 1024
# What a secure leader's sign-then-seal adds to a multicast room frame (tchat/runtime/
# room_keys.py: kind byte, sealed header (version, key id, nonce), AEAD tag, the server's
# certificate and signature: 254 bytes, tests/test_room_keys.py). A room run leaves it
# free, so the sealed datagram still fits one UDP datagram and MAX_FRAME.
SEALED_ROOM_OVERHEAD = 2 * 1024
ROOM_FRAME_BUDGET = FRAME_BUDGET - SEALED_ROOM_OVERHEAD
# The largest entry a leader records (the largest a client can make is 19,643 bytes: see
# docs/PROTOCOL.md §1): an operation whose entry would weigh more is refused at submit.
# Two such entries fit FRAME_BUDGET, so every batch, chunk and run takes at least one.
MAX_ENTRY = 24 * 1024

T = TypeVar("T")

_LENGTH = struct.Struct(">I")
_UNSIGNED_HEAD = bytes((PROTOCOL_VERSION, 0))
_SIGNED_HEAD = bytes((PROTOCOL_VERSION, FLAG_SIGNED))


# A server stores the entries of these as it receives them. Their entries' bytes are cut
# out of the frame while it is unpacked and kept as the entries' packed form, so a backup
# does not pack every entry it stores again (that was a fifth of a backup's CPU at 9,000
# msg/s; cutting costs ~0.2 us an entry, packing ~3). Wire tag -> (array length, position
# of the entries field in the array).
_CUT: dict[int, tuple[int, int]] = {
    MESSAGE_TYPES.index(cls): (1 + len(names), 1 + names.index("entries"))
    for cls in (Append, SyncData, Admit)
    for names in ([f.name for f in dataclasses.fields(cls)],)
}


def _unpack_cut(body: bytes, size: int, at: int) -> tuple[Any, list[bytes]] | None:
    """``_unpack(body)`` of a message whose field ``at`` is its entries, with each entry's
    bytes as they are in ``body``; None if the body does not read so (the caller unpacks
    it the usual way, which says what is wrong with it)."""
    reader = msgpack.Unpacker(
        use_list=False, raw=False, strict_map_key=False, max_buffer_size=len(body)
    )
    reader.feed(body)
    try:
        if reader.read_array_header() != size:
            return None
        values: list[Any] = [reader.unpack() for _ in range(at)]
        items: list[Any] = []
        parts: list[bytes] = []
        for _ in range(reader.read_array_header()):
            start = reader.tell()
            items.append(reader.unpack())
            parts.append(body[start : reader.tell()])
        values.append(tuple(items))
        values.extend(reader.unpack() for _ in range(size - at - 1))
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException, msgpack.OutOfData):
        return None
    if reader.tell() != len(body):
        return None
    return tuple(values), parts


def _unpack(body: bytes | bytearray | memoryview) -> Any:
    if not body:
        raise TruncatedFrame("empty body")
    try:
        return msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=False)
    except msgpack.ExtraData as exc:
        raise MalformedFrame("trailing bytes after the body") from exc
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        # UnicodeDecodeError is a ValueError. msgpack reports running out of input as
        # "incomplete input" or as a length that exceeds what is left.
        text = str(exc)
        if "incomplete" in text or "exceeds max" in text:
            raise TruncatedFrame(f"body ends early: {text}") from exc
        raise MalformedFrame(f"bad msgpack: {type(exc).__name__}: {text[:100]}") from exc


# --------------------------------------------------------------------------- API
def encode(message: Message, key: bytes | None = None) -> bytes:
    """A frame for ``message``, signed when ``key`` is set and the message is a server's."""
    if type(message) not in ENCODERS or not isinstance(message, Message):
        raise LocalProtocolError(f"not a wire message: {type(message).__name__}")
    body = pack_message(message)
    if key is not None and message.from_server:
        return _SIGNED_HEAD + hmac.digest(key, _SIGNED_HEAD + body, "sha256") + body
    return _UNSIGNED_HEAD + body


def decode(
    data: bytes | bytearray | memoryview, key: bytes | None = None, max_size: int = MAX_FRAME
) -> Message:
    """The message in frame ``data``; raises a RemoteProtocolError subclass for any bad input.

    With ``key`` set, a server message must carry a valid signature (BadSignature otherwise).
    """
    size = len(data)
    if size > max_size:
        raise OversizedFrame(f"frame of {size} bytes exceeds {max_size}")
    if size < HEADER_SIZE:
        raise TruncatedFrame(f"frame of {size} bytes has no header")
    version = data[0]
    if version != PROTOCOL_VERSION:
        raise UnknownVersion(f"protocol version {version}, expected {PROTOCOL_VERSION}")
    flags = data[1]
    if flags & ~FLAG_SIGNED:
        raise MalformedFrame(f"unknown flags {flags:#04x}")
    signed = bool(flags & FLAG_SIGNED)
    if signed:
        if size < HEADER_SIZE + MAC_SIZE:
            raise TruncatedFrame(f"signed frame of {size} bytes has no room for its MAC")
        body = data[HEADER_SIZE + MAC_SIZE :]
        if key is not None:
            expected = hmac.digest(key, bytes(data[:HEADER_SIZE]) + body, "sha256")
            if not hmac.compare_digest(expected, bytes(data[HEADER_SIZE : HEADER_SIZE + MAC_SIZE])):
                raise BadSignature("signature does not match the cluster key")
    else:
        body = data[HEADER_SIZE:]
    cut = _CUT.get(body[1]) if len(body) > 1 else None
    unpacked = None if cut is None else _unpack_cut(bytes(body), *cut)
    message: Message
    if unpacked is None:
        message = decode_message(_unpack(body))
    else:
        message = decode_message(unpacked[0])
        for entry, data in zip(message.entries, unpacked[1], strict=True):  # type: ignore[attr-defined,unused-ignore]
            remember(entry, data)
    if key is not None and not signed and message.from_server:
        raise BadSignature(f"unsigned {type(message).__name__} while a cluster key is set")
    return message


def encode_entry(entry: Entry) -> bytes:
    """An entry as the store keeps it: msgpack of its field values, no frame header."""
    if type(entry) is not Entry:
        raise LocalProtocolError(f"not an Entry: {type(entry).__name__}")
    return packed_entry(entry)


def decode_entry(data: bytes | bytearray | memoryview) -> Entry:
    """Inverse of ``encode_entry``; raises a RemoteProtocolError subclass for bad bytes."""
    entry: Entry = schema_decode_entry(_unpack(data))
    return entry


def entry_size(entry: Entry) -> int:
    """Bytes ``entry`` takes in a frame: made once per entry and cached, so a sender
    measuring what it splits does no work the encoding would not do anyway."""
    return len(packed_entry(entry))


def packed_size(value: Any) -> int:
    """Bytes a wire record (a UserInfo, RoomInfo, Touch...) takes in a frame."""
    return len(pack(value))


def take(
    items: Sequence[T],
    size: Callable[[T], int],
    budget: int = FRAME_BUDGET,
    start: int = 0,
    most: int | None = None,
) -> int:
    """The end of the longest run ``items[start:end]`` that fits ``budget`` bytes (and
    ``most`` items); at least one item whatever its size, so that a split always ends:
    callers bound their items (an entry by MAX_ENTRY)."""
    stop = len(items) if most is None else min(len(items), start + most)
    used = 0
    for end in range(start, stop):
        used += size(items[end])
        if used > budget and end > start:
            return end
    return stop


def split(
    items: Sequence[T],
    size: Callable[[T], int],
    budget: int = FRAME_BUDGET,
    most: int | None = None,
) -> list[Sequence[T]]:
    """``items`` cut into consecutive runs of at most ``budget`` bytes (and ``most``
    items) each, none empty."""
    runs: list[Sequence[T]] = []
    start = 0
    while start < len(items):
        end = take(items, size, budget, start, most)
        runs.append(items[start:end])
        start = end
    return runs


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when it is ASCII."""
    return len(text) if text.isascii() else len(text.encode())


# --------------------------------------------------------------------------- stream framing
def frame(data: bytes) -> bytes:
    """``data`` with its 4-byte big-endian length prefix, for a byte stream."""
    return _LENGTH.pack(len(data)) + data


class FrameDecoder:
    """Splits a byte stream of length-prefixed frames; sans-IO, feed it what the socket read."""

    __slots__ = ("_buffer", "max_size")

    def __init__(self, max_size: int = MAX_FRAME) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Every frame ``data`` completes, in order. Raises OversizedFrame on a too-long prefix.

        After OversizedFrame the stream cannot be resynchronised: drop the connection.
        """
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > self.max_size:
                raise OversizedFrame(f"length prefix {length} exceeds {self.max_size}")
            if end - start - 4 < length:
                break
            frames.append(bytes(buffer[start + 4 : start + 4 + length]))
            start += 4 + length
        if start:
            del buffer[:start]  # once per feed, so a burst of small frames stays linear
        return frames
