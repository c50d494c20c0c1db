"""Turns a ServerStatus snapshot into dashboard rows (pure formatting)."""

from __future__ import annotations

from dataclasses import dataclass

from tchat.core.status import RoomStatus, ServerStatus


@dataclass(frozen=True, slots=True)
class RingRow:
    server_id: int
    addr: str
    role: str
    live: str
    lag: str
    me: bool


def ring_rows(status: ServerStatus) -> list[RingRow]:
    """One row per known server: role, liveness as this node sees it, replication lag.

    A peer heard within the status's ``peer_timeout`` counts as live; lag is in log
    entries the leader has not had acknowledged yet.
    """
    rows = []
    for peer in status.peers:
        if peer.me:
            role, live = status.role, "self"
        else:
            role = "LEADER" if peer.leader else "BACKUP"
            age = peer.heard_age
            if peer.live_backup:
                live = "yes"
            elif age is not None:
                live = (
                    f"yes ({age * 1000:.0f} ms)"
                    if age <= status.peer_timeout
                    else f"no ({age:.1f} s)"
                )
            else:
                live = "yes" if peer.leader else "?"
        lag = "–" if peer.me or peer.lag is None else str(peer.lag)
        rows.append(RingRow(peer.server_id, peer.addr, role, live, lag, peer.me))
    return rows


def user_rows(status: ServerStatus) -> list[tuple[str, str, str, float]]:
    """(name, addr, status, since) for every user online."""
    return [(u.name, u.addr, u.status, u.since) for u in status.users]


def room_rows(status: ServerStatus) -> list[RoomStatus]:
    return list(status.rooms)
