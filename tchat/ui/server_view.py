"""Reads a ServerNode into dashboard rows (pure; tolerant of the fake and the real node)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tchat.ui.service import state_name


@dataclass(frozen=True, slots=True)
class RingRow:
    server_id: int
    addr: str
    role: str
    live: str
    lag: str
    me: bool


def ring_rows(node: Any, now: float | None, timeout: float = 0.5) -> list[RingRow]:
    """One row per known server: role, liveness as this node sees it, replication lag.

    ``now`` is the node's clock (the event loop's time); a peer heard within ``timeout``
    counts as live. Lag is in log entries the leader has not had acknowledged yet.
    """
    live_backups = set(getattr(node, "live_backups", ()) or ())
    heard: dict[int, float] = dict(getattr(node, "peer_heard", {}) or {})
    lags = _lags(node)
    rows = []
    for server in sorted(node.servers, key=lambda s: s.server_id):
        sid = server.server_id
        me = sid == node.server_id
        is_leader = sid == node.leader_id
        if me:
            role, live = state_name(node.role), "self"
        else:
            role = "LEADER" if is_leader else "BACKUP"
            age = now - heard[sid] if now is not None and sid in heard else None
            if sid in live_backups:
                live = "yes"
            elif age is not None:
                live = f"yes ({age * 1000:.0f} ms)" if age <= timeout else f"no ({age:.1f} s)"
            else:
                live = "yes" if is_leader else "?"
        lag = "–" if me or sid not in lags else str(lags[sid])
        rows.append(RingRow(sid, server.addr, role, live, lag, me))
    return rows


def _lags(node: Any) -> dict[int, int]:
    explicit = getattr(node, "lag", None)
    if isinstance(explicit, dict):
        return {int(k): int(v) for k, v in explicit.items()}
    leadership = getattr(node, "leadership", None)
    replicas = getattr(leadership, "replicas", None)
    if not isinstance(replicas, dict):
        return {}
    total = node.log.clock.total
    out = {}
    for sid, replica in replicas.items():
        acked = getattr(replica, "acked_clock", None)
        if acked is not None:
            out[int(sid)] = max(0, total - acked.total)
    return out


def user_rows(node: Any) -> list[tuple[str, str, str, float]]:
    """(name, addr, status, since) for the fold's users (UserInfo or UserRecord values)."""
    users = getattr(node.state, "users", {}) or {}
    rows = []
    for name, user in sorted(users.items()):
        status = getattr(user, "status", None)
        if status is None:
            status = "away" if getattr(user, "away", False) else "online"
        rows.append(
            (name, str(getattr(user, "addr", "")), str(status), float(getattr(user, "since", 0.0)))
        )
    return rows


def room_rows(node: Any) -> list[tuple[str, str, tuple[str, ...], int | None]]:
    """(room, group, members, messages) from (group, members) pairs or RoomRecord values."""
    rooms = getattr(node.state, "rooms", {}) or {}
    rows = []
    for name, value in sorted(rooms.items()):
        if isinstance(value, tuple) and len(value) == 2:
            group, members = value
            messages = None
        else:
            group = getattr(value, "group", "")
            members = getattr(value, "members", ())
            messages = getattr(value, "messages", None)
        rows.append((name, str(group), tuple(sorted(members)), messages))
    return rows
