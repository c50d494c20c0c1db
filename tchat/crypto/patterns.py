"""Noise handshake patterns (revision 34, sections 7.4, 7.5 and 9) and protocol-name parsing."""

from __future__ import annotations

from dataclasses import dataclass

# Tokens are plain strings: the spec's own names, so a pattern reads as in the spec.
Token = str
MessagePattern = tuple[Token, ...]

# name -> (initiator pre-message, responder pre-message, messages). Messages alternate,
# the initiator sending the first.
_BASE: dict[str, tuple[MessagePattern, MessagePattern, tuple[MessagePattern, ...]]] = {
    # One-way patterns (7.4): only the initiator ever sends.
    "N": ((), ("s",), (("e", "es"),)),
    "K": (("s",), ("s",), (("e", "es", "ss"),)),
    "X": ((), ("s",), (("e", "es", "s", "ss"),)),
    # Fundamental interactive patterns (7.5).
    "NN": ((), (), (("e",), ("e", "ee"))),
    "NK": ((), ("s",), (("e", "es"), ("e", "ee"))),
    "NX": ((), (), (("e",), ("e", "ee", "s", "es"))),
    "XN": ((), (), (("e",), ("e", "ee"), ("s", "se"))),
    "XK": ((), ("s",), (("e", "es"), ("e", "ee"), ("s", "se"))),
    "XX": ((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    "KN": (("s",), (), (("e",), ("e", "ee", "se"))),
    "KK": (("s",), ("s",), (("e", "es", "ss"), ("e", "ee", "se"))),
    "KX": (("s",), (), (("e",), ("e", "ee", "se", "s", "es"))),
    "IN": ((), (), (("e", "s"), ("e", "ee", "se"))),
    "IK": ((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
    "IX": ((), (), (("e", "s"), ("e", "ee", "se", "s", "es"))),
}

DH_NAMES = ("25519",)
CIPHER_NAMES = ("ChaChaPoly", "AESGCM")
HASH_NAMES = ("SHA256", "SHA512", "BLAKE2s", "BLAKE2b")
MAX_PSKS = 4


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    """A parsed pattern: its pre-messages and messages with the psk modifiers applied."""

    name: str
    initiator_pre: MessagePattern
    responder_pre: MessagePattern
    messages: tuple[MessagePattern, ...]
    one_way: bool
    psk_count: int


@dataclass(frozen=True, slots=True)
class ProtocolName:
    """``Noise_<pattern>_<dh>_<cipher>_<hash>``, each part checked against what we implement."""

    full: str
    pattern: HandshakePattern
    dh: str
    cipher: str
    hash: str


def parse_pattern(name: str) -> HandshakePattern:
    """Parse ``XX``, ``NNpsk0``, ``NNpsk0+psk2``...; raise ValueError for anything else."""
    base = name[:2] if name[:2] in _BASE else name[:1]
    if base not in _BASE:
        raise ValueError(f"unknown handshake pattern {name!r}")
    pre_i, pre_r, msgs = _BASE[base]
    modifiers = name[len(base) :]
    messages = [list(m) for m in msgs]
    count = 0
    if modifiers:
        seen: set[int] = set()
        for mod in modifiers.split("+"):
            digits = mod[3:]
            if not mod.startswith("psk") or not digits.isdigit() or len(digits) > 1:
                raise ValueError(f"unsupported pattern modifier {mod!r} in {name!r}")
            where = int(digits)
            if where in seen or where > len(messages):
                raise ValueError(f"bad psk position {where} in {name!r}")
            seen.add(where)
            # psk0 opens the first message; pskN (N >= 1) closes message N.
            if where == 0:
                messages[0].insert(0, "psk")
            else:
                messages[where - 1].append("psk")
            count += 1
    return HandshakePattern(
        name=name,
        initiator_pre=pre_i,
        responder_pre=pre_r,
        messages=tuple(tuple(m) for m in messages),
        one_way=len(base) == 1,
        psk_count=count,
    )


def parse_protocol_name(full: str) -> ProtocolName:
    """Split and check a full protocol name; raise ValueError naming the bad part."""
    parts = full.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise ValueError(f"not a Noise protocol name: {full!r}")
    _, pattern, dh, cipher, hash_name = parts
    if dh not in DH_NAMES:
        raise ValueError(f"unsupported DH {dh!r} in {full!r}")
    if cipher not in CIPHER_NAMES:
        raise ValueError(f"unsupported cipher {cipher!r} in {full!r}")
    if hash_name not in HASH_NAMES:
        raise ValueError(f"unsupported hash {hash_name!r} in {full!r}")
    return ProtocolName(full, parse_pattern(pattern), dh, cipher, hash_name)
