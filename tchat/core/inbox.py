"""A client's inbox: completing a Welcome, then applying its stream in delivery order to
the users, rooms and clock it shows, and delivering chat exactly once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from tchat.core.client_states import ClientState
from tchat.core.delivery import Frame, HoldBack
from tchat.core.effects import (
    ChatDelivered,
    Deliver,
    Effect,
    JoinGroup,
    LeaveGroup,
    MembersChanged,
    Ready,
    RoomEntered,
    RoomExited,
    Send,
    UsersChanged,
)
from tchat.core.messages import (
    Chat,
    Entry,
    Epoch,
    JoinRoom,
    LobbyFrame,
    RoomFrame,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    SessionFrame,
    UserInfo,
    UserOffline,
    UserOnline,
    UserStatus,
    Welcome,
)

if TYPE_CHECKING:
    from tchat.core.client import ClientNode


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


@dataclass(slots=True)
class WelcomeParts:
    # keyed, so that a duplicated chunk does not throw the counts off
    entries: dict[str, Entry] = field(default_factory=dict)
    rooms: dict[str, RoomInfo] = field(default_factory=dict)  # from RoomList chunks
    welcome: Welcome | None = None


class Inbox:
    """What a ClientNode does with what the leader streams to it."""

    def __init__(self, node: ClientNode) -> None:
        self.node = node

    def parts(self, epoch: Epoch, token: int) -> WelcomeParts:
        """The Replay and RoomList chunks and Welcome of one welcome attempt received so far."""
        return _slot(self.node._welcomes, (epoch, token), WelcomeParts)

    def snapshot(self, epoch: Epoch, snapshot: int) -> dict[str, UserInfo]:
        """The users of one UserList snapshot received so far (keyed: duplicates are free)."""
        return _slot(self.node._snapshots, (epoch, snapshot), dict)

    def try_welcome(self, effects: list[Effect]) -> None:
        """Complete a Welcome once all its UserList, Replay and RoomList chunks are here
        (any order)."""
        node = self.node
        for key in sorted(node._welcomes):
            parts = node._welcomes[key]
            msg = parts.welcome
            if msg is None or msg.epoch < node.epoch or msg.attempt < node._welcome_from:
                continue
            users = node._snapshots.get((msg.epoch, msg.snapshot), {})
            if (
                len(users) != msg.user_count
                or len(parts.entries) != msg.replay_count
                or len(parts.rooms) != msg.room_count
            ):
                continue
            node._welcomes.clear()
            node._snapshots.clear()
            if node.state not in (ClientState.REGISTERING, ClientState.RESUMING):
                return
            for entry in sorted(parts.entries.values(), key=lambda e: e.key):
                self.deliver_chat(entry, effects)
            if parts.rooms:
                msg = dataclasses.replace(msg, rooms=(*msg.rooms, *parts.rooms.values()))
            self.on_welcome(msg, list(users.values()), effects)
            return

    def on_welcome(self, msg: Welcome, users: list[UserInfo], effects: list[Effect]) -> None:
        node = self.node
        node.epoch = msg.epoch
        node.leader_id = msg.leader_id
        node.leader_addr = msg.leader_addr
        for server in msg.servers:
            node.servers[server.server_id] = server.addr
        node.users = {u.name: u for u in users}
        self.users_changed(effects)
        old_rooms = node.rooms
        node.rooms = {info.room: info for info in msg.rooms}
        for room in sorted(old_rooms):
            if room in node.rooms:
                continue
            effects.append(LeaveGroup(old_rooms[room].group))
            if room in node._wanted_rooms:
                # We never left it: the servers dropped us (a partition outlasted the client
                # timeout on the other side). Join again instead of reporting a leave.
                node._rejoin = sorted({*node._rejoin, room})
            else:
                effects.append(Deliver(RoomExited(room)))
        for room in sorted(node.rooms):
            info = node.rooms[room]
            if room not in old_rooms or old_rooms[room].group != info.group:
                if room in old_rooms:
                    effects.append(LeaveGroup(old_rooms[room].group))
                effects.append(JoinGroup(info.group))
                effects.append(Deliver(RoomEntered(info)))
            elif old_rooms[room].members != info.members:
                effects.append(Deliver(MembersChanged(room, info.members)))
        lobby = (msg.lobby,) if node.config.lobby else ()
        # Every multicast client hears the lobby group, for the leader's LobbyBeats, also
        # one that does not follow the user list (it drops the lobby's frames).
        if node.config.multicast and node.lobby_group != msg.lobby.group:
            if node.lobby_group:
                effects.append(LeaveGroup(node.lobby_group))
            node.lobby_group = msg.lobby.group
            effects.append(JoinGroup(msg.lobby.group))
        node._hold = HoldBack(node.name, msg.gsn, (*msg.rooms, *lobby))
        node._become(
            ClientState.SERVING, "welcome", effects, f"leader {msg.leader_id} epoch {msg.epoch}"
        )
        node._next_beat = node._now
        if not node.welcomed_once:
            node.welcomed_once = True
            effects.append(Deliver(Ready(node.name, msg.leader_id, msg.leader_addr, msg.epoch)))
        node._last_resend = node._now
        rejoin, node._rejoin = node._rejoin, []
        for room in rejoin:
            if room not in node.rooms:
                rejoin_op = node.next_submit(JoinRoom(room), node._now + node.config.wall_offset)
                node.pending[rejoin_op.cmid] = rejoin_op
                node._automatic.add(rejoin_op.cmid)  # ours, not the user's: no Sent/OpFailed
        for cmid in sorted(node.pending):
            effects.append(Send(node.leader_addr, node.pending[cmid]))
        early, node._early = node._early, []
        for frame in early:
            if frame.epoch == node.epoch:
                self.on_frame(frame, effects)

    def on_frame(self, frame: Frame, effects: list[Effect]) -> None:
        node = self.node
        if isinstance(frame, LobbyFrame) and not node.config.lobby:
            return  # we hear the lobby group for its beats only
        hold = node._hold
        if hold is None or node.state is not ClientState.SERVING or frame.epoch != node.epoch:
            if frame.epoch >= node.epoch and len(node._early) < 10_000:
                node._early.append(frame)
            return
        if not hold.offer(frame):
            return
        while True:
            ready = hold.next_ready(node._now)
            if ready is None:
                return
            self.apply_frame(ready, effects)
            if node._hold is not hold:
                return

    def apply_frame(self, frame: Frame, effects: list[Effect]) -> None:
        node = self.node
        if isinstance(frame, LobbyFrame):
            hold = node._hold
            changed = False
            for entry in frame.entries:
                node.clock = node.clock.merge(entry.clock)
                changed = self.apply_user_change(entry, effects) or changed
                if node._hold is not hold:  # our own logout: we resume or close
                    break
            if changed:  # one event per frame: a login storm is not a storm of redraws
                self.users_changed(effects)
            return
        if isinstance(frame, RoomFrame):
            # A run of room messages committed back to back, delivered in its order.
            for entry in frame.entries:
                if type(entry.body) is Chat:
                    self.deliver_chat(entry, effects)
                else:  # a leader only batches chat; anything else is applied as it comes
                    self.apply_entry(frame, entry, effects)
            return
        self.apply_entry(frame, frame.entry, effects)

    def apply_entry(self, frame: Frame, entry: Entry, effects: list[Effect]) -> None:
        """One entry of a session or room frame."""
        node = self.node
        body = entry.body
        if type(body) is Chat:
            self.deliver_chat(entry, effects)
            return
        node.clock = node.clock.merge(entry.clock)
        match body:
            case RoomJoined(room=room, name=name):
                if name == node.name and isinstance(frame, SessionFrame) and frame.room:
                    node.rooms[room] = frame.room
                    assert node._hold is not None
                    node._hold.join(frame.room)
                    effects.append(JoinGroup(frame.room.group))
                    effects.append(Deliver(RoomEntered(frame.room)))
                    # A beat now tells the leader we are in the group: it stops sending
                    # this room's frames over our session too (ClientStreams.joined).
                    node._next_beat = node._now
                elif room in node.rooms:
                    info = node.rooms[room]
                    members = tuple(sorted({*info.members, name}))
                    node.rooms[room] = RoomInfo(room, info.group, members, info.head)
                    effects.append(Deliver(MembersChanged(room, members)))
            case RoomLeft(room=room, name=name):
                known = node.rooms.get(room)
                if known is None:
                    return
                info = known
                if name == node.name:
                    del node.rooms[room]
                    assert node._hold is not None
                    node._hold.leave(room)
                    effects.append(LeaveGroup(info.group))
                    effects.append(Deliver(RoomExited(room)))
                else:
                    members = tuple(m for m in info.members if m != name)
                    node.rooms[room] = RoomInfo(room, info.group, members, info.head)
                    effects.append(Deliver(MembersChanged(room, members)))

    def apply_user_change(self, entry: Entry, effects: list[Effect]) -> bool:
        """One lobby entry; True if the user list changed (the caller says so once)."""
        node = self.node
        match entry.body:
            case UserOnline(name=name, addr=addr):
                node.users[name] = UserInfo(name, addr, "online", entry.ts)
                return True
            case UserOffline(name=name, client_id=client_id, reason=reason):
                if name == node.name:
                    if node._logging_out and client_id == node.client_id:
                        node._become(ClientState.CLOSED, "logged-out", effects, "logged out")
                        # Nothing after our logout is ours: the rest of this frame (the name
                        # logging in elsewhere, and out again) must not make us resume.
                        node._hold = None
                    else:
                        # Our name went offline: the leader stopped hearing us (a one-way
                        # link), or the log merged another session's logout of this name
                        # (which takes the name's rooms along). Log in again; the Welcome
                        # says which rooms we are in.
                        node._resume(effects, f"the name {name} was logged out ({reason})")
                    return False
                node.users.pop(name, None)
                for room in sorted(node.rooms):  # a user who leaves leaves every room
                    info = node.rooms[room]
                    if name in info.members:
                        members = tuple(m for m in info.members if m != name)
                        node.rooms[room] = RoomInfo(room, info.group, members, info.head)
                        effects.append(Deliver(MembersChanged(room, members)))
                return True
            case UserStatus(name=name, away=away):
                user = node.users.get(name)
                if user is not None:
                    node.users[name] = UserInfo(
                        name, user.addr, "away" if away else "online", entry.ts
                    )
                    return True
        return False

    def users_changed(self, effects: list[Effect]) -> None:
        # Unsorted: with 10,000 users sorting per frame would cost more than the frame.
        effects.append(Deliver(UsersChanged(tuple(self.node.users.values()))))

    def deliver_chat(self, entry: Entry, effects: list[Effect]) -> None:
        """Deliver a chat entry unless it was delivered before.

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
            return
        node.clock = node.clock.merge(entry.clock)
        origin = entry.origin
        if origin is not None:
            if node._now >= node.origins_turn:
                node.older_origins = node.recent_origins
                node.recent_origins = set()
                node.origins_turn = node._now + ORIGIN_MEMORY
            if origin in node.recent_origins or origin in node.older_origins:
                return
            node.recent_origins.add(origin)
            if origin.client_id == node.client_id and origin.cmid in node.pending:
                node.acknowledged(origin.cmid, entry.id, effects)
        effects.append(Deliver(ChatDelivered(entry)))
