"""Per-class msgpack encoders and validating decoders, compiled once from the message annotations.

The codec is on the hot path (every chat message crosses it several times), so the decoders
are not a generic walk over the annotations per call: at import, each dataclass gets a
function generated from its fields whose checks are inline expressions. The generated
source is kept on the function (``__source__``) for debugging. Nested values are checked
to the same rules, so a decoded message is always well-typed and within the limits.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeAlias

from tchat.core import messages
from tchat.core.errors import InvalidField, RemoteProtocolError, UnknownMessage
from tchat.core.messages import (
    ENTRY_BODY_TYPES,
    MESSAGE_TYPES,
    OPERATION_TYPES,
    EntryBody,
    Operation,
)
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

# Every protocol int (terms, counters, seqs, cmids, gsns, IDs, tokens) is in [0, 2**53): a
# value any JSON consumer holds exactly, and 1024 times below what SQLite's signed 64-bit
# INTEGER (and our own decoder) can hold again. A node only ever adds one to a number it
# took in (the next term, the next counter), so nothing a peer sends can make it build a
# value its store, or its own decoder after a restart, cannot take (issue 13: one frame
# with term 2**63 - 1 stopped every server, and again at their restart).
MAX_INT = 2**53 - 1
MAX_ITEMS = 100_000  # items of any tuple field
MAX_CLOCK_ENTRIES = 10_000
MAX_OTHER_STR = 256
MAX_BYTES = 64 * 1024

Decoder: TypeAlias = Callable[[Any], Any]
Encoder: TypeAlias = Callable[[Any], Any]

# Strings are bounded by what the field means, found by its name: one rule per meaning
# instead of one annotation per field.
# members: user names; by: who set a room's topic; peers: a Welcome's private conversations
_NAME_FIELDS = frozenset({"name", "sender", "to", "peer", "members", "by", "peers"})
# Tuple fields with a tighter bound than MAX_ITEMS, by name: what the sender keeps bounded
# arrives bounded, or is forged.
_ITEM_LIMITS = {"peers": messages.MAX_PEERS}
_ADDR_FIELDS = frozenset({"addr", "leader_addr", "group"})


def string_limits(field: str) -> tuple[int, int]:
    """(min, max) length in characters of a string field (or string items) called ``field``."""
    if field in _NAME_FIELDS:
        return 1, messages.MAX_NAME
    if field == "room":
        return 1, messages.MAX_ROOM
    if field == "text":
        return 0, messages.MAX_TEXT
    if field == "topic":
        return 0, messages.MAX_TOPIC
    if field in _ADDR_FIELDS:
        return 0, messages.MAX_ADDR
    if field == "reason":
        return 0, messages.MAX_REASON
    if field == "password":
        return 0, messages.MAX_PASSWORD
    if field == "phc":
        return 1, messages.MAX_PHC
    if field == "away_reason":
        return 0, messages.MAX_AWAY_REASON
    return 0, MAX_OTHER_STR


def bytes_limits(field: str) -> tuple[int, int]:
    """(min, max) length of a bytes field called ``field``: keys, signatures and nonces
    have exactly their size (anything else is forged, and a short key is not a key)."""
    if field in ("identity", "keys"):  # keys: a KeysReply's, each a raw Ed25519 key
        return messages.IDENTITY_SIZE, messages.IDENTITY_SIZE
    if field == "proof":
        return messages.PROOF_SIZE, messages.PROOF_SIZE
    if field == "nonce":
        return messages.NONCE_SIZE, messages.NONCE_SIZE
    if field == "key":
        return messages.ROOM_KEY_SIZE, messages.ROOM_KEY_SIZE
    return 0, MAX_BYTES


def describe(value: object) -> str:
    """A short, log-safe description of an untrusted value (never its text)."""
    kind = type(value).__name__
    if value is None or isinstance(value, bool | float):
        return f"{kind} {value!r}"
    if isinstance(value, int):
        return f"int {value}" if abs(value) < 10**30 else "a huge int"
    if isinstance(value, str | bytes | tuple | list | dict):
        return f"{kind} of length {len(value)}"
    return kind


def _fail(where: str, expected: str, value: object) -> typing.NoReturn:
    raise InvalidField(f"{where}: expected {expected}, got {describe(value)}")


# --------------------------------------------------------------------------- containers
def _clock_decoder(where: str) -> Decoder:
    expected = f"a map of at most {MAX_CLOCK_ENTRIES} int -> int in [0, 2**53)"

    def decode_clock(value: Any) -> VectorClock:
        if type(value) is not dict or len(value) > MAX_CLOCK_ENTRIES:
            _fail(where, expected, value)
        if not value:
            return EMPTY_CLOCK
        for key, count in value.items():
            if not (
                type(key) is int
                and type(count) is int
                and 0 <= key <= MAX_INT
                and 0 <= count <= MAX_INT
            ):
                raise InvalidField(f"{where}: bad entry {describe(key)} -> {describe(count)}")
        # Checked above, and the decoded dict is ours: no second pass, no copy (a clock is
        # decoded per entry of every frame; it was a fifth of a backup's profile).
        if 0 in value.values():
            value = {key: count for key, count in value.items() if count}
        return VectorClock.trusted(value)

    return decode_clock


def _tuple_decoder(where: str, item: Decoder, passthrough: bool, limit: int = MAX_ITEMS) -> Decoder:
    expected = f"an array of at most {limit} items"

    def decode_tuple(value: Any) -> tuple[Any, ...]:
        # Arrays arrive as tuples (the codec unpacks with ``use_list=False``).
        if type(value) is not tuple or len(value) > limit:
            _fail(where, expected, value)
        if passthrough:  # items come back unchanged: check them and keep the tuple
            for element in value:
                item(element)
            return value
        return tuple([item(element) for element in value])

    return decode_tuple


def tagged_decoder(
    where: str, variants: tuple[type, ...], unknown: type[RemoteProtocolError] = InvalidField
) -> Decoder:
    """Decoder of a union sent as ``[tag, field values...]``, the tag indexing ``variants``."""
    decoders = tuple(record_decoder(variant) for variant in variants)
    count = len(decoders)

    def decode_tagged(value: Any) -> Any:
        if type(value) is not tuple or not value:
            _fail(where, "an array [tag, fields...]", value)
        tag = value[0]
        if type(tag) is not int or not 0 <= tag < count:
            raise unknown(f"{where}: unknown tag {describe(tag)}")
        return decoders[tag](value[1:])

    return decode_tagged


# --------------------------------------------------------------------------- code generation
class _Compiler:
    """Turns annotations into Python expressions over one variable; collects their names."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {
            "fail": _fail,
            "MAX_INT": MAX_INT,
            "isfinite": math.isfinite,
        }

    def constant(self, value: Any) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def expression(self, tp: Any, field: str, where: str, var: str) -> str:
        """An expression that is ``var`` checked and converted, or raises InvalidField."""
        origin = typing.get_origin(tp)
        if origin is types.UnionType or origin is typing.Union:
            options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(options) != 1:
                raise TypeError(f"{where}: only `X | None` unions are supported, not {tp}")
            return f"(None if {var} is None else {self.expression(options[0], field, where, var)})"
        if origin is tuple:
            args = typing.get_args(tp)
            if len(args) != 2 or args[1] is not Ellipsis:
                raise TypeError(f"{where}: only tuple[X, ...] is supported, not {tp}")
            item = self.item_decoder(args[0], field, f"{where}[]")
            passthrough = args[0] in (int, float, bool, str, bytes)
            limit = _ITEM_LIMITS.get(field, MAX_ITEMS)
            decoder = _tuple_decoder(where, item, passthrough, limit)
            return f"{self.constant(decoder)}({var})"
        simple = self._simple(tp, field)
        if simple is not None:
            test, expected = simple
            test = test.replace("@", var)
            where_name, expected_name = self.constant(where), self.constant(expected)
            return f"({var} if {test} else fail({where_name}, {expected_name}, {var}))"
        if tp is VectorClock:
            decoder = _clock_decoder(where)
        elif tp is EntryBody:
            decoder = tagged_decoder(where, ENTRY_BODY_TYPES)
        elif tp is Operation:
            decoder = tagged_decoder(where, OPERATION_TYPES)
        elif dataclasses.is_dataclass(tp):
            decoder = record_decoder(typing.cast(type, tp))
        else:
            raise TypeError(f"{where}: no codec for {tp!r}")
        return f"{self.constant(decoder)}({var})"

    @staticmethod
    def _simple(tp: Any, field: str) -> tuple[str, str] | None:
        """(test of the value ``@``, what was expected) for a scalar type.

        ``type(@) is int`` rather than isinstance: bool is an int subclass and must not pass.
        """
        if tp is int:
            return "type(@) is int and 0 <= @ <= MAX_INT", "an int in [0, 2**53)"
        if tp is bool:
            return "type(@) is bool", "a bool"
        if tp is float:
            # NaN and infinities would break equality and ordering downstream.
            return "type(@) is float and isfinite(@)", "a finite float"
        if tp is str:
            low, high = string_limits(field)
            return (
                f"type(@) is str and {low} <= len(@) <= {high}",
                f"a string of {low}..{high} chars",
            )
        if tp is bytes:
            low, high = bytes_limits(field)
            if low == high:
                return f"type(@) is bytes and len(@) == {low}", f"exactly {low} bytes"
            return (
                f"type(@) is bytes and {low} <= len(@) <= {high}",
                f"{low}..{high} bytes",
            )
        return None

    def item_decoder(self, tp: Any, field: str, where: str) -> Decoder:
        source = f"lambda x: {self.expression(tp, field, where, 'x')}"
        decoder: Decoder = eval(source, self.namespace)  # noqa: S307 - our own generated source
        return decoder

    def record(self, cls: type) -> Decoder:
        hints = typing.get_type_hints(cls, vars(messages))
        fields = dataclasses.fields(cls)
        arity = len(fields)
        variables = [f"f{index}" for index in range(arity)]
        arguments = [
            self.expression(hints[f.name], f.name, f"{cls.__name__}.{f.name}", var)
            for f, var in zip(fields, variables, strict=True)
        ]
        cls_name = self.constant(cls)
        where = self.constant(cls.__name__)
        optional = _optional_tail(fields)
        if optional:
            # An older entry (a stored log) lacks the trailing optional fields: pad them
            # with their defaults before the same checks the wire's values get.
            fewest = arity - optional
            expected = self.constant(f"an array of {fewest}..{arity} fields")
            defaults = self.constant(tuple(f.default for f in fields[fewest:]))
            lines = [
                f"def decode_{cls.__name__}(value):",
                f"    if type(value) is not tuple or not {fewest} <= len(value) <= {arity}:",
                f"        fail({where}, {expected}, value)",
                f"    value = value + {defaults}[len(value) - {fewest}:]",
            ]
        else:
            expected = self.constant(f"an array of {arity} fields")
            lines = [
                f"def decode_{cls.__name__}(value):",
                f"    if type(value) is not tuple or len(value) != {arity}:",
                f"        fail({where}, {expected}, value)",
            ]
        if arity:
            lines.append(f"    {', '.join(variables)}, = value")
        lines.append(f"    return {cls_name}({', '.join(arguments)})")
        source = "\n".join(lines) + "\n"
        exec(source, self.namespace)  # noqa: S102 - our own generated source
        decoder: Decoder = self.namespace[f"decode_{cls.__name__}"]
        decoder.__source__ = source  # type: ignore[attr-defined]
        return decoder


