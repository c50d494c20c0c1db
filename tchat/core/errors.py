"""Protocol errors, split by whose fault they are (ours or the peer's)."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the core raises on purpose."""


class LocalProtocolError(ProtocolError):
    """We misused the core: an illegal command or state transition. A bug on our side."""


class IllegalTransition(LocalProtocolError):
    """A state machine was asked to move along an edge it does not have."""

    def __init__(self, machine: str, state: object, event: str) -> None:
        super().__init__(f"{machine}: event {event!r} is illegal in state {state!r}")
        self.machine = machine
        self.state = state
        self.event = event


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept. Counted and dropped, never fatal."""

    reason = "remote protocol error"


class MalformedFrame(RemoteProtocolError):
    reason = "malformed"


class TruncatedFrame(RemoteProtocolError):
    reason = "truncated"


class OversizedFrame(RemoteProtocolError):
    reason = "oversized"


class UnknownVersion(RemoteProtocolError):
    reason = "unknown-version"


class UnknownMessage(RemoteProtocolError):
    reason = "unknown-message"


class BadSignature(RemoteProtocolError):
    reason = "bad-signature"


class InvalidField(RemoteProtocolError):
    reason = "invalid-field"
