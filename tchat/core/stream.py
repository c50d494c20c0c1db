"""The leader's delivery streams to clients: one global sequence (gsn) per epoch, split
into channels — each client's session, each room's multicast group and the lobby (the
group every client is in, for user-list changes).

A client delivers its frames in gsn order. Every frame names its channel predecessor
(``prev``) and which *other* channels the receiver may have frames in between, so a
client knows when nothing earlier can still arrive for it without the leader sending
anything per member on the room path: a room message costs one multicast datagram.

User-list changes (logins, logouts, away) wait up to ``LOBBY_DELAY`` to share one lobby
frame, so a storm of logins costs one datagram per batch, not one frame per client per
login. Nothing overtakes a queued change: publishing anything else sends the batch first.

Room messages of one room committed back to back (one ``advance`` of the leader) share one
room frame the same way, without waiting: the run stays open only until something else is
published or the caller ends the step with ``flush_rooms``.

Longer than 400 lines: the session, room and lobby channels are one bookkeeping. One gsn
numbers them all, and each frame's ``prev`` and touches are computed against every
channel's head at once (the proof a client's HoldBack checks), so a channel split off would
read and write the others' heads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tchat.core import codec
from tchat.core.effects import Effect, Multicast, Send
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    LOBBY,
    Chat,
    ClientHeartbeat,
    Entry,
    Epoch,
    KeyAdded,
    KeyRemoved,
    LobbyBeat,
    LobbyFrame,
    NameClaimed,
    NameReleased,
    PasswordSet,
    RoomFrame,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    RoomTopic,
    SessionFrame,
    Touch,
    UserOffline,
    UserOnline,
    UserStatus,
)
from tchat.core.projection import public_entry
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

FRESH_JOIN_GRACE = 1.0  # seconds a new member also gets its room over the session
LOBBY_DELAY = 0.05  # seconds a user-list change may wait for others to share its frame
LOBBY_BATCH = 64  # entries per lobby frame at most (a frame stays one datagram)
LOBBY_TOUCH_CAP = 1000  # ordering touches a lobby frame may carry: past it one goes out
# ... and their bytes: half the frame for touches, half for entries (the largest entry fits)
LOBBY_TOUCH_BYTES = codec.FRAME_BUDGET // 2
LOBBY_ENTRY_BYTES = codec.FRAME_BUDGET - LOBBY_TOUCH_BYTES
ROOM_BATCH = 32  # entries per room frame at most
ROOM_BATCH_TEXT = 2048  # characters of text per room frame at most (past the first entry):
# a frame stays small enough for the receivers' shared decode cache
# Touches a frame may carry before their bytes are measured: below it they surely fit the
# room FRAME_BUDGET leaves (a Touch is at most 140 bytes: a 32-character name and a gsn).
TOUCHES_UNMEASURED = 16
# Session heartbeats go out one slot per step, BEAT_SLOTS steps per round: beating every
# unicast session in one step (each frame encoded and Noise-sealed) stalled the leader's
# loop, and its clients', for 10-20 ms twice a second, and a login landing in it waited.
BEAT_SLOTS = 10


def _touch_bytes(name: str) -> int:
    """At most what a Touch naming ``name`` takes in a frame (array, string and int
    headers, a 64-bit gsn), without encoding it."""
    return 12 + (len(name) if name.isascii() else len(name.encode()))


@dataclass(slots=True)
class OpenRun:
    """A room frame being filled with consecutive room messages of one room."""

    room: str
    group: str
    prev: int
    other_all: int
    touched: tuple[Touch, ...]
    rooms_touched: tuple[Touch, ...]
    entries: list[Entry]
    text: int  # characters of text so far
    size: int  # encoded bytes of the entries and touches so far: the run stays in one frame


@dataclass(slots=True)
class Session:
    """A client the leader serves."""

    name: str
    client_id: str
    addr: str
    multicast: bool
    last_heard: float
    lobby: bool = True  # follows the lobby (user-list changes)
    active: bool = False  # welcomed: frames flow
    session_last: int = 0  # gsn of the last session frame sent
    beat_gsn: int = 0  # the gsn when it was last sent a ClientHeartbeat (or welcomed)
    private_clock: VectorClock = EMPTY_CLOCK  # private messages streamed (next login resumes here)
    reported_clock: VectorClock = EMPTY_CLOCK  # the client's own cursor, as last reported
    resume_cursor: VectorClock | None = None  # where a re-registering client's replay starts
    register_attempt: int = 0  # the highest Register.attempt taken from this client
    identity: bytes = b""  # the key its login proved (a placeholder: the log's record's)
    slot: int = -1  # its heartbeat slot (ClientStreams.beat_slots), fixed while attached

    def cursor(self) -> VectorClock:
        return self.reported_clock.merge(self.private_clock)


class ClientStreams:
    """Publishes committed entries to the sessions and room groups of one epoch."""

    def __init__(self, epoch: Epoch, view: ClusterState) -> None:
        self.epoch = epoch
        self.view = view  # the fold of the committed prefix, in commit order
        self.gsn = 0
        self.sessions: dict[str, Session] = {}  # client_id -> session
        # name -> its sessions, oldest first: nearly always one, but a name can have two
        # for a while (a merge gave it to one login while the other still has a session
        # under it, or a placeholder of the log's owner waits for it to resume)
        self.by_name: dict[str, list[Session]] = {}
        self.room_last: dict[str, int] = {}
        self._touched: dict[str, dict[str, int]] = {}  # room -> member -> gsn
        self._all_last: dict[str, int] = {}  # room -> last session entry sent to all members
        self._lobby: list[Entry] = []  # user-list changes waiting for the next lobby frame
        self.lobby_due: float | None = None  # when they must go out
        self._lobby_rooms: set[str] = set()  # rooms with frames since the last lobby frame
        self._lobby_bytes = 0  # encoded bytes of the queued lobby entries
        self._lobby_touch_bytes = 0  # at most what the next lobby frame's touches take
        # client_id -> session, per heartbeat slot: a step beats one slot and reads only
        # its sessions (no scan of every session BEAT_SLOTS times a round)
        self.beat_slots: tuple[dict[str, Session], ...] = tuple({} for _ in range(BEAT_SLOTS))
        self._next_slot = 0  # where the search for the emptiest slot starts (round-robin)
        self.beat_cursor = 0  # the slot the next heartbeat step beats; 0 starts a round
        self._slot_gsn = [-1] * BEAT_SLOTS  # the gsn when each slot was last beaten
        # whether each slot had an active multicast session when last beaten (or since):
        # a round sends its LobbyBeat if any has, without reading every session
        self._slot_multicast = [False] * BEAT_SLOTS
        self._beats = 0  # LobbyBeats sent in this epoch: the last one's LobbyBeat.beat
        self._neighbours: dict[str, tuple[str, ...]] = {}
        self._room_targets: dict[str, tuple[bool, tuple[Session, ...]]] = {}
        # room -> member -> (until, since): a new multicast member also gets the room's
        # frames by session (it may not have joined the group yet when the first go out)
        # until it proves it joined, a beat that delivered past ``since``, or ``until``
        self._fresh: dict[str, dict[str, tuple[float, int]]] = {}
        self._run: OpenRun | None = None  # the room frame being filled (within one step)

    def reset_view(self, view: ClusterState, now: float) -> list[Effect]:
        """Restart every channel from ``view`` (after a merge, before clients resume).

        Every room's chain restarts at a gsn that no frame carries, so a client still
        on the old stream (its Resync lost) sees a gap on the next multicast frame and
        resumes, instead of chaining new frames onto a cursor that skipped the merge."""
        effects = self.flush_lobby(now)  # queued changes (and an open run) go out first
        self.view = view
        self._neighbours.clear()
        self._room_targets.clear()
        self._touched.clear()
        self._all_last.clear()
        self._lobby_rooms.clear()
        self._lobby_touch_bytes = 0
        self.gsn += 1
        for room in (*view.rooms, LOBBY):
            self.room_last[room] = self.gsn
        return effects

    # -- sessions --------------------------------------------------------------
    def attach(self, session: Session) -> None:
        self._retarget(session)
        old = self.sessions.get(session.client_id)
        if old is not None:
            self._retarget(old)
            self._unname(old)
            self._unslot(old)
        self.sessions[session.client_id] = session
        self.by_name.setdefault(session.name, []).append(session)
        self._slot(session)

    def detach(self, client_id: str) -> Session | None:
        session = self.sessions.pop(client_id, None)
        if session is not None:
            self._retarget(session)
            self._unname(session)
            self._unslot(session)
        return session

    def _slot(self, session: Session) -> None:
        """Give ``session`` the emptiest heartbeat slot, the first of equals from a
        round-robin start: logouts bunched in one slot are refilled first, so no step
        beats much more than its share. Deterministic (no hash of the client ID)."""
        slots = self.beat_slots
        start = self._next_slot
        best = min(range(start, start + BEAT_SLOTS), key=lambda i: len(slots[i % BEAT_SLOTS]))
        index = best % BEAT_SLOTS
        self._next_slot = (index + 1) % BEAT_SLOTS
        session.slot = index
        slots[index][session.client_id] = session

    def _unslot(self, session: Session) -> None:
        slot = self.beat_slots[session.slot]
        if slot.get(session.client_id) is session:  # by identity: a successor may hold it
            del slot[session.client_id]

    def _unname(self, session: Session) -> None:
        named = self.by_name.get(session.name)
        if named is not None:
            rest = [s for s in named if s is not session]  # by identity, not field equality
            if rest:
                self.by_name[session.name] = rest
            else:
                del self.by_name[session.name]

    def _retarget(self, session: Session) -> None:
        """Forget the cached targets of ``session``'s channels (its rooms, the lobby if it
        follows it): a login among 10,000 clients must not rebuild every channel's list."""
        targets = self._room_targets
        if session.lobby:
            targets.pop(LOBBY, None)
        for room in self.view.rooms_of.get(session.name, ()):
            targets.pop(room, None)

    def activate(self, session: Session, now: float) -> tuple[int, tuple[RoomInfo, ...], RoomInfo]:
        """Start ``session``'s stream now: returns the gsn it starts after, its rooms and
        the lobby. Its lobby chain starts at the last lobby frame sent, so the frame that
        will carry the user-list changes queued now is its next one: it applies them again
        (the user list it is sent has them; re-applying changes in order is idempotent)
        and chains on. Starting after them instead stalled every login of a login storm
        for the gap timeout and logged it in twice: more changes joined that frame, whose
        ``prev`` was then not the client's head."""
        session.active = True
        session.session_last = session.beat_gsn = self.gsn
        if session.multicast and session.slot >= 0:
            self._slot_multicast[session.slot] = True  # the next round's LobbyBeat is for it too
        self._retarget(session)
        if session.multicast and session.lobby:  # not in the lobby group before next frames
            self._fresh.setdefault(LOBBY, {})[session.name] = (now + FRESH_JOIN_GRACE, self.gsn)
        rooms = tuple(
            self.room_info(room) for room in sorted(self.view.rooms_of.get(session.name, ()))
        )
        lobby_head = self.room_last.get(LOBBY, 0)
        return self.gsn, rooms, RoomInfo(LOBBY, self.view.lobby_group, (), lobby_head)

    def joined(self, session: Session, last: int) -> None:
        """``session`` delivered up to gsn ``last`` of this epoch: a client beats once it
        has carried out the group joins of what it delivered, so every channel it joined
        at or before ``last`` no longer needs its frames by session. Without this a mass
        login (every client of a switch that rebooted) sent each room frame over hundreds
        of sessions for a second: one commit step became tens of thousands of frames."""
        for channel in [c for c, fresh in self._fresh.items() if session.name in fresh]:
            fresh = self._fresh[channel]
            if fresh[session.name][1] <= last:
                del fresh[session.name]
                if not fresh:
                    del self._fresh[channel]

    def room_info(self, room: str) -> RoomInfo:
        record = self.view.rooms[room]
        return RoomInfo(
            room,
            record.group,
            tuple(sorted(record.members)),
            self.room_last.get(room, 0),
            record.topic,
        )

    def live_sessions(self, name: str) -> list[Session]:
        """Every welcomed session serving ``name`` (a user may have several terminals),
        oldest first; only the log's own sessions of it when a merge left others."""
        named = self.by_name.get(name)
        if not named:
            return []
        if len(named) == 1:
            return named if named[0].active else []
        record = self.view.users.get(name)
        live = [s for s in named if s.active]
        if record is not None:
            owned = [s for s in live if s.client_id in record.sessions]
            if owned:
                return owned
        return live[-1:]

    # -- publishing ------------------------------------------------------------
    def publish(self, entry: Entry, now: float) -> list[Effect]:
        """Stream one committed entry to whoever must see it (with no client's ID)."""
        body = entry.body
        view = self.view
        run = self._run
        if isinstance(body, (NameClaimed, NameReleased, PasswordSet, KeyAdded, KeyRemoved)):
            # Account bindings are the servers' business: no client channel carries them
            # (a claim comes with its login's UserOnline, which the lobby shows), least of
            # all a password's hash (with it, guessing runs offline).
            view.apply(entry)
            return []
        shown = public_entry(entry)
        if (
            run is not None
            and type(body) is Chat
            and body.room == run.room
            and self.room_last.get(run.room) == self.gsn  # nothing published since the run's last
            and len(run.entries) < ROOM_BATCH
            and run.text + len(body.text) <= ROOM_BATCH_TEXT
            and run.size + (size := codec.entry_size(shown)) <= codec.ROOM_FRAME_BUDGET
        ):
            if not view.apply(entry):
                return []
            self.gsn += 1
            self.room_last[run.room] = self.gsn
            run.entries.append(shown)
            run.text += len(body.text)
            run.size += size
            return []
        effects = self.flush_rooms(now)  # a run ends where anything else begins
        if isinstance(body, (UserOnline, UserOffline, UserStatus)):
            effects.extend(self._queue_user_change(entry, shown, now))
            return effects
        effects.extend(self.flush_lobby(now))  # nothing overtakes a queued user-list change
        before_members: tuple[str, ...] = ()
        if isinstance(body, RoomLeft):
            before_members = tuple(view.members(body.room))
        if not view.apply(entry):
            return effects
        if isinstance(body, (RoomJoined, RoomLeft)):
            self._neighbours.clear()
            self._room_targets.pop(body.room, None)
        self.gsn += 1
        gsn = self.gsn
        match body:
            case Chat(room=str() as room):
                self._open_run(room, shown, gsn)
            case RoomTopic(room=room):
                # A room entry: the room's own frame (one multicast datagram), its run
                # closed at once so that only chat ever shares a run.
                self._open_run(room, shown, gsn)
                effects.extend(self.flush_rooms(now))
            case Chat(sender=sender, to=str() as to):
                names = sorted({sender, to})
                effects.extend(self._session_frames(names, shown, gsn, scope=None))
            case RoomJoined(room=room, name=name):
                if any(session.multicast for session in self.live_sessions(name)):
                    self._fresh.setdefault(room, {})[name] = (now + FRESH_JOIN_GRACE, gsn)
                effects.extend(
                    self._session_frames(view.members(room), shown, gsn, scope=room, joiner=name)
                )
            case RoomLeft(room=room, name=name):
                self._fresh.get(room, {}).pop(name, None)
                effects.extend(
                    self._session_frames(
                        list(before_members), shown, gsn, scope=room, left={name: (room,)}
                    )
                )
        if (
            len(self._touched.get(LOBBY, ())) + len(self._lobby_rooms) > LOBBY_TOUCH_CAP
            or self._lobby_touch_bytes > LOBBY_TOUCH_BYTES
        ):
            # The next lobby frame would carry too many touches for one datagram: send an
            # empty one now, which starts the count again.
            effects.extend(self.flush_rooms(now))
            self.gsn += 1
            effects.extend(self.flush_lobby(now, empty=True))
        return effects

    # -- the lobby -------------------------------------------------------------
    def _queue_user_change(self, entry: Entry, shown: Entry, now: float) -> list[Effect]:
        """``entry`` changes the user list: it goes out (as ``shown``) in the next lobby frame."""
        body = entry.body
        size = codec.entry_size(shown)
        # The queued changes go out first if this one would take their frame past its share.
        effects = (
            self.flush_lobby(now)
            if self._lobby and self._lobby_bytes + size > LOBBY_ENTRY_BYTES
            else []
        )
        before_rooms: tuple[str, ...] = ()
        if isinstance(body, UserOffline):
            before_rooms = tuple(sorted(self.view.rooms_of.get(body.name, ())))
        if not self.view.apply(entry):
            return effects
        if isinstance(body, (UserOnline, UserOffline)):
            # Only this user's channels changed members (a login among thousands must
            # not rebuild every room's targets and neighbours).
            for room in (*before_rooms, *self.view.rooms_of.get(body.name, ())):
                self._neighbours.pop(room, None)
                self._room_targets.pop(room, None)
            self._room_targets.pop(LOBBY, None)
        self.gsn += 1
        if isinstance(body, UserOffline):
            for room in before_rooms:  # it gets none of these rooms' frames any more
                self._touched.get(room, {}).pop(body.name, None)
        self._lobby.append(shown)
        self._lobby_bytes += size
        if self.lobby_due is None:
            self.lobby_due = now + LOBBY_DELAY
        if len(self._lobby) >= LOBBY_BATCH:
            effects.extend(self.flush_lobby(now))
        return effects

    def flush_lobby(self, now: float, *, empty: bool = False) -> list[Effect]:
        """Send the queued user-list changes as one lobby frame (an ``empty`` one when the
        caller took a gsn for it), to the lobby group and to unicast clients' sessions."""
        rooms = self.flush_rooms(now)  # an open run was published before queued changes' frame
        entries = tuple(self._lobby)
        if not entries and not empty:
            return rooms
        prev = self.room_last.get(LOBBY, 0)
        # Queued entries take the last gsns: anything published after them sent them first.
        gsn = self.gsn
        touched, rooms_touched = self._touches(LOBBY, sorted(self._lobby_rooms), prev)
        self._lobby_rooms.clear()
        self._lobby = []
        self._lobby_bytes = self._lobby_touch_bytes = 0
        self.lobby_due = None
        self.room_last[LOBBY] = gsn
        frame = LobbyFrame(self.epoch, gsn, prev, touched, rooms_touched, entries)
        rooms.extend(self._channel_effects(now, LOBBY, self.view.lobby_group, frame))
        return rooms

    def _channel_effects(
        self,
        now: float,
        channel: str,
        group: str,
        frame: RoomFrame | LobbyFrame,
    ) -> list[Effect]:
        """A channel's frame: one multicast datagram, plus the same frame over the session
        of each member without multicast and of each member that may not have joined yet."""
        multicast, unicast = self._targets(channel)
        effects: list[Effect] = [Multicast(group, frame)] if multicast else []
        effects.extend(Send(session.addr, frame) for session in unicast)
        fresh = self._fresh.get(channel)
        if fresh:
            for name, (until, _) in sorted(fresh.items()):
                sessions = self.live_sessions(name)
                if until < now or not sessions:
                    del fresh[name]
                else:
                    effects.extend(Send(session.addr, frame) for session in sessions)
        return effects

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
        """One SessionFrame per live recipient. ``scope`` a room name: every member of
        that room got it; None: only these names."""
        effects: list[Effect] = []
        left = left or {}
        lobby_touched = self._touched.setdefault(LOBBY, {})
        for name in names:
            sessions = self.live_sessions(name)
            if not sessions:
                continue
            effects.extend(
                self._session_frame(name, session, entry, gsn, joiner, left) for session in sessions
            )
            if any(session.lobby for session in sessions):
                if name not in lobby_touched:
                    self._lobby_touch_bytes += _touch_bytes(name)
                lobby_touched[name] = gsn
            for room in self.view.rooms_of.get(name, ()):
                if room != scope:
                    self._touched.setdefault(room, {})[name] = gsn
        if scope is not None:
            self._all_last[scope] = gsn
        return effects

    def _session_frame(
        self,
        name: str,
        session: Session,
        entry: Entry,
        gsn: int,
        joiner: str | None,
        left: dict[str, tuple[str, ...]],
    ) -> Send:
        """``entry`` as the next frame of one of ``name``'s sessions."""
        rooms = self.view.rooms_of.get(name, ())
        # Room frames it got since its last session frame: count the rooms it was in
        # before this entry too (a leave must not outrun the room's last frame).
        was_in = left.get(name, ())
        # A joiner got none of its new room's frames (it starts that room at the head
        # its RoomInfo names): waiting for the last of them stalled every join into a
        # busy room until the gap timeout, and then a resume.
        joined = entry.body.room if name == joiner else None  # type: ignore[attr-defined]
        other = 0
        for room in (*rooms, *was_in, LOBBY) if session.lobby else (*rooms, *was_in):
            if room == joined:
                continue
            last = self.room_last.get(room, 0)
            if last > session.session_last and last > other:
                other = last
        info = self.room_info(joined) if joined is not None else None
        frame = SessionFrame(self.epoch, gsn, session.session_last, other, entry, info)
        session.session_last = gsn
        if isinstance(entry.body, Chat):
            session.private_clock = session.private_clock.merge(entry.clock)
        return Send(session.addr, frame)

    def shows_sender(self, entry: Entry) -> bool:
        """Whether the room frame being filled carries ``entry`` to the client that sent
        it: its session active, its name a member of the room. Delivering it is then that
        client's acknowledgement (only committed entries are streamed), and the leader
        sends no Ack: at 9,000 messages a second an Ack per message was a fifth of the
        leader's CPU (a frame to encode and a socket write per sender per step). A
        multicast copy lost on the way is repaired like any other; a resend after a
        failover is answered by an Ack."""
        run = self._run
        origin = entry.origin
        if run is None or run.entries[-1].dot != entry.dot or origin is None:
            return False
        session = self.sessions.get(origin.client_id)
        return (
            session is not None and session.active and self.view.is_member(run.room, session.name)
        )

    def _open_run(self, room: str, entry: Entry, gsn: int) -> None:
        """Start a room frame with ``entry``; its ordering fields are fixed now (nothing of
        another channel can come between its entries: publishing anything ends the run)."""
        record = self.view.rooms.get(room)
        if record is None:
            return
        prev = self.room_last.get(room, 0)
        other_all = self._all_last.pop(room, 0)
        # Every member is in the lobby: it neighbours every room.
        touched, rooms_touched = self._touches(room, (LOBBY, *self._neighbours_of(room)), prev)
        self.room_last[room] = gsn
        if room not in self._lobby_rooms:
            self._lobby_touch_bytes += _touch_bytes(room)
            self._lobby_rooms.add(room)
        body = entry.body
        text = len(body.text) if isinstance(body, Chat) else 0
        size = codec.entry_size(entry)
        if len(touched) + len(rooms_touched) > TOUCHES_UNMEASURED:
            size += codec.packed_size(touched) + codec.packed_size(rooms_touched)
        self._run = OpenRun(
            room, record.group, prev, other_all, touched, rooms_touched, [entry], text, size
        )

    def flush_rooms(self, now: float) -> list[Effect]:
        """Send the open room frame, if any. The leader calls it at the end of each commit
        step, so a run never outlives the step that filled it."""
        run = self._run
        if run is None:
            return []
        self._run = None
        frame = RoomFrame(
            self.epoch,
            self.room_last[run.room],
            run.prev,
            run.room,
            run.other_all,
            run.touched,
            run.rooms_touched,
            tuple(run.entries),
        )
        return self._channel_effects(now, run.room, run.group, frame)

    def _touches(
        self, channel: str, others: Iterable[str], prev: int
    ) -> tuple[tuple[Touch, ...], tuple[Touch, ...]]:
        """What a channel's next frame must name: the members that got session frames
        since its ``prev``, and those of ``others`` (channels) that had frames since."""
        touched = tuple(Touch(n, g) for n, g in sorted(self._touched.pop(channel, {}).items()))
        rooms_touched = tuple(
            Touch(other, self.room_last[other])
            for other in others
            if self.room_last.get(other, 0) > prev
        )
        return touched, rooms_touched

    def _targets(self, channel: str) -> tuple[bool, tuple[Session, ...]]:
        """Whether the channel (a room, or the lobby: every client following it) has
        multicast members, and its members served over sessions."""
        found = self._room_targets.get(channel)
        if found is None:
            if channel == LOBBY:
                # Login order (deterministic): no sort of every session per rebuild.
                live = [s for s in self.sessions.values() if s.active and s.lobby]
            else:
                members = sorted(self.view.rooms[channel].members)
                live = [s for name in members for s in self.live_sessions(name)]
            multicast = any(session.multicast for session in live)
            unicast = tuple(session for session in live if not session.multicast)
            found = self._room_targets[channel] = (multicast, unicast)
        return found

    def audience_token(self, room: str) -> object | None:
        """An object that stays the same (``is``) while ``room``'s members and their
        sessions do, None if none is cached: the runtime's room keys rebuild who holds a
        key only when it changes, not for every frame of a 400-member room."""
        return self._room_targets.get(room)

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
    def heartbeats(self, leader_id: int, now: float) -> list[Effect]:
        """One heartbeat step: the sessions of slot ``beat_cursor`` get a ClientHeartbeat if
        they cannot hear the lobby group or if their session or rooms moved since their last
        one; the step that starts a round (slot 0) also multicasts the round's single
        LobbyBeat to the lobby group. The leader takes BEAT_SLOTS steps per
        ``client_heartbeat_interval``, so each session is still beaten once per interval.

        An idle multicast client thus costs the leader nothing per round (10,000 of them
        were 20,000 frames a second before). One ClientHeartbeat per move reveals a lost
        last frame at once; if that heartbeat is lost too (a broken session), the client's
        next ClientBeat shows it behind and earns another (``ClientDesk.on_beat``), and a
        lost LobbyBeat is covered by the client's probe."""
        index = self.beat_cursor
        self.beat_cursor = (index + 1) % BEAT_SLOTS
        # Heads name only frames that went out. A queued lobby change has no head yet
        # (room_last moves when its frame goes out), so only the round's step sends it
        # early, for its LobbyBeat; the other steps leave it its LOBBY_DELAY batch.
        effects = self.flush_lobby(now) if index == 0 else self.flush_rooms(now)
        # Nothing sequenced since this slot's last step: no head of its sessions moved.
        moved = self.gsn != self._slot_gsn[index]
        self._slot_gsn[index] = self.gsn
        multicast = False
        due: list[Session] = []
        for session in self.beat_slots[index].values():
            if not session.active:
                continue
            if session.multicast:
                multicast = True
                if not moved or self._head(session) <= session.beat_gsn:
                    continue
            due.append(session)
        self._slot_multicast[index] = multicast
        if index == 0 and any(self._slot_multicast):
            lobby_head = self.room_last.get(LOBBY, 0)
            self._beats += 1
            beat = LobbyBeat(self.epoch, leader_id, self.gsn, lobby_head, self._beats)
            effects.append(Multicast(self.view.lobby_group, beat))
        due.sort(key=lambda session: session.client_id)
        for session in due:
            effects.extend(self.heartbeat(session, leader_id))
        return effects

    def heartbeat(self, session: Session, leader_id: int) -> list[Send]:
        """``session``'s ClientHeartbeat: the heads of its session, lobby and rooms. A
        client in more rooms than one frame names gets several, each with some of the
        heads (a client checks each head it is given on its own)."""
        session.beat_gsn = self.gsn
        room_last = self.room_last
        heads = (Touch(LOBBY, room_last.get(LOBBY, 0)),) + tuple(
            Touch(room, room_last.get(room, 0))
            for room in sorted(self.view.rooms_of.get(session.name, ()))
        )
        parts = (
            (heads,)
            if len(heads) <= TOUCHES_UNMEASURED
            else codec.split(heads, lambda touch: _touch_bytes(touch.name))
        )
        return [
            Send(
                session.addr,
                ClientHeartbeat(self.epoch, leader_id, self.gsn, session.session_last, tuple(part)),
            )
            for part in parts
        ]

    def head(self, session: Session) -> int:
        """The gsn of the last frame of any channel of ``session``."""
        head = self._head(session)
        return max(head, self.room_last.get(LOBBY, 0)) if session.lobby else head

    def _head(self, session: Session) -> int:
        """The gsn of the last frame of any channel of ``session`` but the lobby."""
        head = session.session_last
        room_last = self.room_last
        for room in self.view.rooms_of.get(session.name, ()):
            last = room_last.get(room, 0)
            if last > head:
                head = last
        return head
