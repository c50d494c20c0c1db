"""The client node: finds the leader, registers, sends, and delivers exactly once in causal
order across failovers (sans-IO)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from tchat.core.config import ClientConfig
from tchat.core.delivery import HoldBack
from tchat.core.effects import (
    Broadcast,
    ChatDelivered,
    ConnectionChanged,
    Deliver,
    Effect,
    Failed,
    HistoryLoaded,
    JoinGroup,
    LeaderLearned,
    LeaveGroup,
    MembersChanged,
    OpFailed,
    Ready,
    Renamed,
    RoomDirectory,
    RoomEntered,
    RoomExited,
    Send,
    Sent,
    UsersChanged,
)
from tchat.core.errors import IllegalTransition
from tchat.core.messages import (
    NO_EPOCH,
    Ack,
    Chat,
    ClientBeat,
    ClientHeartbeat,
    Discover,
    DiscoverReply,
    Dot,
    Entry,
    Epoch,
    HistoryReply,
    HistoryRequest,
    JoinRoom,
    LeaderAlive,
    LeaderSuspect,
    LeaveRoom,
    Logout,
    Message,
    NameClash,
    NewLeader,
    NotLeader,
    Operation,
    OpError,
    Origin,
    Register,
    Rejected,
    Replay,
    Resync,
    RoomFrame,
    RoomInfo,
    RoomJoined,
    RoomLeft,
    RoomsReply,
    RoomsRequest,
    RoomSummary,
    ServerInfo,
    SessionFrame,
    Submit,
    UserInfo,
    UserList,
    UserOffline,
    UserOnline,
    UserStatus,
    Welcome,
)
from tchat.core.names import name_problem
from tchat.core.vclock import EMPTY_CLOCK, VectorClock


@dataclass(slots=True)
class _WelcomeParts:
    # keyed, so that a duplicated chunk does not throw the counts off
    users: dict[str, UserInfo] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    welcome: Welcome | None = None


class ClientState(Enum):
    DISCOVERING = "discovering"  # looking for servers by broadcast
    REGISTERING = "registering"  # first login sent to the leader
    SERVING = "serving"  # welcomed: the stream flows
    RESUMING = "resuming"  # failover, gap or merge: re-registering with our cursor
    FAILED = "failed"  # refused for good (invalid or taken name)
    CLOSED = "closed"  # logged out


_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    ClientState.DISCOVERING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.REGISTERING,
            ClientState.RESUMING,
            ClientState.FAILED,
            ClientState.CLOSED,
        }
    ),
    ClientState.REGISTERING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.REGISTERING,
            ClientState.SERVING,
            ClientState.FAILED,
            ClientState.CLOSED,
        }
    ),
    ClientState.SERVING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.RESUMING,
            ClientState.SERVING,
            ClientState.CLOSED,
            ClientState.FAILED,
        }
    ),
    ClientState.RESUMING: frozenset(
        {
            ClientState.DISCOVERING,
            ClientState.RESUMING,
            ClientState.SERVING,
            ClientState.FAILED,
            ClientState.CLOSED,
        }
    ),
    ClientState.FAILED: frozenset({ClientState.CLOSED}),
    ClientState.CLOSED: frozenset(),
}

GAP_TIMEOUT = 0.5  # a hole in the stream this old is repaired by resuming
SILENCE_RESEND = 1.0  # unacknowledged operations are resent after this long


class ClientNode:
    """A user's node. Feed it messages and time; carry out the effects it returns."""

    def __init__(self, config: ClientConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random(config.client_id)
        self.name = config.name
        self.client_id = config.client_id
        self.state = ClientState.DISCOVERING
        self.epoch = NO_EPOCH
        self.leader_id = 0
        self.leader_addr = ""
        self.servers: dict[int, str] = {}
        self.clock: VectorClock = EMPTY_CLOCK
        self.users: dict[str, UserInfo] = {}
        self.rooms: dict[str, RoomInfo] = {}
        self.pending: dict[int, Submit] = {}
        self.delivered_ids: set[str] = set()
        self._delivered_origins: set[Origin] = set()
        self.welcomed_once = False
        self._cmid = 0
        self._request = 0
        self._hold: HoldBack | None = None
        self._early: list[SessionFrame | RoomFrame] = []  # frames of the epoch before Welcome
        self._rejoin: list[str] = []
        self._wanted_rooms: set[str] = set()  # rooms we joined and did not leave
        self._directory: dict[int, list[RoomSummary]] = {}  # room directory answers
        self._automatic: set[int] = set()  # cmids the node submitted on its own (rejoins)
        self._logging_out = False
        self._last_nudge = float("-inf")
        self._welcomes: dict[tuple[Epoch, int], _WelcomeParts] = {}
        self._now = 0.0
        self._leader_heard = 0.0
        self._next_beat = 0.0
        self._next_retry = 0.0
        self._attempts = 0
        self._last_resend = 0.0

    # -- helpers -------------------------------------------------------------------
    def _become(
        self, state: ClientState, event: str, effects: list[Effect], detail: str = ""
    ) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise IllegalTransition("ClientNode", self.state, event)
        changed = state is not self.state
        self.state = state
        if changed:
            effects.append(Deliver(ConnectionChanged(state.value, detail)))

    def _register(self, effects: list[Effect]) -> None:
        cursor = self.clock if self.welcomed_once else None
        effects.append(
            Send(
                self.leader_addr,
                Register(
                    self.name, self.client_id, self.config.addr, cursor, self.config.multicast
                ),
            )
        )
        self._next_retry = self._now + self.config.timing.client_retry_interval
        self._attempts += 1

    def _discover(self, effects: list[Effect]) -> None:
        probe = Discover(self.config.addr, "client", self.rng.getrandbits(31), 0)
        effects.append(Broadcast(probe))
        effects.extend(Send(addr, probe) for _, addr in sorted(self.servers.items()))
        self._next_retry = self._now + self.config.timing.client_retry_interval

    def _switch_leader(
        self,
        leader_id: int,
        addr: str,
        epoch: Epoch,
        effects: list[Effect],
        servers: tuple[ServerInfo, ...] = (),
    ) -> None:
        self.leader_id = leader_id
        self.leader_addr = addr
        self.epoch = epoch
        self._leader_heard = self._now
        self._hold = None
        self._early = []
        self._attempts = 0
        effects.append(Deliver(LeaderLearned(leader_id, addr, epoch, servers)))
        target = ClientState.RESUMING if self.welcomed_once else ClientState.REGISTERING
        self._become(target, "leader", effects, f"leader {leader_id} epoch {epoch}")
        self._register(effects)

    # -- lifecycle -------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        problem = name_problem(self.name)
        if problem:
            self._become(ClientState.FAILED, "start", effects, problem)
            effects.append(Deliver(Failed(problem)))
            return effects
        self._leader_heard = now
        self._discover(effects)
        return effects

    def submit(self, op: Operation, now: float, ts: float) -> tuple[int, list[Effect]]:
        self._now = now
        if isinstance(op, Logout):
            self._logging_out = True
        elif isinstance(op, JoinRoom):
            self._wanted_rooms.add(op.room)
        elif isinstance(op, LeaveRoom):
            self._wanted_rooms.discard(op.room)
        self._cmid += 1
        message = Submit(self.client_id, self._cmid, op, self.clock, ts)
        if not self.pending:
            self._last_resend = now  # the silence-resend timer starts with the oldest op
        self.pending[self._cmid] = message
        effects: list[Effect] = []
        if self.state is ClientState.SERVING:
            effects.append(Send(self.leader_addr, message))
        return self._cmid, effects

    def request_history(
        self, room: str | None, peer: str | None, before: str | None, limit: int, now: float
    ) -> tuple[int, list[Effect]]:
        self._now = now
        self._request += 1
        dot = None
        if before:
            server, _, counter = before.partition(".")
            if server.isdigit() and counter.isdigit():
                dot = Dot(int(server), int(counter))
        effects: list[Effect] = []
        if self.leader_addr:
            effects.append(
                Send(
                    self.leader_addr,
                    HistoryRequest(self.client_id, self._request, room, peer, dot, limit),
                )
            )
        return self._request, effects

    def request_rooms(self, now: float) -> tuple[int, list[Effect]]:
        """Ask the leader for the room directory; it arrives as a RoomDirectory event."""
        self._now = now
        self._request += 1
        self._directory[self._request] = []
        effects: list[Effect] = []
        if self.leader_addr:
            effects.append(Send(self.leader_addr, RoomsRequest(self.client_id, self._request)))
        return self._request, effects

    def flush(self, now: float) -> list[Effect]:
        return []

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.state in (ClientState.FAILED, ClientState.CLOSED):
            return None
        timing = self.config.timing
        times = [self._next_retry] if self.state is not ClientState.SERVING else []
        if self.state is ClientState.SERVING:
            times.append(self._next_beat)
            times.append(self._leader_heard + timing.client_leader_timeout)
            if self._hold is not None and self._hold.stalled_since is not None:
                times.append(self._hold.stalled_since + GAP_TIMEOUT)
            if self.pending:
                times.append(self._last_resend + SILENCE_RESEND)
        return min(times) if times else None

    def tick(self, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        timing = self.config.timing
        state = self.state
        if state in (ClientState.FAILED, ClientState.CLOSED):
            return effects
        if state is ClientState.SERVING:
            if now >= self._next_beat:
                self._next_beat = now + timing.client_heartbeat_interval
                effects.append(Send(self.leader_addr, ClientBeat(self.client_id, self.epoch)))
            if now >= self._leader_heard + timing.client_leader_timeout:
                self._suspect_leader(effects, "no heartbeat from the leader")
            elif (
                self._hold is not None
                and self._hold.stalled_since is not None
                and now >= self._hold.stalled_since + GAP_TIMEOUT
            ):
                self._resume(effects, "a gap in the stream")
            elif self.pending and now >= self._last_resend + SILENCE_RESEND:
                self._last_resend = now
                for cmid in sorted(self.pending):
                    effects.append(Send(self.leader_addr, self.pending[cmid]))
            return effects
        if now < self._next_retry:
            return effects
        if state is ClientState.DISCOVERING or not self.leader_addr:
            self._discover(effects)
        elif self._attempts >= 4:
            self._suspect_leader(effects, f"leader {self.leader_id} does not answer")
        else:
            self._register(effects)
        return effects

    def _suspect_leader(self, effects: list[Effect], why: str) -> None:
        suspect = LeaderSuspect(self.client_id, self.config.addr, self.epoch)
        for sid, addr in sorted(self.servers.items()):
            if sid != self.leader_id:
                effects.append(Send(addr, suspect))
        self._attempts = 0
        self._hold = None
        self._become(ClientState.DISCOVERING, "suspect", effects, why)
        self._leader_heard = self._now
        self._discover(effects)

    def _resume(self, effects: list[Effect], why: str) -> None:
        self._hold = None
        self._early = []
        self._attempts = 0
        self._become(ClientState.RESUMING, "resume", effects, why)
        self._register(effects)

    # -- messages --------------------------------------------------------------------
    def handle(self, message: Message, src_addr: str, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        if self.state in (ClientState.FAILED, ClientState.CLOSED):
            return effects
        epoch = getattr(message, "epoch", None)
        if (
            isinstance(epoch, Epoch)
            and epoch < self.epoch
            and not isinstance(message, (DiscoverReply, LeaderAlive))
        ):
            return effects  # fenced: an old leader's frame
        if isinstance(epoch, Epoch) and epoch == self.epoch and src_addr == self.leader_addr:
            self._leader_heard = now
        match message:
            case DiscoverReply():
                self._on_discover_reply(message, effects)
            case NewLeader():
                for info in message.servers:
                    self.servers[info.server_id] = info.addr
                if message.epoch > self.epoch or self.state is ClientState.DISCOVERING:
                    self._switch_leader(
                        message.src, message.addr, message.epoch, effects, message.servers
                    )
            case NotLeader():
                if message.leader_id and message.leader_addr != self.leader_addr:
                    self._switch_leader(
                        message.leader_id, message.leader_addr, message.epoch, effects
                    )
            case LeaderAlive():
                if (
                    message.leader_addr
                    and message.epoch >= self.epoch
                    and self.state is not ClientState.SERVING
                ):
                    self._switch_leader(
                        message.leader_id, message.leader_addr, message.epoch, effects
                    )
            case Rejected():
                self._become(ClientState.FAILED, "rejected", effects, message.reason)
                effects.append(Deliver(Failed(message.reason)))
            case UserList():
                users = self._welcome_parts(message.epoch, message.token).users
                users.update((user.name, user) for user in message.users)
                self._try_welcome(effects)
            case Replay():
                entries = self._welcome_parts(message.epoch, message.token).entries
                entries.update((entry.id, entry) for entry in message.entries)
                self._try_welcome(effects)
            case Welcome():
                self._welcome_parts(message.epoch, message.token).welcome = message
                self._try_welcome(effects)
            case SessionFrame() | RoomFrame():
                self._on_frame(message, effects)
            case Ack():
                submitted = self.pending.pop(message.cmid, None)
                if submitted is not None:
                    if message.cmid in self._automatic:
                        self._automatic.discard(message.cmid)
                    else:
                        effects.append(Deliver(Sent(message.cmid, message.entry_id)))
                    if isinstance(submitted.op, Logout):
                        # Durably logged out: done, whether or not our own UserOffline
                        # frame reaches us (resuming now would log us back in).
                        self._become(ClientState.CLOSED, "logged-out", effects, "logged out")
            case OpError():
                if self.pending.pop(message.cmid, None) is not None:
                    if message.cmid in self._automatic:  # e.g. a rejoin of a room we are in
                        self._automatic.discard(message.cmid)
                    else:
                        effects.append(Deliver(OpFailed(message.cmid, message.reason)))
            case ClientHeartbeat():
                self._on_heartbeat(message, effects)
            case Resync():
                if self.state is ClientState.SERVING:
                    self._resume(effects, message.reason)
                elif self.state in (ClientState.REGISTERING, ClientState.RESUMING):
                    self._welcomes.clear()  # any Welcome on its way predates the merge
                    self._register(effects)
            case NameClash():
                self._on_name_clash(message, effects)
            case RoomsReply():
                parts = self._directory.get(message.request_id)
                if parts is not None:
                    parts.extend(message.rooms)
                    if message.done:
                        del self._directory[message.request_id]
                        effects.append(Deliver(RoomDirectory(message.request_id, tuple(parts))))
            case HistoryReply():
                effects.append(Deliver(HistoryLoaded(message.request_id, message.entries)))
        return effects

    def _on_discover_reply(self, msg: DiscoverReply, effects: list[Effect]) -> None:
        self.servers[msg.server_id] = msg.addr
        for info in msg.servers:
            self.servers[info.server_id] = info.addr
        if not msg.leader_id:
            return
        if msg.epoch < self.epoch:
            # Only an older leader answers: the newer one we followed is gone. Tell it the
            # epoch we know, so it leads on under a newer one we can accept.
            if self._now >= self._last_nudge + self.config.timing.client_leader_timeout:
                self._last_nudge = self._now
                effects.append(
                    Send(
                        msg.leader_addr, LeaderSuspect(self.client_id, self.config.addr, self.epoch)
                    )
                )
            return
        if self.state is ClientState.DISCOVERING or msg.epoch > self.epoch:
            self._switch_leader(msg.leader_id, msg.leader_addr, msg.epoch, effects, msg.servers)

    def _welcome_parts(self, epoch: Epoch, token: int) -> _WelcomeParts:
        key = (epoch, token)
        parts = self._welcomes.get(key)
        if parts is None:
            if len(self._welcomes) > 8:  # abandoned attempts: keep the newest few
                del self._welcomes[min(self._welcomes)]
            parts = self._welcomes[key] = _WelcomeParts()
        return parts

    def _try_welcome(self, effects: list[Effect]) -> None:
        """Complete a Welcome once all its UserList and Replay chunks are here (any order)."""
        for key in sorted(self._welcomes):
            parts = self._welcomes[key]
            msg = parts.welcome
            if msg is None or msg.epoch < self.epoch:
                continue
            if len(parts.users) != msg.user_count or len(parts.entries) != msg.replay_count:
                continue
            self._welcomes.clear()
            if self.state not in (ClientState.REGISTERING, ClientState.RESUMING):
                return
            for entry in sorted(parts.entries.values(), key=lambda e: e.key):
                self._deliver_chat(entry, effects)
            self._on_welcome(msg, list(parts.users.values()), effects)
            return

    def _on_welcome(self, msg: Welcome, users: list[UserInfo], effects: list[Effect]) -> None:
        self.epoch = msg.epoch
        self.leader_id = msg.leader_id
        self.leader_addr = msg.leader_addr
        for server in msg.servers:
            self.servers[server.server_id] = server.addr
        self.users = {u.name: u for u in users}
        effects.append(Deliver(UsersChanged(tuple(self.users[n] for n in sorted(self.users)))))
        old_rooms = self.rooms
        self.rooms = {info.room: info for info in msg.rooms}
        for room in sorted(old_rooms):
            if room in self.rooms:
                continue
            effects.append(LeaveGroup(old_rooms[room].group))
            if room in self._wanted_rooms:
                # We never left it: the servers dropped us (a partition outlasted the client
                # timeout on the other side). Join again instead of reporting a leave.
                self._rejoin = sorted({*self._rejoin, room})
            else:
                effects.append(Deliver(RoomExited(room)))
        for room in sorted(self.rooms):
            info = self.rooms[room]
            if room not in old_rooms or old_rooms[room].group != info.group:
                if room in old_rooms:
                    effects.append(LeaveGroup(old_rooms[room].group))
                effects.append(JoinGroup(info.group))
                effects.append(Deliver(RoomEntered(info)))
            elif old_rooms[room].members != info.members:
                effects.append(Deliver(MembersChanged(room, info.members)))
        self._hold = HoldBack(self.name, msg.gsn, msg.rooms)
        self._become(
            ClientState.SERVING, "welcome", effects, f"leader {msg.leader_id} epoch {msg.epoch}"
        )
        self._next_beat = self._now
        if not self.welcomed_once:
            self.welcomed_once = True
            effects.append(Deliver(Ready(self.name, msg.leader_id, msg.leader_addr, msg.epoch)))
        self._last_resend = self._now
        rejoin, self._rejoin = self._rejoin, []
        for room in rejoin:
            if room not in self.rooms:
                self._cmid += 1
                self.pending[self._cmid] = Submit(
                    self.client_id,
                    self._cmid,
                    JoinRoom(room),
                    self.clock,
                    self._now + self.config.wall_offset,
                )
                self._automatic.add(self._cmid)  # ours, not the user's: no Sent/OpFailed
        for cmid in sorted(self.pending):
            effects.append(Send(self.leader_addr, self.pending[cmid]))
        early, self._early = self._early, []
        for frame in early:
            if frame.epoch == self.epoch:
                self._on_frame(frame, effects)

    def _on_frame(self, frame: SessionFrame | RoomFrame, effects: list[Effect]) -> None:
        hold = self._hold
        if hold is None or self.state is not ClientState.SERVING or frame.epoch != self.epoch:
            if frame.epoch >= self.epoch and len(self._early) < 10_000:
                self._early.append(frame)
            return
        if not hold.offer(frame):
            return
        while True:
            ready = hold.next_ready(self._now)
            if ready is None:
                return
            self._apply_frame(ready, effects)
            if self._hold is not hold:
                return

    def _apply_frame(self, frame: SessionFrame | RoomFrame, effects: list[Effect]) -> None:
        entry = frame.entry
        body = entry.body
        self.clock = self.clock.merge(entry.clock)
        match body:
            case Chat():
                self._deliver_chat(entry, effects)
            case UserOnline(name=name, addr=addr):
                self.users[name] = UserInfo(name, addr, "online", entry.ts)
                self._users_changed(effects)
            case UserOffline(name=name, client_id=client_id, reason=reason):
                if name == self.name:
                    if self._logging_out and client_id == self.client_id:
                        self._become(ClientState.CLOSED, "logged-out", effects, "logged out")
                    else:
                        # Our name went offline: the leader stopped hearing us (a one-way
                        # link), or the log merged another session's logout of this name
                        # (which takes the name's rooms along). Log in again; the Welcome
                        # says which rooms we are in.
                        self._resume(effects, f"the name {name} was logged out ({reason})")
                    return
                self.users.pop(name, None)
                self._users_changed(effects)
                for room in sorted(self.rooms):  # a user who leaves leaves every room
                    info = self.rooms[room]
                    if name in info.members:
                        members = tuple(m for m in info.members if m != name)
                        self.rooms[room] = RoomInfo(room, info.group, members, info.head)
                        effects.append(Deliver(MembersChanged(room, members)))
            case UserStatus(name=name, away=away):
                user = self.users.get(name)
                if user is not None:
                    self.users[name] = UserInfo(
                        name, user.addr, "away" if away else "online", entry.ts
                    )
                    self._users_changed(effects)
            case RoomJoined(room=room, name=name):
                if name == self.name and isinstance(frame, SessionFrame) and frame.room:
                    self.rooms[room] = frame.room
                    assert self._hold is not None
                    self._hold.join(frame.room)
                    effects.append(JoinGroup(frame.room.group))
                    effects.append(Deliver(RoomEntered(frame.room)))
                elif room in self.rooms:
                    info = self.rooms[room]
                    members = tuple(sorted({*info.members, name}))
                    self.rooms[room] = RoomInfo(room, info.group, members, info.head)
                    effects.append(Deliver(MembersChanged(room, members)))
            case RoomLeft(room=room, name=name):
                known = self.rooms.get(room)
                if known is None:
                    return
                info = known
                if name == self.name:
                    del self.rooms[room]
                    assert self._hold is not None
                    self._hold.leave(room)
                    effects.append(LeaveGroup(info.group))
                    effects.append(Deliver(RoomExited(room)))
                else:
                    members = tuple(m for m in info.members if m != name)
                    self.rooms[room] = RoomInfo(room, info.group, members, info.head)
                    effects.append(Deliver(MembersChanged(room, members)))

    def _users_changed(self, effects: list[Effect]) -> None:
        effects.append(Deliver(UsersChanged(tuple(self.users[n] for n in sorted(self.users)))))

    def _deliver_chat(self, entry: Entry, effects: list[Effect]) -> None:
        self.clock = self.clock.merge(entry.clock)
        if entry.id in self.delivered_ids:
            return
        if entry.origin is not None:
            # The same resent message may have been recorded on both sides of a partition.
            if entry.origin in self._delivered_origins:
                return
            self._delivered_origins.add(entry.origin)
        self.delivered_ids.add(entry.id)
        effects.append(Deliver(ChatDelivered(entry)))

    def _on_heartbeat(self, msg: ClientHeartbeat, effects: list[Effect]) -> None:
        if msg.epoch != self.epoch or self._hold is None or self.state is not ClientState.SERVING:
            return
        self._leader_heard = self._now
        heads = {touch.name: touch.gsn for touch in msg.room_heads}
        if self._hold.behind(msg.session_head, heads) and self._hold.stalled_since is None:
            self._hold.stalled_since = self._now

    def _on_name_clash(self, msg: NameClash, effects: list[Effect]) -> None:
        if msg.name != self.name:
            return
        taken = set(self.users)
        for suffix in range(2, 1000):
            candidate = f"{self.name[: 32 - len(str(suffix)) - 1]}_{suffix}"
            if candidate not in taken:
                break
        old, self.name = self.name, candidate
        # The rooms joined under the old name went with it: join them again as the new name.
        self._rejoin = sorted(set(self._rejoin) | set(self.rooms))
        effects.append(Deliver(Renamed(old, candidate, msg.reason)))
        self.welcomed_once = True
        self._resume(effects, "name clash")

    def logout(self, now: float, ts: float) -> tuple[int, list[Effect]]:
        """Ask to log out; the leader's UserOffline for us closes the node."""
        return self.submit(Logout(), now, ts)
