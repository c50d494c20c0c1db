"""ClientStatus: a frozen snapshot of a client session, what a user interface shows of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tchat.core.vclock import VectorClock


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """Read from the service once per refresh; the UI reads no node internals.

    ``state`` is the ClientState's name (``"STARTING"`` before the node exists); the leader
    and epoch are the last ones learned, for the UI to judge whether they are news.
    """

    state: str = "STARTING"
    leader_id: int | None = None
    leader_addr: str = ""
    epoch: str = ""
    pending: int = 0  # operations sent but not yet acknowledged
    rtt_ms: float | None = None  # smoothed submit -> acknowledgement time, None before one
    delivery: str = ""  # "multicast" | "unicast" | "" (not known yet)
    clock: VectorClock = field(default_factory=VectorClock)

    @property
    def serving(self) -> bool:
        return self.state == "SERVING"
