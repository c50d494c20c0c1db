"""A client's inbox: completing a Welcome, then applying its stream in delivery order to
the users, rooms and clock it shows, and delivering chat exactly once.

The inbox owns what only it needs (the welcome attempts, the frames that came before their
Welcome, the rooms to join again) and changes the node's phase never: a complete Welcome
returns the hold-back queue it starts, which the node's Serving phase then holds and hands
back with each frame, and a step that ends the stream returns an outcome (OwnNameOffline)
for the node.

Longer than 400 lines: completing a Welcome and applying the stream change the same users,
rooms and clock and share one record of what was delivered (the clock and the recent
origins); split, two modules would write the same fields of the node."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from tchat.core.config import ClientConfig
from tchat.core.delivery import Frame, HoldBack
from tchat.core.effects import (
    ChatDelivered,
    Deliver,
    Effect,
    JoinGroup,
    LeaveGroup,
    MembersChanged,
    RoomEntered,
    RoomExited,
    TopicChanged,
    UsersChanged,
)
from tchat.core.messages import (
    Chat,
    Entry,
    Epoch,
    JoinRoom,
    LobbyFrame,
    Origin,
    RoomFrame,
    RoomInfo,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    RoomTopic,
    SessionFrame,
    Submit,
    UserInfo,
    UserOffline,
    UserOnline,
    UserStatus,
    Welcome,
)
from tchat.core.vclock import VectorClock


class InboxHost(Protocol):
    """What the inbox reads and writes of its node (a ClientNode): what the node shows and
    the session's identity. The inbox never imports the node."""

    config: ClientConfig
    name: str
    client_id: str
    client_tag: str  # our client ID as frames show it (tchat.core.projection)
    epoch: Epoch
    leader_id: int
    leader_addr: str
    servers: dict[int, str]
    users: dict[str, UserInfo]
    rooms: dict[str, RoomInfo]
    clock: VectorClock
    lobby_group: str
    pending: dict[int, Submit]

    @property
    def now(self) -> float: ...

    def acknowledged(self, cmid: int, entry_id: str) -> list[Effect]: ...


T = TypeVar("T")

# Seconds at least that a delivered operation's origin is remembered, to drop a second
# copy of it that a new leader recorded from a resend (see Inbox.deliver_chat). A resend
# follows a failover within a second or two; memory stays bounded on a busy room.
ORIGIN_MEMORY = 120.0


def _slot(table: dict[tuple[Epoch, int], T], key: tuple[Epoch, int], new: Callable[[], T]) -> T:
    """``table[key]``, made if missing; abandoned attempts beyond the newest few go."""
    found = table.get(key)
    if found is None:
        if len(table) > 8:
            del table[min(table)]
        found = table[key] = new()
    return found


@dataclass(frozen=True, slots=True)
class OwnNameOffline:
    """Our own name went offline in the lobby stream: the stream ends here, and the node
    closes (our logout) or resumes (anything else). ``users_changed``: the frame changed
    the user list before that entry; the node reports it after acting."""

    client_id: str  # the session's tag (tchat.core.projection), as the lobby showed it
    reason: str
    users_changed: bool


@dataclass(slots=True)
class FrameOutcome:
    """What applying frames asks of the node."""

    beat_now: bool = False  # we joined a room: a beat tells the leader we hear its group
    offline: OwnNameOffline | None = None


@dataclass(slots=True)
class WelcomeParts:
    # keyed, so that a duplicated chunk does not throw the counts off
    entries: dict[str, Entry] = field(default_factory=dict)
    rooms: dict[str, RoomInfo] = field(default_factory=dict)  # from RoomList chunks
    welcome: Welcome | None = None


