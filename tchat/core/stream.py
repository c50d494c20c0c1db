"""The leader's delivery streams to clients: one global sequence (gsn) per epoch, split
into channels — each client's session and each room's multicast group.

A client delivers its frames in gsn order. Every frame names its channel predecessor
(``prev``) and which *other* channels the receiver may have frames in between, so a
client knows when nothing earlier can still arrive for it without the leader sending
anything per member on the room path: a room message costs one multicast datagram.
"""

from __future__ import annotations

from dataclasses import dataclass

from tchat.core.effects import Effect, Multicast, Send
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    Chat,
    ClientHeartbeat,
    Entry,
    Epoch,
    RoomFrame,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    SessionFrame,
    Touch,
    UserOffline,
    UserOnline,
    UserStatus,
)
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

FRESH_JOIN_GRACE = 1.0  # seconds a new member also gets its room over the session


@dataclass(slots=True)
class Session:
    """A client the leader serves."""

    name: str
    client_id: str
    addr: str
    multicast: bool
    last_heard: float
    active: bool = False  # welcomed: frames flow
    session_last: int = 0  # gsn of the last session frame sent
    private_clock: VectorClock = EMPTY_CLOCK  # private messages streamed (next login resumes here)
    reported_clock: VectorClock = EMPTY_CLOCK  # the client's own cursor, as last reported
    resume_cursor: VectorClock | None = None  # where a re-registering client's replay starts

    def cursor(self) -> VectorClock:
        return self.reported_clock.merge(self.private_clock)