def _optional_tail(fields: tuple[dataclasses.Field[Any], ...]) -> int:
    """How many of the last ``fields`` are marked ``messages.OPTIONAL`` (with a default)."""
    count = 0
    for f in reversed(fields):
        if not f.metadata.get("optional"):
            break
        if f.default is dataclasses.MISSING:
            raise TypeError(f"optional field {f.name} has no default")
        count += 1
    return count


_RECORDS: dict[type, Decoder] = {}


def record_decoder(cls: type) -> Decoder:
    """The compiled decoder of a dataclass sent as the array of its field values (memoised)."""
    if cls not in _RECORDS:
        _RECORDS[cls] = _Compiler().record(cls)
    return _RECORDS[cls]


# --------------------------------------------------------------------------- encoders
def _record_encoder(cls: type, tag: int | None) -> Encoder:
    names = [f.name for f in dataclasses.fields(cls)]
    prefix: tuple[int, ...] = () if tag is None else (tag,)
    if not names:
        return lambda _obj: prefix
    if len(names) == 1:
        get_one = attrgetter(names[0])
        return lambda obj: (*prefix, get_one(obj))
    get_all = attrgetter(*names)
    if tag is None:
        return get_all  # already the tuple of field values, in wire order
    return lambda obj: prefix + get_all(obj)


