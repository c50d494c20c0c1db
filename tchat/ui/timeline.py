"""The Elections tab's story: leader changes, lost heartbeats, elections, reconnects, netsplits.

Pure Python: fed with client events (and, on the dashboard, server log events), it turns them
into dated lines such as "election done in 412 ms: leader 3, epoch 5:3".
"""

from __future__ import annotations

from dataclasses import dataclass

from tchat.core.effects import (
    ClientEvent,
    ConnectionChanged,
    LeaderChanged,
    LeaderLearned,
    LogEvent,
    Ready,
    Renamed,
)
from tchat.ui.sanitize import sanitize

MAX_ENTRIES = 2000


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    ts: float  # wall clock
    kind: str  # "leader" | "lost" | "election" | "reconnect" | "netsplit" | "netjoin" | ...
    text: str  # sanitised


class ElectionTimeline:
    """Accumulates entries; ``observe*`` return the ones just added."""

    def __init__(self) -> None:
        self.entries: list[TimelineEntry] = []
        self.leader_id = 0
        self.leader_addr = ""
        self.epoch = ""
        self._outage_since: float | None = None  # monotonic-ish: the ``now`` passed in
        self._outage_wall: float | None = None

    def _add(self, ts: float, kind: str, text: str) -> list[TimelineEntry]:
        entry = TimelineEntry(ts, kind, sanitize(text))
        self.entries.append(entry)
        del self.entries[:-MAX_ENTRIES]
        return [entry]

    def observe(self, event: ClientEvent, wall: float) -> list[TimelineEntry]:
        match event:
            case Ready(name=name, leader_id=lid, leader_addr=addr, epoch=epoch):
                out = self._end_outage(wall, lid, addr, str(epoch))
                return out + self._add(
                    wall, "ready", f"registered as {name} with leader {lid} ({addr}), epoch {epoch}"
                )
            case LeaderLearned(leader_id=lid, leader_addr=addr, epoch=epoch):
                return self._end_outage(wall, lid, addr, str(epoch))
            case ConnectionChanged(state=state, detail=detail):
                return self._connection(state, detail, wall)
            case Renamed(old=old, new=new, reason=reason):
                return self._add(wall, "rename", f"renamed {old} -> {new}: {reason}")
        return []

    def _connection(self, state: str, detail: str, wall: float) -> list[TimelineEntry]:
        state = state.upper()  # the core reports ClientState values ("resuming")
        why = f" ({detail})" if detail else ""
        if state in ("RESUMING", "DISCOVERING") and self._outage_since is None and self.leader_id:
            self._outage_since = wall
            if state == "DISCOVERING":
                text = f"lost leader {self.leader_id} ({self.leader_addr}); looking for servers"
            else:
                text = f"resuming the session with leader {self.leader_id}"
            kind = "lost" if state == "DISCOVERING" else "resume"
            return self._add(wall, kind, f"{text}{why}; unsent messages are kept")
        if state == "SERVING" and self._outage_since is not None:
            took = (wall - self._outage_since) * 1000
            self._outage_since = None
            return self._add(
                wall,
                "reconnect",
                f"back in service with leader {self.leader_id} after {took:.0f} ms",
            )
        if state in ("FAILED", "CLOSED"):
            return self._add(wall, "down", f"connection {state.lower()}{why}")
        return []

    def _end_outage(self, wall: float, lid: int, addr: str, epoch: str) -> list[TimelineEntry]:
        """A leader is known (again): name the change, timed from when we lost the old one."""
        out: list[TimelineEntry] = []
        changed = (lid, epoch) != (self.leader_id, self.epoch)
        if changed and self._outage_since is not None:
            took = (wall - self._outage_since) * 1000
            out += self._add(
                wall,
                "election",
                f"election done in {took:.0f} ms: leader {lid} ({addr}), epoch {epoch}",
            )
        elif changed and self.leader_id:
            out += self._add(
                wall,
                "leader",
                f"leader changed {self.leader_id} -> {lid} ({addr}), epoch {self.epoch} -> {epoch}",
            )
        elif changed and lid:
            out += self._add(wall, "leader", f"leader is {lid} ({addr}), epoch {epoch}")
        self.leader_id, self.leader_addr, self.epoch = lid, addr, epoch
        return out

    def users(self, arrived: list[str], left: list[str], wall: float) -> list[TimelineEntry]:
        """IRC-style summaries when several users vanish or return at once."""
        out: list[TimelineEntry] = []
        if len(left) >= 2:
            out += self._add(wall, "netsplit", f"netsplit: {len(left)} quit: {', '.join(left)}")
        if len(arrived) >= 2 and self.entries and any(e.kind == "netsplit" for e in self.entries):
            out += self._add(wall, "netjoin", f"netjoin: {len(arrived)} back: {', '.join(arrived)}")
        return out

    def server_effect(self, effect: object, wall: float) -> list[TimelineEntry]:
        """Dashboard: the local server's own log events and leader changes."""
        match effect:
            case LogEvent(kind=kind, text=text):
                return self._add(wall, kind, text)
            case LeaderChanged(leader_id=lid, addr=addr, epoch=epoch):
                return self._end_outage(wall, lid, addr, str(epoch))
        return []
