"""The simulator's wire: every message goes through the real codec and its frame cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tchat.core import codec
from tchat.core.errors import LocalProtocolError, RemoteProtocolError
from tchat.core.messages import Message
from tchat.sim.invariants import Violation

# The cluster secret of every simulated server: server frames are signed and checked as a
# keyed deployment does. Clients hold none (as in the runtime): they take signed frames
# unchecked and send unsigned ones.
SIM_CLUSTER_KEY = b"tchat-sim-cluster-key"
# The largest UDP payload over IPv4 (65,535 - 20 IP - 8 UDP): a bigger multicast or
# broadcast frame fails in sendto (EMSGSIZE), under the codec's cap or not.
UDP_MAX_PAYLOAD = 65_507
# Frames just encoded or decoded, by object identity (the object is kept, so its id cannot
# be reused while cached): a message sent to many peers is encoded once, a frame delivered
# to many receivers (or twice) is decoded once per receiving key.
KEPT = 256


@dataclass(slots=True)
class WireStats:
    """What the wire carried: frames encoded and decoded, the largest frame built."""

    encoded: int = 0
    decoded: int = 0
    largest: int = 0
    largest_type: str = ""


class Wire:
    """Encodes what nodes send and decodes what they receive, with the runtime's codec calls.

    A frame over the cap is a violation (``frame-over-cap``): the runtime refuses to send
    it (``too-big-to-send``) and the node resends it forever, so nothing behind it moves.
    A frame our own nodes built that does not decode is a violation (``frame-decode``).
    """

    def __init__(
        self, key: bytes | None = SIM_CLUSTER_KEY, max_frame: int = codec.MAX_FRAME
    ) -> None:
        self.key = key
        self.max_frame = max_frame
        self.stats = WireStats()
        self._encoded: dict[int, tuple[Message, bytes]] = {}
        self._decoded: dict[tuple[int, bool], tuple[bytes, Message]] = {}

    @property
    def max_datagram(self) -> int:
        """The largest multicast or broadcast frame: one UDP datagram, within the cap."""
        return min(self.max_frame, UDP_MAX_PAYLOAD)

    def encode(
        self, message: Message, sender: Any, from_server: bool, datagram: bool = False
    ) -> bytes:
        """The frame ``sender`` (a slot) puts on the wire for ``message`` (without a stream's
        length prefix: the cap applies to the frame, as in the runtime's send and decode)."""
        found = self._encoded.get(id(message))
        if found is not None and found[0] is message:
            data = found[1]
        else:
            try:
                data = codec.encode(message, self.key if from_server else None)
            except LocalProtocolError as exc:
                raise Violation(
                    "frame-encode",
                    f"{sender.label} built a {type(message).__name__} that does not encode: {exc}",
                ) from exc
            self._remember_encoded(message, data)
        size = len(data)
        limit = self.max_datagram if datagram else self.max_frame
        if size > limit:
            what = "datagram limit" if datagram and limit < self.max_frame else "frame cap"
            raise Violation(
                "frame-over-cap",
                f"{sender.label} built a {size}-byte {type(message).__name__} frame, over the "
                f"{limit}-byte {what}: it can never be sent" + _shape(message),
            )
        return data

    def decode(self, data: bytes, receiver_is_server: bool, sender: str) -> Message:
        """The message a receiver gets from ``data``: the full validating decode, with the
        key the receiver holds."""
        slot = (id(data), receiver_is_server)
        found = self._decoded.get(slot)
        if found is not None and found[0] is data:
            return found[1]
        try:
            message = codec.decode(data, self.key if receiver_is_server else None, self.max_frame)
        except RemoteProtocolError as exc:
            raise Violation(
                "frame-decode",
                f"a {len(data)}-byte frame {sender} built does not decode: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        self.stats.decoded += 1
        if len(self._decoded) >= KEPT:
            del self._decoded[next(iter(self._decoded))]  # the oldest
        self._decoded[slot] = (data, message)
        return message

    def _remember_encoded(self, message: Message, data: bytes) -> None:
        stats = self.stats
        stats.encoded += 1
        if len(data) > stats.largest:
            stats.largest, stats.largest_type = len(data), type(message).__name__
        if len(self._encoded) >= KEPT:
            del self._encoded[next(iter(self._encoded))]  # the oldest
        self._encoded[id(message)] = (message, data)


def _shape(message: Message) -> str:
    """What makes a frame big: its entry count and its widest text and clock."""
    entries = getattr(message, "entries", None)
    if not isinstance(entries, tuple) or not entries:
        return ""
    texts = [len(getattr(e.body, "text", "")) for e in entries]
    clocks = [len(e.clock) for e in entries]
    return (
        f" ({len(entries)} entries, {sum(texts)} characters of text, longest clock "
        f"{max(clocks)} servers)"
    )