def _build_encoders() -> dict[type, Encoder]:
    encoders: dict[type, Encoder] = {VectorClock: VectorClock.as_dict}
    for union in (MESSAGE_TYPES, ENTRY_BODY_TYPES, OPERATION_TYPES):
        for tag, cls in enumerate(union):
            encoders[cls] = _record_encoder(cls, tag)
    for cls in _RECORDS:  # the nested records the decoders met (Entry, Dot, Epoch...)
        encoders.setdefault(cls, _record_encoder(cls, None))
    return encoders


decode_message: Decoder = tagged_decoder("message", MESSAGE_TYPES, UnknownMessage)
decode_entry: Decoder = record_decoder(messages.Entry)
ENCODERS: dict[type, Encoder] = _build_encoders()


# --------------------------------------------------------------------------- storable values
def _clock_problem(what: str, clock: VectorClock) -> str:
    if clock.within(MAX_INT):  # the common case, in one comparison of the cached sum
        return ""
    return f"{what} holds {describe(clock.highest())}"


def entry_problem(entry: messages.Entry) -> str:
    """Why a store must not keep ``entry`` ('' if it may): an int past the protocol's
    range would be refused by our own decoder when the store loads it again, and the
    server could then never restart. Checks every int an entry can hold."""
    if type(entry) is not messages.Entry:
        return f"not an entry: {type(entry).__name__}"
    dot, origin, body = entry.dot, entry.origin, entry.body
    # Ints are never negative here (the core only counts up from what the codec let in,
    # and VectorClock refuses negatives), so only the upper bound is checked.
    if dot.server > MAX_INT or dot.counter > MAX_INT:
        return f"entry dot is {describe(dot.server)}.{describe(dot.counter)}"
    if origin is not None and origin.cmid > MAX_INT:
        return f"entry origin cmid is {describe(origin.cmid)}"
    problem = _clock_problem("entry clock", entry.clock)
    if problem:
        return problem
    kind = type(body)
    if kind is messages.Chat:
        return _clock_problem("sender clock", body.sender_clock)  # type: ignore[attr-defined]
    if kind is messages.UserOffline:
        return _clock_problem("offline cursor", body.cursor)  # type: ignore[attr-defined]
    if (kind is messages.ServerJoined or kind is messages.ServerLeft) and (
        body.server_id > MAX_INT  # type: ignore[attr-defined]
    ):
        return f"server id is {describe(body.server_id)}"  # type: ignore[attr-defined]
    return ""
