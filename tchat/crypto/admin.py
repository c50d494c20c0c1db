"""Operator commands (``tchat admin``): datagrams MACed with the cluster secret, one use each.

An operator proves it holds the cluster secret with HMAC-SHA256 under the admin MAC key
(``ClusterSecret.admin_mac``, HKDF of the secret), and a command counts once: it must carry
a challenge the server drew for it moments before, which the server forgets on first use.
A captured command replayed later, to the same server or another, finds no challenge.

Four datagrams, each ``KIND_ADMIN | step | [tag (32)] | msgpack array`` (the first byte is
one no codec frame or other envelope starts with, docs/PROTOCOL.md "Datagrams"):

=========  =====  ==========================================  ================================
step       MAC    fields                                      who
=========  =====  ==========================================  ================================
HELLO      no     ``[client_nonce]``                          operator -> server: "a challenge"
CHALLENGE  yes    ``[client_nonce, challenge, server_id,      server -> operator; the MAC shows
                  leader, leader_addr]``                      the server holds the secret too
COMMAND    yes    ``[client_nonce, challenge, op, arg]``      operator -> server
RESULT     yes    ``[client_nonce, outcome, detail,           server -> operator
                  leader_addr]``
=========  =====  ==========================================  ================================

The MAC covers the step byte and the body, so one step's tag is never good for another.
Nonces and challenges are 16 random bytes. Each datagram is at most ``MAX_ADMIN_DATAGRAM``
bytes; anything else is refused with a CryptoError before any MAC is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from tchat.crypto.cluster import ClusterSecret
from tchat.crypto.errors import CryptoError, Reason

KIND_ADMIN = 0xD3
HELLO, CHALLENGE, COMMAND, RESULT = 1, 2, 3, 4
NONCE_SIZE = 16
TAG_SIZE = 32
MAX_ADMIN_DATAGRAM = 1024
MAX_ARG = 256  # characters of a command's argument (a name is far shorter)
MAX_DETAIL = 400  # characters of a result's explanation
MAX_ADDR = 64
OPS = ("release-name",)
OUTCOMES = ("released", "not-claimed", "not-leader", "refused", "pending")


@dataclass(frozen=True, slots=True)
class Hello:
    client_nonce: bytes


@dataclass(frozen=True, slots=True)
class Challenge:
    client_nonce: bytes
    challenge: bytes
    server_id: int
    leader: bool
    leader_addr: str


@dataclass(frozen=True, slots=True)
class Command:
    client_nonce: bytes
    challenge: bytes
    op: str
    arg: str


@dataclass(frozen=True, slots=True)
class Result:
    client_nonce: bytes
    outcome: str
    detail: str
    leader_addr: str


AdminMessage = Hello | Challenge | Command | Result


def is_admin(data: bytes) -> bool:
    """Whether ``data`` is an admin datagram (by its first byte; nothing is checked yet)."""
    return bool(data) and data[0] == KIND_ADMIN


def _fields(message: AdminMessage) -> tuple[int, list[object]]:
    match message:
        case Hello():
            return HELLO, [message.client_nonce]
        case Challenge():
            return CHALLENGE, [
                message.client_nonce,
                message.challenge,
                message.server_id,
                message.leader,
                message.leader_addr,
            ]
        case Command():
            return COMMAND, [message.client_nonce, message.challenge, message.op, message.arg]
        case Result():
            return RESULT, [
                message.client_nonce,
                message.outcome,
                message.detail,
                message.leader_addr,
            ]


def encode(message: AdminMessage, secret: ClusterSecret | None) -> bytes:
    """The datagram of ``message``; every step but HELLO is MACed with ``secret``."""
    step, fields = _fields(message)
    # msgpack ships no type hints (its packb is Any to mypy); what it returns is bytes.
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    if step == HELLO:
        data = bytes((KIND_ADMIN, step)) + body
    else:
        if secret is None:
            raise ValueError("only a hello goes without the cluster secret")
        data = bytes((KIND_ADMIN, step)) + secret.admin_mac(bytes((step,)) + body) + body
    if len(data) > MAX_ADMIN_DATAGRAM:
        raise ValueError(f"an admin datagram of {len(data)} bytes (at most {MAX_ADMIN_DATAGRAM})")
    return data


def decode(data: bytes, secrets: Sequence[ClusterSecret]) -> tuple[AdminMessage, int]:
    """The message in ``data`` and the index in ``secrets`` of the one whose MAC it carries
    (-1 for a HELLO, which has none). CryptoError (BAD_TAG if no secret's MAC matches)."""
    if len(data) < 2 or data[0] != KIND_ADMIN:
        raise CryptoError("not an admin datagram")
    if len(data) > MAX_ADMIN_DATAGRAM:
        raise CryptoError(f"an admin datagram of {len(data)} bytes")
    step = data[1]
    if step not in (HELLO, CHALLENGE, COMMAND, RESULT):
        raise CryptoError(f"unknown admin step {step}", Reason.UNKNOWN_VERSION)
    used = -1
    body = bytes(data[2:])
    if step != HELLO:
        if len(body) < TAG_SIZE:
            raise CryptoError("an admin datagram too short for its MAC")
        tag, body = body[:TAG_SIZE], body[TAG_SIZE:]
        signed = bytes((step,)) + body
        # Several secrets during a rotation (the current and the next): any one will do.
        used = next((i for i, s in enumerate(secrets) if s.check_admin_mac(signed, tag)), -1)
        if used < 0:
            raise CryptoError(
                "the admin MAC does not verify: not the cluster secret", Reason.BAD_TAG
            )
    return _parse(step, body), used


def _parse(step: int, body: bytes) -> AdminMessage:
    try:
        fields = msgpack.unpackb(
            body, raw=False, max_bin_len=NONCE_SIZE, max_str_len=MAX_DETAIL, max_array_len=8
        )
    except Exception as exc:  # msgpack raises several types for hostile input
        raise CryptoError(f"admin body: {type(exc).__name__}") from None
    shapes: dict[int, tuple[type, ...]] = {
        HELLO: (bytes,),
        CHALLENGE: (bytes, bytes, int, bool, str),
        COMMAND: (bytes, bytes, str, str),
        RESULT: (bytes, str, str, str),
    }
    shape = shapes[step]
    if (
        not isinstance(fields, list)
        or len(fields) != len(shape)
        or not all(type(f) is t for f, t in zip(fields, shape, strict=True))
    ):
        raise CryptoError(f"admin step {step}: fields of the wrong number or type")
    if len(fields[0]) != NONCE_SIZE:
        raise CryptoError("an admin nonce is 16 bytes")
    match step:
        case 1:
            return Hello(fields[0])
        case 2:
            nonce, challenge, server_id, leader, leader_addr = fields
            if len(challenge) != NONCE_SIZE or not 0 <= server_id < 2**63:
                raise CryptoError("a challenge of the wrong size, or a server ID out of range")
            if len(leader_addr) > MAX_ADDR:
                raise CryptoError("a leader address too long")
            return Challenge(nonce, challenge, server_id, leader, leader_addr)
        case 3:
            nonce, challenge, op, arg = fields
            if len(challenge) != NONCE_SIZE:
                raise CryptoError("a challenge is 16 bytes")
            if op not in OPS or len(arg) > MAX_ARG:
                raise CryptoError(f"unknown admin command {op[:32]!r} or argument too long")
            return Command(nonce, challenge, op, arg)
        case _:
            nonce, outcome, detail, leader_addr = fields
            if outcome not in OUTCOMES or len(leader_addr) > MAX_ADDR:
                raise CryptoError("an admin result of unknown outcome")
            return Result(nonce, outcome, detail, leader_addr)
