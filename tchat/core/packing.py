"""msgpack bytes of our records: the generic packing (through the schema's encoders) and an
entry's fast one, each entry's bytes made once and cached, and messages assembled from
them. The frame around them (version, flags, MAC, length) is codec.py's."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgpack

from tchat.core.errors import LocalProtocolError
from tchat.core.messages import ENTRY_BODY_TYPES, MESSAGE_TYPES, Entry, Message
from tchat.core.schema import ENCODERS


def _to_msgpack(obj: Any) -> Any:
    """msgpack's hook for the types it does not know: our dataclasses and clocks."""
    try:
        encoder = ENCODERS[type(obj)]
    except KeyError:
        raise TypeError(f"cannot encode {type(obj).__name__}") from None
    return encoder(obj)


def pack(obj: Any) -> bytes:
    """msgpack of ``obj``, our records in it by the schema's encoders (LocalProtocolError
    for a value that has none: our bug)."""
    try:
        packed: bytes = msgpack.packb(obj, default=_to_msgpack, use_bin_type=True)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {type(obj).__name__}: {exc}") from exc


# An entry travels in several frames (a leader stores it, sends it to every backup in an
# Append and to its room in a RoomFrame): its msgpack is made once and reused. msgpack is
# context-free (an array is a header and its items' bytes, one after the other), so a frame
# assembled from cached parts is byte for byte what packing it whole gives. Keyed by
# identity with the entry kept alive (so an id cannot be reused while cached); bounded.
# Entries are immutable, so any node of the process may share it.
ENTRY_BYTES_KEPT = 4096
# An OrderedDict, not a dict: a dict's oldest item is found by scanning past the holes its
# deletions left, which cost ~1 us an entry once the cache was full.
# id -> (entry, its bytes, where its origin's bytes start and end in them; 0, 0: unknown)
_entry_bytes: OrderedDict[int, tuple[Entry, bytes, int, int]] = OrderedDict()
# messages with an ``Entry`` or ``tuple[Entry, ...]`` field: packed field by field
_WITH_ENTRIES = frozenset(
    cls
    for cls in MESSAGE_TYPES
    if any(f.type in ("Entry", "tuple[Entry, ...]") for f in dataclasses.fields(cls))  # type: ignore[arg-type]
)


def packed_entry(entry: Entry) -> bytes:
    """``entry``'s msgpack, made once while it is cached."""
    found = _entry_bytes.get(id(entry))
    if found is not None and found[0] is entry:
        return found[1]
    data, start, end = _pack_entry(entry)
    remember(entry, data, start, end)
    return data


def share_bytes(entry: Entry, other: Entry) -> None:
    """Make ``other``'s bytes from ``entry``'s, if they are cached and ``other`` is
    ``entry`` but for its origin (its public form: the same dot, clock, time and body
    objects): a leader streams every entry it records that way, and splicing the origin in
    costs a fifth of packing it again."""
    found = _entry_bytes.get(id(entry))
    origin = other.origin
    if (
        found is None
        or found[0] is not entry
        or not found[3]
        or origin is None
        or other.body is not entry.body
        or other.clock is not entry.clock
        or other.dot is not entry.dot
        or other.ts is not entry.ts
        or type(other) is not Entry
    ):
        return
    _, data, start, end = found
    try:
        middle = _plain_packer.pack((origin.client_id, origin.cmid))
    except (TypeError, ValueError, OverflowError):
        return  # packed the generic way when asked for, which says what is wrong
    remember(other, b"".join((data[:start], middle, data[end:])), start, start + len(middle))


