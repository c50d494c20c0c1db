"""The one exception every tchat.crypto check raises for hostile or broken input, with a reason."""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why an input was refused; callers count refusals by reason (a small, closed set)."""

    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown-version"
    BAD_TAG = "bad-tag"
    REPLAY = "replay"
    TOO_OLD = "too-old"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    UNKNOWN_KEY = "unknown-key"
    UNSAFE_FILE = "unsafe-file"
    MISSING = "missing"


class CryptoError(ValueError):
    """Refused input (forged, tampered, replayed, expired, malformed or an unsafe file)."""

    def __init__(self, message: str, reason: Reason = Reason.MALFORMED) -> None:
        super().__init__(message)
        self.reason = reason