class ClientStreams:
    """Publishes committed entries to the sessions and room groups of one epoch."""

    def __init__(self, epoch: Epoch, view: ClusterState) -> None:
        self.epoch = epoch
        self.view = view  # the fold of the committed prefix, in commit order
        self.gsn = 0
        self.sessions: dict[str, Session] = {}  # client_id -> session
        self.by_name: dict[str, Session] = {}
        self.room_last: dict[str, int] = {}
        self._touched: dict[str, dict[str, int]] = {}  # room -> member -> gsn
        self._all_last: dict[str, int] = {}  # room -> last session entry sent to all members
        self._broadcast_last = 0
        self._neighbours: dict[str, tuple[str, ...]] = {}
        self._room_targets: dict[str, tuple[bool, tuple[Session, ...]]] = {}
        # room -> member -> time until which a new multicast member also gets it by session
        # (it may not have joined the group yet when the first frames go out)
        self._fresh: dict[str, dict[str, float]] = {}

    def reset_view(self, view: ClusterState) -> None:
        """Restart every channel from ``view`` (after a merge, before clients resume).

        Every room's chain restarts at a gsn that no frame carries, so a client still
        holding the old stream (its Resync lost) sees a gap on the next multicast frame and
        resumes, instead of chaining new frames onto a cursor that skipped the merge."""
        self.view = view
        self._neighbours.clear()
        self._room_targets.clear()
        self._touched.clear()
        self._all_last.clear()
        self.gsn += 1
        for room in view.rooms:
            self.room_last[room] = self.gsn

    # -- sessions --------------------------------------------------------------
    def attach(self, session: Session) -> None:
        self._room_targets.clear()
        old = self.sessions.get(session.client_id)
        if old is not None and self.by_name.get(old.name) is old:
            del self.by_name[old.name]
        self.sessions[session.client_id] = session
        self.by_name[session.name] = session

    def detach(self, client_id: str) -> Session | None:
        self._room_targets.clear()
        session = self.sessions.pop(client_id, None)
        if session is not None and self.by_name.get(session.name) is session:
            del self.by_name[session.name]
        return session

    def activate(self, session: Session) -> tuple[int, tuple[RoomInfo, ...]]:
        """Start ``session``'s stream now: returns the gsn it starts after and its rooms."""
        session.active = True
        session.session_last = self.gsn
        self._room_targets.clear()
        rooms = tuple(
            self.room_info(room) for room in sorted(self.view.rooms_of.get(session.name, ()))
        )
        return self.gsn, rooms

    def room_info(self, room: str) -> RoomInfo:
        record = self.view.rooms[room]
        return RoomInfo(
            room, record.group, tuple(sorted(record.members)), self.room_last.get(room, 0)
        )

    def _live(self, name: str) -> Session | None:
        session = self.by_name.get(name)
        return session if session is not None and session.active else None

    # -- publishing ------------------------------------------------------------
    def publish(self, entry: Entry, now: float) -> list[Effect]:
        """Stream one committed entry to whoever must see it."""
        body = entry.body
        view = self.view
        before_rooms: tuple[str, ...] = ()
        before_members: tuple[str, ...] = ()
        if isinstance(body, UserOffline):
            before_rooms = tuple(sorted(view.rooms_of.get(body.name, ())))
        elif isinstance(body, RoomLeft):
            before_members = tuple(view.members(body.room))
        if not view.apply(entry):
            return []
        if isinstance(body, (RoomJoined, RoomLeft, UserOffline, UserOnline)):
            self._neighbours.clear()
            self._room_targets.clear()
        self.gsn += 1
        gsn = self.gsn
        match body:
            case Chat(room=str() as room):
                return self._room_frame(room, entry, gsn, now)
            case Chat(sender=sender, to=str() as to):
                names = sorted({sender, to})
                return self._session_frames(names, entry, gsn, scope=None)
            case UserOnline() | UserOffline() | UserStatus():
                left = {body.name: before_rooms} if isinstance(body, UserOffline) else None
                effects = self._session_frames(
                    sorted(self.by_name), entry, gsn, scope="all", left=left
                )
                self._broadcast_last = gsn
                if isinstance(body, UserOffline):
                    for room in before_rooms:
                        self._touched.get(room, {}).pop(body.name, None)
                return effects
            case RoomJoined(room=room, name=name):
                session = self._live(name)
                if session is not None and session.multicast:
                    self._fresh.setdefault(room, {})[name] = now + FRESH_JOIN_GRACE
                return self._session_frames(view.members(room), entry, gsn, scope=room, joiner=name)
            case RoomLeft(room=room, name=name):
                self._fresh.get(room, {}).pop(name, None)
                return self._session_frames(
                    list(before_members), entry, gsn, scope=room, left={name: (room,)}
                )
        return []

    def _session_frames(
        self,
        names: list[str],
        entry: Entry,
        gsn: int,
        *,
        scope: str | None,
        joiner: str | None = None,
        left: dict[str, tuple[str, ...]] | None = None,
    ) -> list[Effect]:
        """One SessionFrame per live recipient. ``scope`` "all": every session got it;
        a room name: every member of that room got it; None: only these names."""
        effects: list[Effect] = []
        is_private = isinstance(entry.body, Chat)
        left = left or {}
        for name in names:
            session = self._live(name)
            if session is None:
                continue
            rooms = self.view.rooms_of.get(name, ())
            # Room frames it got since its last session frame: count the rooms it was in
            # before this entry too (a leave must not outrun the room's last frame).
            was_in = left.get(name, ())
            other = 0
            for room in (*rooms, *was_in):
                last = self.room_last.get(room, 0)
                if last > session.session_last and last > other:
                    other = last
            info = self.room_info(entry.body.room) if name == joiner else None  # type: ignore[attr-defined]
            effects.append(
                Send(
                    session.addr,
                    SessionFrame(self.epoch, gsn, session.session_last, other, entry, info),
                )
            )
            session.session_last = gsn
            if is_private:
                session.private_clock = session.private_clock.merge(entry.clock)
            if scope == "all":
                continue
            for room in rooms:
                if room != scope:
                    self._touched.setdefault(room, {})[name] = gsn
        if scope is not None and scope != "all":
            self._all_last[scope] = gsn
        return effects

    def _room_frame(self, room: str, entry: Entry, gsn: int, now: float) -> list[Effect]:
        record = self.view.rooms.get(room)
        if record is None:
            return []
        prev = self.room_last.get(room, 0)
        other_all = max(
            self._all_last.pop(room, 0), self._broadcast_last if self._broadcast_last > prev else 0
        )
        touched = tuple(Touch(n, g) for n, g in sorted(self._touched.pop(room, {}).items()))
        rooms_touched = tuple(
            Touch(other, self.room_last[other])
            for other in self._neighbours_of(room)
            if self.room_last.get(other, 0) > prev
        )
        frame = RoomFrame(self.epoch, gsn, prev, room, other_all, touched, rooms_touched, entry)
        self.room_last[room] = gsn
        multicast, unicast = self._targets(room)
        effects: list[Effect] = [Multicast(record.group, frame)] if multicast else []
        effects.extend(Send(session.addr, frame) for session in unicast)
        fresh = self._fresh.get(room)
        if fresh:
            for name, until in sorted(fresh.items()):
                session = self._live(name)
                if until < now or session is None:
                    del fresh[name]
                else:
                    effects.append(Send(session.addr, frame))
        return effects

    def _targets(self, room: str) -> tuple[bool, tuple[Session, ...]]:
        """Whether the room has multicast members, and its members served over sessions."""
        found = self._room_targets.get(room)
        if found is None:
            multicast = False
            unicast: list[Session] = []
            for name in sorted(self.view.rooms[room].members):
                session = self._live(name)
                if session is None:
                    continue
                if session.multicast:
                    multicast = True
                else:
                    unicast.append(session)
            found = self._room_targets[room] = (multicast, tuple(unicast))
        return found

    def _neighbours_of(self, room: str) -> tuple[str, ...]:
        found = self._neighbours.get(room)
        if found is None:
            rooms_of = self.view.rooms_of
            shared: set[str] = set()
            for name in self.view.rooms[room].members:
                shared.update(rooms_of.get(name, ()))
            shared.discard(room)
            found = self._neighbours[room] = tuple(sorted(shared))
        return found

    # -- heartbeats --------------------------------------------------------------
    def heartbeats(self, leader_id: int) -> list[Effect]:
        effects: list[Effect] = []
        for client_id in sorted(self.sessions):
            session = self.sessions[client_id]
            if not session.active:
                continue
            heads = tuple(
                Touch(room, self.room_last.get(room, 0))
                for room in sorted(self.view.rooms_of.get(session.name, ()))
            )
            effects.append(
                Send(
                    session.addr,
                    ClientHeartbeat(self.epoch, leader_id, self.gsn, session.session_last, heads),
                )
            )
        return effects