def _body_plain(tag: int, cls: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """For an entry body class whose fields are all msgpack-native or clocks: a function
    from a body to its wire tuple (tag, field values...) with the clocks as the dicts they
    pack as; None for a class with any other field type (it goes the generic way).
    Generated code (attribute reads in one tuple display): the generic record encoder plus
    a pass to swap the clocks cost twice as much."""
    items = [str(tag)]
    for field in dataclasses.fields(cls):
        if field.type == "VectorClock":
            items.append(f"body.{field.name}.as_dict()")
        elif field.type in _NATIVE_FIELDS:
            items.append(f"body.{field.name}")
        else:
            return None
    plain: Callable[[Any], tuple[Any, ...]] = eval(f"lambda body: ({', '.join(items)},)")  # noqa: S307 (our own field names)
    return plain


# Field annotations msgpack packs by itself (a body of such fields needs no ``default`` hook).
_NATIVE_FIELDS = frozenset({"int", "str", "bool", "float", "bytes", "str | None", "int | None"})
_PLAIN_BODIES = {
    cls: plain
    for tag, cls in enumerate(ENTRY_BODY_TYPES)
    if (plain := _body_plain(tag, cls)) is not None
}
# No ``default`` hook: packing plain values never runs Python code, so the GIL is held from
# start to end and a thread that packs at the same time (a store's commit thread) cannot
# interleave with this shared packer's buffer. ``packb`` would build a Packer every call.
_plain_packer = msgpack.Packer(use_bin_type=True)


def _pack_entry(entry: Entry) -> tuple[bytes, int, int]:
    """``pack(entry)``, byte for byte, twice as fast, and where the origin's bytes start
    and end in it (0, 0 if not known). The entry is made plain tuples and dicts here, where
    the generic way calls back into Python (``_to_msgpack``) for each of its six records
    and clocks. A leader packs every entry it records."""
    body = entry.body
    plain = _PLAIN_BODIES.get(type(body))
    if plain is None or type(entry) is not Entry:
        return pack(entry), 0, 0
    dot = entry.dot
    origin = entry.origin
    try:
        # In three parts, so that the origin's place is known (see share_bytes): an array
        # of 5 is its header byte and its items' bytes one after the other, and the head
        # (an array of 3) has a one-byte header too.
        head = _plain_packer.pack(((dot.server, dot.counter), entry.clock.as_dict(), entry.ts))
        middle = _plain_packer.pack(None if origin is None else (origin.client_id, origin.cmid))
        tail = _plain_packer.pack(plain(body))
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot encode Entry: {exc}") from exc
    start = len(head)
    return b"".join((_ENTRY_ARRAY, head[1:], middle, tail)), start, start + len(middle)


_ENTRY_ARRAY = bytes((0x90 | len(dataclasses.fields(Entry)),))


def remember(entry: Entry, data: bytes, start: int = 0, end: int = 0) -> None:
    """Cache ``data`` as ``entry``'s bytes (its origin's at ``start:end``; 0, 0: unknown)."""
    if len(_entry_bytes) >= ENTRY_BYTES_KEPT:
        _entry_bytes.popitem(last=False)
    _entry_bytes[id(entry)] = (entry, data, start, end)


def _array_header(size: int) -> bytes:
    if size < 16:
        return bytes((0x90 | size,))
    if size < 0x10000:
        return b"\xdc" + size.to_bytes(2, "big")
    return b"\xdd" + size.to_bytes(4, "big")


def pack_message(message: Message) -> bytes:
    """``pack(message)``, with its entries' bytes made once per entry (see above)."""
    if type(message) not in _WITH_ENTRIES:
        return pack(message)
    values = ENCODERS[type(message)](message)  # (tag, field values...)
    parts = [_array_header(len(values))]
    others: list[Any] = []  # the values since the last entries: packed in one call
    for value in values:
        if type(value) is Entry:
            _pack_run(others, parts)
            parts.append(packed_entry(value))
        elif type(value) is tuple and value and type(value[0]) is Entry:
            _pack_run(others, parts)
            parts.append(_array_header(len(value)))
            parts.extend(packed_entry(entry) for entry in value)
        else:
            others.append(value)
    _pack_run(others, parts)
    return b"".join(parts)


def _pack_run(values: list[Any], parts: list[bytes]) -> None:
    """Append the bytes of ``values`` one after the other to ``parts`` (and empty it): one
    pack of them as an array, its header cut off (a RoomFrame's seven other fields were
    seven packs, a third of its encoding)."""
    if values:
        parts.append(pack(values)[len(_array_header(len(values))) :])
        values.clear()
