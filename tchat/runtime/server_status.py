"""Reads a ServerNode into the dashboard's ServerStatus snapshot (the UI reads no node)."""

from __future__ import annotations

from itertools import islice
from typing import Any

from tchat.core.messages import Chat, Entry, UserInfo
from tchat.core.status import PeerStatus, RoomStatus, ServerStatus

RECENT = 40  # chat entries the dashboard's clock view shows


class ServerStatusReader:
    """One per service: keeps the last recent-entries scan until the log changes."""

    def __init__(self, recent: int = RECENT) -> None:
        self.recent = recent
        self._recent_of: tuple[object, int] | None = None
        self._recent: tuple[Entry, ...] = ()

    def read(self, node: Any, now: float) -> ServerStatus:
        heard: dict[int, float] = dict(getattr(node, "peer_heard", {}) or {})
        live = set(getattr(node, "live_backups", ()) or ())
        lags = _lags(node)
        peers = tuple(
            PeerStatus(
                server_id=s.server_id,
                addr=s.addr,
                me=s.server_id == node.server_id,
                leader=s.server_id == node.leader_id,
                live_backup=s.server_id in live,
                heard_age=now - heard[s.server_id] if s.server_id in heard else None,
                lag=lags.get(s.server_id),
            )
            for s in sorted(node.servers, key=lambda s: s.server_id)
        )
        log = node.log
        timing = getattr(getattr(node, "config", None), "timing", None)
        return ServerStatus(
            server_id=node.server_id,
            role=str(getattr(node.role, "name", node.role)),
            leader_id=node.leader_id or None,
            epoch=str(node.epoch),
            peers=peers,
            peer_timeout=float(getattr(timing, "leader_timeout", 0.25)) * 2,
            users=_users(node),
            rooms=_rooms(node),
            log_size=len(log),
            clock=log.clock,
            recent=self._recent_chats(log),
        )

    def _recent_chats(self, log: Any) -> tuple[Entry, ...]:
        key = (log.clock, len(log))
        if key != self._recent_of:  # the scan copies the hot window: only on a change
            self._recent_of = key
            # The recent entries are in memory; log.entries() would read the whole log
            # from disk (docs/RUNTIME.md, "Memory").
            latest = islice(reversed(log.window()), 0, 4 * self.recent)
            found = [e for e in latest if type(e.body) is Chat]
            self._recent = tuple(reversed(found[: self.recent]))
        return self._recent


def _lags(node: Any) -> dict[int, int]:
    """Entries each backup has not acknowledged, on a leader; nothing elsewhere."""
    replicas = getattr(getattr(node, "leadership", None), "replicas", None)
    if not isinstance(replicas, dict):
        return {}
    total = node.log.clock.total
    return {
        int(sid): max(0, total - replica.acked_clock.total)
        for sid, replica in replicas.items()
        if getattr(replica, "acked_clock", None) is not None
    }


def _users(node: Any) -> tuple[UserInfo, ...]:
    users = getattr(node.state, "users", {}) or {}
    return tuple(user.info() for _, user in sorted(users.items()))


def _rooms(node: Any) -> tuple[RoomStatus, ...]:
    rooms = getattr(node.state, "rooms", {}) or {}
    return tuple(
        RoomStatus(name, record.group, tuple(sorted(record.members)), record.messages)
        for name, record in sorted(rooms.items())
    )
