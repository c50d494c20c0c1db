"""Client connection states and their legal transitions."""

from __future__ import annotations

from enum import Enum


class ClientState(Enum):
    DISCOVERING = "discovering"  # looking for servers by broadcast
    REGISTERING = "registering"  # first login sent to the leader
    SERVING = "serving"  # welcomed: the stream flows
    RESUMING = "resuming"  # failover, gap or merge: re-registering with our cursor
    FAILED = "failed"  # refused for good (invalid or taken name)
    CLOSED = "closed"  # logged out


_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    ClientState.DISCOVERING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.REGISTERING,
            ClientState.RESUMING,
            ClientState.FAILED,
            ClientState.CLOSED,
        }
    ),
    ClientState.REGISTERING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.REGISTERING,
            ClientState.SERVING,
            ClientState.FAILED,
            ClientState.CLOSED,
        }
    ),
    ClientState.SERVING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.RESUMING,
            ClientState.SERVING,
            ClientState.CLOSED,
            ClientState.FAILED,
        }
    ),
    ClientState.RESUMING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.RESUMING,
            ClientState.SERVING,
            ClientState.FAILED,
            ClientState.CLOSED,
        }
    ),
    ClientState.FAILED: frozenset({ClientState.CLOSED}),
    ClientState.CLOSED: frozenset(),
}
