"""Client phases (a connection state plus the data only that state has), the events that
move them, and the one (state, event) -> state table that ClientNode._become follows.

No transition carries a phase's data into the next: every phase with data starts fresh (a
retry timer one client_retry_interval away and no Register unanswered; Serving with a beat
due now and the silence-resend timer started now). Even REGISTERING -> REGISTERING starts over, as
it did when these were node fields reset by hand. What must survive a transition lives on
the node (ClientNode's docstring lists it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from tchat.core.delivery import HoldBack


class ClientState(Enum):
    DISCOVERING = "discovering"  # looking for servers by broadcast
    REGISTERING = "registering"  # first login sent to the leader
    SERVING = "serving"  # welcomed: the stream flows
    RESUMING = "resuming"  # failover, gap or merge: re-registering with our cursor
    FAILED = "failed"  # refused for good (invalid or taken name)
    CLOSED = "closed"  # logged out


class ClientEvent(Enum):
    """What moves a client from one state to another (the value names it in errors)."""

    INVALID_NAME = "start"  # our own name is not one a server accepts
    REJECTED = "rejected"  # a server refused us for good
    LEADER = "leader"  # a leader learned before any Welcome: log in
    LEADER_AGAIN = "leader-again"  # a leader learned after a Welcome: resume with our cursor
    WELCOMED = "welcome"  # a complete Welcome: the stream flows
    RESUME = "resume"  # a gap, a Resync, our name dropped or renamed: register again
    SUSPECT = "suspect"  # the leader went silent or does not answer: discover again
    LOGGED_OUT = "logged-out"  # our Logout is durable


_S = ClientState
_E = ClientEvent
_LIVE = (_S.DISCOVERING, _S.REGISTERING, _S.SERVING, _S.RESUMING)

# Every legal move; a (state, event) pair not here raises IllegalTransition.
TRANSITIONS: dict[tuple[ClientState, ClientEvent], ClientState] = {
    **{(state, _E.INVALID_NAME): _S.FAILED for state in _LIVE},
    **{(state, _E.REJECTED): _S.FAILED for state in _LIVE},
    (_S.DISCOVERING, _E.LEADER): _S.REGISTERING,
    (_S.REGISTERING, _E.LEADER): _S.REGISTERING,
    (_S.DISCOVERING, _E.LEADER_AGAIN): _S.RESUMING,
    (_S.SERVING, _E.LEADER_AGAIN): _S.RESUMING,
    (_S.RESUMING, _E.LEADER_AGAIN): _S.RESUMING,
    (_S.REGISTERING, _E.WELCOMED): _S.SERVING,
    (_S.RESUMING, _E.WELCOMED): _S.SERVING,
    (_S.SERVING, _E.WELCOMED): _S.SERVING,
    # Not from REGISTERING: that was never legal (the table the fingerprints pin).
    (_S.DISCOVERING, _E.RESUME): _S.RESUMING,
    (_S.SERVING, _E.RESUME): _S.RESUMING,
    (_S.RESUMING, _E.RESUME): _S.RESUMING,
    **{(state, _E.SUSPECT): _S.DISCOVERING for state in _LIVE},
    **{(state, _E.LOGGED_OUT): _S.CLOSED for state in (*_LIVE, _S.FAILED)},
}


@dataclass
class Discovering:
    """Looking for servers by broadcast: the next Discover goes out at ``retry_at``."""

    retry_at: float
    state: ClassVar[ClientState] = ClientState.DISCOVERING


@dataclass
class Registering:
    """First login sent to the leader: ``attempts`` Registers sent in this phase and not
    answered yet (the fourth unanswered one makes us suspect the leader); the next at
    ``retry_at``. The Register carries no cursor: we never delivered anything."""

    retry_at: float
    attempts: int = 0
    state: ClassVar[ClientState] = ClientState.REGISTERING


@dataclass
class Resuming:
    """Re-registering after a failover, a gap or a merge: as Registering, but each Register
    carries our clock as the cursor, so the leader sends only what we missed."""

    retry_at: float
    attempts: int = 0
    state: ClassVar[ClientState] = ClientState.RESUMING


@dataclass
class Serving:
    """Welcomed: the stream flows through ``holdback`` (which exists only in this phase); a
    ClientBeat is due at ``next_beat``, and the pending operations are resent if the leader
    has answered none of them since ``last_resend``."""

    holdback: HoldBack
    next_beat: float
    last_resend: float
    state: ClassVar[ClientState] = ClientState.SERVING


@dataclass(frozen=True)
class Failed:
    state: ClassVar[ClientState] = ClientState.FAILED


@dataclass(frozen=True)
class Closed:
    state: ClassVar[ClientState] = ClientState.CLOSED


ClientPhase = Discovering | Registering | Resuming | Serving | Failed | Closed
RetryingPhase = Discovering | Registering | Resuming  # the phases that retry on a timer

# The phases that carry no data: a transition to one of them needs nothing but the event.
BARE_PHASES: dict[ClientState, ClientPhase] = {p.state: p for p in (Failed(), Closed())}


def next_state(state: ClientState, event: ClientEvent) -> ClientState | None:
    """Where ``event`` takes a client in ``state``; None if it is illegal there."""
    return TRANSITIONS.get((state, event))