class Inbox:
    """What a ClientNode does with what the leader streams to it."""

    def __init__(self, node: InboxHost) -> None:
        self.node = node
        # Origins of the chat delivered lately, in two generations that each last
        # ORIGIN_MEMORY: the older one is dropped whole (no per-entry expiry to pay for).
        self.recent_origins: set[Origin] = set()
        self.older_origins: set[Origin] = set()
        self.origins_turn = ORIGIN_MEMORY  # when the current generation becomes the older
        self.welcomes: dict[tuple[Epoch, int], WelcomeParts] = {}
        self.snapshots: dict[tuple[Epoch, int], dict[str, UserInfo]] = {}  # UserList chunks
        # The first Register of the current (re)registration: a Welcome answering an older
        # one (say, sent before a Resync) describes a stream the leader has replaced.
        self.welcome_from = 1
        self.early_frames: list[Frame] = []  # frames of the epoch before its Welcome
        self.rooms_to_rejoin: list[str] = []  # rooms to join again once welcomed
        # Pending /joins (cmids) whose room we were shown entering while they waited: their
        # answer shows nothing more. Only pending cmids: bounded by what is pending.
        self.joins_shown: set[int] = set()

    def parts(self, epoch: Epoch, token: int) -> WelcomeParts:
        """The Replay and RoomList chunks and Welcome of one welcome attempt received so far."""
        return _slot(self.welcomes, (epoch, token), WelcomeParts)

    def snapshot(self, epoch: Epoch, snapshot: int) -> dict[str, UserInfo]:
        """The users of one UserList snapshot received so far (keyed: duplicates are free)."""
        return _slot(self.snapshots, (epoch, snapshot), dict)

    def forget_welcomes(self) -> None:
        """Drop every welcome attempt received so far (any on its way is stale)."""
        self.welcomes.clear()
        self.snapshots.clear()

    def end_stream(self, first_register: int) -> None:
        """We (re)register: no stream until a Welcome that answers a Register numbered
        ``first_register`` or later."""
        self.early_frames = []
        self.welcome_from = first_register

    def take_rejoins(self) -> list[str]:
        rejoin, self.rooms_to_rejoin = self.rooms_to_rejoin, []
        return rejoin

    def take_early_frames(self) -> list[Frame]:
        early, self.early_frames = self.early_frames, []
        return early

    def try_welcome(
        self, registering: bool
    ) -> tuple[tuple[Welcome, HoldBack] | None, list[Effect]]:
        """Complete a Welcome once all its UserList, Replay and RoomList chunks are here
        (any order), and apply it if we are ``registering``: the Welcome applied and the
        hold-back queue of the stream it starts (the node then serves it), or None; and the
        effects in order."""
        node = self.node
        for key in sorted(self.welcomes):
            parts = self.welcomes[key]
            msg = parts.welcome
            if msg is None or msg.epoch < node.epoch or msg.attempt < self.welcome_from:
                continue
            users = self.snapshots.get((msg.epoch, msg.snapshot), {})
            if (
                len(users) != msg.user_count
                or len(parts.entries) != msg.replay_count
                or len(parts.rooms) != msg.room_count
            ):
                continue
            self.forget_welcomes()
            if not registering:
                return None, []
            effects: list[Effect] = []
            for entry in sorted(parts.entries.values(), key=lambda e: e.key):
                effects += self.deliver_chat(entry)
            if parts.rooms:
                msg = dataclasses.replace(msg, rooms=(*msg.rooms, *parts.rooms.values()))
            holdback, applied = self.on_welcome(msg, list(users.values()))
            effects += applied
            return (msg, holdback), effects
        return None, []

    def on_welcome(self, msg: Welcome, users: list[UserInfo]) -> tuple[HoldBack, list[Effect]]:
        """The users, rooms and groups a complete Welcome shows, and a new hold-back queue
        from its gsn."""
        node = self.node
        node.epoch = msg.epoch
        node.leader_id = msg.leader_id
        node.leader_addr = msg.leader_addr
        for server in msg.servers:
            node.servers[server.server_id] = server.addr
        node.users = {u.name: u for u in users}
        effects: list[Effect] = [self.users_changed()]
        old_rooms = node.rooms
        # The account's rooms, kept by the servers across sessions, are the truth: a room
        # we had and the Welcome does not list was left (from another of the account's
        # terminals while we were away, or merged in from the other side of a partition)
        # or we were kicked. Going offline or timing out leaves no room, so joining it
        # again would undo the account's own /leave.
        node.rooms = {info.room: info for info in msg.rooms}
        for room in sorted(old_rooms):
            if room not in node.rooms:
                effects.append(LeaveGroup(old_rooms[room].group))
                effects.append(Deliver(RoomExited(room)))
        for room in sorted(node.rooms):
            info = node.rooms[room]
            if room not in old_rooms or old_rooms[room].group != info.group:
                if room in old_rooms:
                    effects.append(LeaveGroup(old_rooms[room].group))
                effects.append(JoinGroup(info.group))
                effects.append(self.entered(info))
            elif old_rooms[room].members != info.members:
                effects.append(Deliver(MembersChanged(room, info.members)))
            if room in old_rooms and old_rooms[room].topic != info.topic:
                # Changed while we were away (a catch-up replays only chat): who and when
                # are not known here, the topic is.
                effects.append(Deliver(TopicChanged(room, info.topic, "", 0.0)))
        lobby = (msg.lobby,) if node.config.lobby else ()
        # Every multicast client hears the lobby group, for the leader's LobbyBeats, also
        # one that does not follow the user list (it drops the lobby's frames).
        if node.config.multicast and node.lobby_group != msg.lobby.group:
            if node.lobby_group:
                effects.append(LeaveGroup(node.lobby_group))
            node.lobby_group = msg.lobby.group
            effects.append(JoinGroup(msg.lobby.group))
        return HoldBack(node.name, msg.gsn, (*msg.rooms, *lobby)), effects

    def on_frame(
        self, frame: Frame, holdback: HoldBack | None
    ) -> tuple[FrameOutcome, list[Effect]]:
        """Offer a frame to the hold-back queue of the stream we serve and apply what it
        releases in order (with no ``holdback``, a frame waits for its Welcome). After our
        own name's logout nothing more is applied: the node ends the stream."""
        node = self.node
        outcome = FrameOutcome()
        effects: list[Effect] = []
        if isinstance(frame, LobbyFrame) and not node.config.lobby:
            return outcome, effects  # we hear the lobby group for its beats only
        if holdback is None or frame.epoch != node.epoch:
            if frame.epoch >= node.epoch and len(self.early_frames) < 10_000:
                self.early_frames.append(frame)
            return outcome, effects
        if not holdback.offer(frame):
            return outcome, effects
        while True:
            ready = holdback.next_ready(node.now)
            if ready is None:
                return outcome, effects
            outcome.offline, applied = self.apply_frame(ready, holdback, outcome)
            effects += applied
            if outcome.offline is not None:
                # Nothing after our name's logout is ours: the rest of this frame (the
                # name logging in elsewhere, and out again) must not be applied.
                return outcome, effects

    def apply_frame(
        self, frame: Frame, holdback: HoldBack, outcome: FrameOutcome
    ) -> tuple[OwnNameOffline | None, list[Effect]]:
        """Apply one frame the queue released: its effects in order, and our own name's
        logout if the frame holds it (the entries after it are not applied)."""
        node = self.node
        effects: list[Effect] = []
        if isinstance(frame, LobbyFrame):
            changed = False
            for entry in frame.entries:
                node.clock = node.clock.merge(entry.clock)
                body = entry.body
                if type(body) is UserOffline and body.name == node.name:
                    # Our name went offline: our logout, or the leader stopped hearing us
                    # (a one-way link), or the log merged another session's logout of
                    # this name (which takes the name's rooms along). The node decides.
                    return OwnNameOffline(body.client_id, body.reason, changed), effects
                user_changed, applied = self.apply_user_change(entry)
                changed = user_changed or changed
                effects += applied
            if changed:  # one event per frame: a login storm is not a storm of redraws
                effects.append(self.users_changed())
            return None, effects
        if isinstance(frame, RoomFrame):
            # A run of room messages committed back to back, delivered in its order.
            for entry in frame.entries:
                if type(entry.body) is Chat:
                    effects += self.deliver_chat(entry)
                else:  # a leader only batches chat; anything else is applied as it comes
                    effects += self.apply_entry(frame, entry, holdback, outcome)
            return None, effects
        return None, self.apply_entry(frame, frame.entry, holdback, outcome)

    def apply_entry(
        self, frame: Frame, entry: Entry, holdback: HoldBack, outcome: FrameOutcome
    ) -> list[Effect]:
        """One entry of a session or room frame: its effects in order."""
        node = self.node
        body = entry.body
        if type(body) is Chat:
            return self.deliver_chat(entry)
        effects: list[Effect] = []
        if type(body) is RoomTopic:
            # As for chat, an entry the clock covers was applied (or was never ours): a late
            # copy of an older topic must neither show twice nor undo a newer one.
            if node.clock.get(entry.dot.server) >= entry.dot.counter:
                return effects
            node.clock = node.clock.merge(entry.clock)
            known = node.rooms.get(body.room)
            if known is not None:
                node.rooms[body.room] = dataclasses.replace(known, topic=body.topic)
                effects.append(Deliver(TopicChanged(body.room, body.topic, body.by, entry.ts)))
            return effects
        node.clock = node.clock.merge(entry.clock)
        match body:
            case RoomJoined(room=room, name=name):
                if name == node.name and isinstance(frame, SessionFrame) and frame.room:
                    node.rooms[room] = frame.room
                    holdback.join(frame.room)
                    effects.append(JoinGroup(frame.room.group))
                    effects.append(self.entered(frame.room))
                    # A beat now tells the leader we are in the group: it stops sending
                    # this room's frames over our session too (ClientStreams.joined).
                    outcome.beat_now = True
                elif room in node.rooms:
                    info = node.rooms[room]
                    members = tuple(sorted({*info.members, name}))
                    node.rooms[room] = dataclasses.replace(info, members=members)
                    effects.append(Deliver(MembersChanged(room, members)))
            case RoomLeft(room=room, name=name):
                known = node.rooms.get(room)
                if known is None:
                    return effects
                info = known
                if name == node.name:
                    del node.rooms[room]
                    holdback.leave(room)
                    effects.append(LeaveGroup(info.group))
                    by = body.by if isinstance(body, RoomKicked) else ""
                    effects.append(Deliver(RoomExited(room, by)))
                else:
                    members = tuple(m for m in info.members if m != name)
                    node.rooms[room] = dataclasses.replace(info, members=members)
                    effects.append(Deliver(MembersChanged(room, members)))
        return effects

    def entered(self, info: RoomInfo) -> Effect:
        """We are in ``info``'s room: the user is shown it, and a /join of it still pending
        is answered by this (its acknowledgement shows the room no second time)."""
        for cmid, submit in self.node.pending.items():
            if type(submit.op) is JoinRoom and submit.op.room == info.room:
                self.joins_shown.add(cmid)
        return Deliver(RoomEntered(info))

    def apply_user_change(self, entry: Entry) -> tuple[bool, list[Effect]]:
        """One lobby entry, not our own name's logout: True if the user list changed (the
        caller says so once), and the effects in order."""
        node = self.node
        match entry.body:
            case UserOnline(name=name, addr=addr):
                node.users[name] = UserInfo(name, addr, "online", entry.ts)
                return True, []
            case UserOffline(name=name):
                # Offline, not out of its rooms: membership is the account's (the user
                # list says who is online; a room's members stay until /leave or /kick).
                node.users.pop(name, None)
                return True, []
            case UserStatus(name=name, away=away, away_reason=reason):
                user = node.users.get(name)
                if user is not None:
                    node.users[name] = UserInfo(
                        name,
                        user.addr,
                        "away" if away else "online",
                        entry.ts,
                        reason if away else "",
                    )
                    return True, []
        return False, []

    def users_changed(self) -> Effect:
        # Unsorted: with 10,000 users sorting per frame would cost more than the frame.
        return Deliver(UsersChanged(tuple(self.node.users.values())))

    def deliver_chat(self, entry: Entry) -> list[Effect]:
        """Deliver a chat entry unless it was delivered before: its effects in order.

        The clock is the merge of every entry this node applied, and entries come in an
        order that extends happened-before (gsn order within an epoch; a catch-up only
        brings entries its cursor, our clock, does not cover). So an entry the clock
        covers was delivered, or was never ours: a repeat after a failover, a resent frame.
        The clock is the record, however long the node runs.

        A second copy of one operation has another dot: a leader that lacked the first
        copy when the sender resent it recorded it again (after a failover, or on the
        other side of a partition). The origins delivered in the last ORIGIN_MEMORY
        seconds catch it. A copy arriving later than that, which takes a partition that
        long with the sender's resend on both sides of it, is shown twice; nothing is
        ever dropped for it.
        """
        node = self.node
        dot = entry.dot
        if node.clock.get(dot.server) >= dot.counter:
            return []
        node.clock = node.clock.merge(entry.clock)
        origin = entry.origin
        effects: list[Effect] = []
        if origin is not None:
            if node.now >= self.origins_turn:
                self.older_origins = self.recent_origins
                self.recent_origins = set()
                self.origins_turn = node.now + ORIGIN_MEMORY
            if origin in self.recent_origins or origin in self.older_origins:
                return effects
            self.recent_origins.add(origin)
            if origin.client_id == node.client_tag and origin.cmid in node.pending:
                effects = node.acknowledged(origin.cmid, entry.id)
        effects.append(Deliver(ChatDelivered(entry)))
        return effects
