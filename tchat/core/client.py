"""The client node: finds the leader, registers, sends, and delivers exactly once in causal
order across failovers (sans-IO).

The node's phase (client_states.ClientPhase) is one value that carries what only that phase
has: the retry timer and unanswered Registers of Discovering, Registering and Resuming, and
the hold-back queue, beat and resend timers of Serving. Only ``_become`` assigns it, along
the one (state, event) -> state table. What outlives a phase stays on the node and no
transition touches it: who the leader is and when we last heard it (``_leader_heard``, and
``_probed_for``, the silence our last probe asked about), the pending operations and the
counters that number them, and the nudge we sent an older leader (its answer comes once we
discover again).

Longer than 400 lines: discovering, registering, serving and resuming share the leader's
address, the pending operations and the fencing of old epochs in ``handle``, and split
apart each would reach into the others; what the stream does to the users, rooms and clock
lives in inbox.py."""

from __future__ import annotations

import random

from tchat.core.client_states import (
    BARE_PHASES,
    ClientEvent,
    ClientPhase,
    ClientState,
    Discovering,
    Registering,
    Resuming,
    RetryingPhase,
    Serving,
    next_state,
)
from tchat.core.config import ClientConfig
from tchat.core.delivery import Frame, HoldBack
from tchat.core.effects import (
    Broadcast,
    ConnectionChanged,
    Deliver,
    Effect,
    Failed,
    HistoryLoaded,
    KeysListed,
    LeaderLearned,
    OpFailed,
    Ready,
    Renamed,
    RoomDirectory,
    RoomEntered,
    RoomExited,
    Send,
    Sent,
)
from tchat.core.errors import IllegalTransition
from tchat.core.inbox import Inbox
from tchat.core.messages import (
    LOBBY,
    NO_EPOCH,
    RELEASED_REASON,
    UNSIGNED,
    Ack,
    ClientBeat,
    ClientHeartbeat,
    Discover,
    DiscoverReply,
    Dot,
    Epoch,
    HistoryReply,
    HistoryRequest,
    JoinRoom,
    KeysReply,
    KeysRequest,
    LeaderAlive,
    LeaderSuspect,
    LobbyBeat,
    LobbyFrame,
    Logout,
    Message,
    NameClash,
    NewLeader,
    NotLeader,
    Operation,
    OpError,
    Register,
    Rejected,
    Replay,
    Resync,
    RoomFrame,
    RoomInfo,
    RoomList,
    RoomsReply,
    RoomsRequest,
    RoomSummary,
    ServerInfo,
    SessionFrame,
    Submit,
    UserInfo,
    UserList,
    Welcome,
    released_notice,
)
from tchat.core.names import checked_name
from tchat.core.projection import client_tag
from tchat.core.vclock import EMPTY_CLOCK, VectorClock
from tchat.core.wakeup import WakeWatch

GAP_TIMEOUT = 0.5  # a hole in the stream this old is repaired by resuming
SILENCE_RESEND = 1.0  # unacknowledged operations are resent after this long unanswered
PROBE_AFTER = 2 / 3  # of client_leader_timeout: silence this long asks for a heartbeat
# Room directory answers being gathered: the latest requests only (one asked while no
# leader answers is never answered), and at most this many rooms each, whatever a
# leader's chunks claim.
DIRECTORY_REQUESTS = 4
DIRECTORY_ROOMS = 100_000


class ClientNode:
    """A user's node. Feed it messages and time; carry out the effects it returns."""

    def __init__(self, config: ClientConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random(config.client_id)
        self.name = config.name
        self.client_id = config.client_id
        self.phase: ClientPhase = Discovering(retry_at=0.0)
        # What frames call our operations and logins by (no client sees another's ID).
        self.client_tag = client_tag(config.client_id)
        self.epoch = NO_EPOCH
        self.leader_id = 0
        self.leader_addr = ""
        self.servers: dict[int, str] = {}
        self.clock: VectorClock = EMPTY_CLOCK
        self.users: dict[str, UserInfo] = {}
        self.rooms: dict[str, RoomInfo] = {}
        self.pending: dict[int, Submit] = {}
        self.welcomed_once = False
        self._cmid = 0
        self._request = 0
        self.lobby_group = ""  # the lobby's multicast group, once welcomed
        self._directory: dict[int, list[RoomSummary]] = {}  # room directory answers
        self._automatic: set[int] = set()  # cmids the node submitted on its own (rejoins)
        self._logging_out = False
        self._last_nudge = float("-inf")
        # (address, epoch) of the older leader we told of our newer epoch, and that epoch
        self._nudged: tuple[str, Epoch, Epoch] | None = None
        self._now = 0.0
        self._leader_heard = 0.0
        beat = config.timing.client_heartbeat_interval
        self._wake = WakeWatch(late_after=beat, grace=beat / 2)
        self._probed_for = 0.0  # the _leader_heard our last probe was about
        # (epoch, LobbyBeat.beat) of the last beat taken for a sign of life: an equal or
        # older one of that epoch is a replay (issue 15), never a sign the leader lives
        self._last_beat: tuple[Epoch, int] | None = None
        self.counters: dict[str, int] = {}  # reason -> messages dropped for it
        self._registers = 0  # Registers ever sent (Register.attempt)
        self.inbox = Inbox(self)

    @property
    def now(self) -> float:
        """The time of the step being taken."""
        return self._now

    @property
    def state(self) -> ClientState:
        """The connection state: the phase's kind."""
        return self.phase.state

    @property
    def holdback(self) -> HoldBack | None:
        """The hold-back queue of the stream we follow: only while serving."""
        return self.phase.holdback if isinstance(self.phase, Serving) else None

    # -- helpers -------------------------------------------------------------------
    def _become(
        self, event: ClientEvent, detail: str = "", phase: ClientPhase | None = None
    ) -> list[Effect]:
        """The only place the phase changes: to the state the table in client_states gives
        for (our state, ``event``). A phase with data (all but Failed and Closed) comes
        ready-made; nothing of the old phase carries over unless the caller put it there."""
        state = next_state(self.state, event)
        if phase is None and state is not None:
            phase = BARE_PHASES.get(state)
        if phase is None or phase.state is not state:
            raise IllegalTransition("ClientNode", self.state, event.value)
        changed = state is not self.state
        self.phase = phase
        return [Deliver(ConnectionChanged(state.value, detail))] if changed else []

    def _retry_at(self) -> float:
        return self._now + self.config.timing.client_retry_interval

    def _retrying(self) -> RetryingPhase:
        """The phase, which the caller knows retries on a timer (a bug if it does not)."""
        phase = self.phase
        if not isinstance(phase, (Discovering, Registering, Resuming)):
            raise IllegalTransition("ClientNode", self.state, "retry")
        return phase

    def _register(self) -> list[Effect]:
        phase = self._retrying()
        if isinstance(phase, Discovering):
            raise IllegalTransition("ClientNode", self.state, "register")
        cursor = self.clock if isinstance(phase, Resuming) else None
        self._registers += 1
        register = Send(
            self.leader_addr,
            Register(
                self.name,
                self.client_id,
                self.config.addr,
                cursor,
                self.config.multicast,
                self.config.lobby,
                self._registers,
                self.config.identity,
                UNSIGNED,  # signed by whoever carries it, for the session it goes out on
            ),
        )
        phase.retry_at = self._retry_at()
        phase.attempts += 1
        return [register]

    def _discover(self) -> list[Effect]:
        probe = Discover(self.config.addr, "client", self.rng.getrandbits(31), 0)
        effects: list[Effect] = [Broadcast(probe)]
        effects.extend(Send(addr, probe) for _, addr in sorted(self.servers.items()))
        self._retrying().retry_at = self._retry_at()
        return effects

    def _switch_leader(
        self,
        leader_id: int,
        addr: str,
        epoch: Epoch,
        servers: tuple[ServerInfo, ...] = (),
    ) -> list[Effect]:
        self.leader_id = leader_id
        self.leader_addr = addr
        self.epoch = epoch
        self._leader_heard = self._now
        effects: list[Effect] = [Deliver(LeaderLearned(leader_id, addr, epoch, servers))]
        event = ClientEvent.LEADER_AGAIN if self.welcomed_once else ClientEvent.LEADER
        effects += self._start_over(event, f"leader {leader_id} epoch {epoch}")
        return effects

    # -- lifecycle -------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        self._now = now
        typed = self.name
        self.name, problem = checked_name(typed)
        if problem:
            return [*self._become(ClientEvent.INVALID_NAME, problem), Deliver(Failed(problem))]
        self._leader_heard = now
        effects: list[Effect] = []
        if self.name != typed:
            # The leader takes only the normal form: register under it, and say so.
            reason = f"names are NFKC-normalised: {typed!r} is {self.name!r}"
            effects.append(Deliver(Renamed(typed, self.name, reason)))
        effects += self._discover()
        return effects

    def submit(self, op: Operation, now: float, ts: float) -> tuple[int, list[Effect]]:
        self._now = now
        if isinstance(op, Logout):
            self._logging_out = True
        message = self.next_submit(op, ts)
        effects: list[Effect] = []
        if isinstance(self.phase, Serving):
            if not self.pending:
                # The silence-resend timer starts with the oldest op (a Welcome starts it
                # for those submitted before).
                self.phase.last_resend = now
            effects.append(Send(self.leader_addr, message))
        self.pending[self._cmid] = message
        return self._cmid, effects

    def next_submit(self, op: Operation, ts: float) -> Submit:
        """Operation ``op`` under our next cmid; the caller makes it pending or sends it."""
        self._cmid += 1
        return Submit(self.client_id, self._cmid, op, self.clock, ts)

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
        while len(self._directory) > DIRECTORY_REQUESTS:
            del self._directory[min(self._directory)]
        effects: list[Effect] = []
        if self.leader_addr:
            effects.append(Send(self.leader_addr, RoomsRequest(self.client_id, self._request)))
        return self._request, effects

    def request_keys(self, now: float) -> tuple[int, list[Effect]]:
        """Ask the leader for the account's keys (``/devices``): a KeysListed event."""
        self._now = now
        self._request += 1
        effects: list[Effect] = []
        if self.leader_addr:
            effects.append(Send(self.leader_addr, KeysRequest(self.client_id, self._request)))
        return self._request, effects

    def flush(self, now: float) -> list[Effect]:
        """The driver's end-of-iteration hook (CoreNode); a client batches nothing, so it has
        nothing to send here: every step returns its frames at once."""
        return []

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self._wake.promised(self._next_deadline())

    def _suspect_at(self) -> float:
        """When the leader's silence makes us suspect it (never while we ran late)."""
        silent = self._leader_heard + self.config.timing.client_leader_timeout
        return max(silent, self._wake.judge_after)

    def _next_deadline(self) -> float | None:
        phase = self.phase
        if isinstance(phase, (Discovering, Registering, Resuming)):
            return phase.retry_at
        if not isinstance(phase, Serving):
            return None
        timing = self.config.timing
        times = [phase.next_beat]
        if self._probed_for != self._leader_heard:
            times.append(self._leader_heard + timing.client_leader_timeout * PROBE_AFTER)
        times.append(self._suspect_at())
        if phase.holdback.stalled_since is not None:
            times.append(phase.holdback.stalled_since + GAP_TIMEOUT)
        if self.pending:
            times.append(phase.last_resend + SILENCE_RESEND)
        return min(times)

    def tick(self, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        timing = self.config.timing
        phase = self.phase
        if not isinstance(phase, (Discovering, Registering, Resuming, Serving)):
            return effects  # failed or closed: no timers
        self._wake.woke(now)  # woken late, we were the silent one: read before judging
        if isinstance(phase, Serving):
            # Silent past PROBE_AFTER of the timeout (LobbyBeats lost, or we are a unicast
            # client the leader forgot): ask over the session once before suspecting.
            probe = (
                now >= self._leader_heard + timing.client_leader_timeout * PROBE_AFTER
                and self._probed_for != self._leader_heard
            )
            if now >= phase.next_beat or probe:
                # Three beats per client_timeout: the session is TCP, a beat is not lost
                # while it lives, and each one is a frame the leader must read.
                phase.next_beat = now + timing.client_timeout / 3
                if probe:
                    self._probed_for = self._leader_heard
                beat = ClientBeat(self.client_id, self.epoch, phase.holdback.last, probe)
                effects.append(Send(self.leader_addr, beat))
            stalled = phase.holdback.stalled_since
            if now >= self._suspect_at():
                effects += self._suspect_leader("no heartbeat from the leader")
            elif stalled is not None and now >= stalled + GAP_TIMEOUT:
                effects += self._resume("a gap in the stream")
            elif self.pending and now >= phase.last_resend + SILENCE_RESEND:
                phase.last_resend = now
                for cmid in sorted(self.pending):
                    effects.append(Send(self.leader_addr, self.pending[cmid]))
            return effects
        if now < phase.retry_at:
            return effects
        if isinstance(phase, Discovering) or not self.leader_addr:
            effects += self._discover()
        elif phase.attempts >= 4:
            effects += self._suspect_leader(f"leader {self.leader_id} does not answer")
        else:
            effects += self._register()
        return effects

    def _suspect_leader(self, why: str) -> list[Effect]:
        suspect = LeaderSuspect(self.client_id, self.config.addr, self.epoch)
        effects: list[Effect] = [
            Send(addr, suspect)
            for sid, addr in sorted(self.servers.items())
            if sid != self.leader_id
        ]
        # The stream and the unanswered Registers end with the phase they belonged to.
        effects += self._become(ClientEvent.SUSPECT, why, Discovering(self._retry_at()))
        self._leader_heard = self._now
        effects += self._discover()
        return effects

    def _resume(self, why: str) -> list[Effect]:
        return self._start_over(ClientEvent.RESUME, why)

    def _start_over(self, event: ClientEvent, detail: str) -> list[Effect]:
        """(Re)register from scratch: no stream yet (it ended with Serving), no Register
        unanswered yet, and only a Welcome answering a Register from here on counts."""
        self.inbox.end_stream(self._registers + 1)
        fresh = Registering if event is ClientEvent.LEADER else Resuming
        effects = self._become(event, detail, fresh(self._retry_at()))
        effects += self._register()
        return effects

    # -- messages --------------------------------------------------------------------
    def handle(self, message: Message, src_addr: str, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        if self.state in (ClientState.FAILED, ClientState.CLOSED):
            if self.state is ClientState.FAILED and type(message) is Welcome:
                # A late copy of a Register we gave up on (refused, then the name freed)
                # logged us in: log out at once rather than stay a ghost until our timeout.
                logout = self.next_submit(Logout(), now + self.config.wall_offset)
                effects.append(Send(message.leader_addr, logout))
            return effects
        epoch = getattr(message, "epoch", None)
        if (
            isinstance(epoch, Epoch)
            and epoch < self.epoch
            and not isinstance(message, (DiscoverReply, LeaderAlive))
        ):
            return effects  # fenced: an old leader's frame
        if (
            isinstance(epoch, Epoch)
            and epoch == self.epoch
            and src_addr == self.leader_addr
            # The lobby's datagrams are signed but may be replayed (no window refuses a
            # lobby frame, and its source is forged at will): only a newer beat is a
            # sign of life (_on_lobby_beat; issue 15).
            and type(message) is not LobbyBeat
            and type(message) is not LobbyFrame
        ):
            self._leader_heard = now
        match message:
            case DiscoverReply():
                effects += self._on_discover_reply(message)
            case NewLeader():
                for info in message.servers:
                    self.servers[info.server_id] = info.addr
                if message.epoch > self.epoch or self.state is ClientState.DISCOVERING:
                    effects += self._switch_leader(
                        message.src, message.addr, message.epoch, message.servers
                    )
            case NotLeader():
                if message.leader_id and message.leader_addr != self.leader_addr:
                    effects += self._switch_leader(
                        message.leader_id, message.leader_addr, message.epoch
                    )
            case LeaderAlive():
                if (
                    message.leader_addr
                    and (message.epoch >= self.epoch or self._vouched(message))
                    and self.state is not ClientState.SERVING
                ):
                    effects += self._switch_leader(
                        message.leader_id, message.leader_addr, message.epoch
                    )
            case Rejected():
                effects += self._become(ClientEvent.REJECTED, message.reason)
                effects.append(Deliver(Failed(message.reason)))
            case UserList():
                users = self.inbox.snapshot(message.epoch, message.snapshot)
                users.update((user.name, user) for user in message.users)
                effects += self._try_welcome()
            case Replay():
                entries = self.inbox.parts(message.epoch, message.token).entries
                entries.update((entry.id, entry) for entry in message.entries)
                effects += self._try_welcome()
            case RoomList():
                rooms = self.inbox.parts(message.epoch, message.token).rooms
                rooms.update((info.room, info) for info in message.rooms)
                effects += self._try_welcome()
            case Welcome():
                self.inbox.parts(message.epoch, message.token).welcome = message
                effects += self._try_welcome()
            case SessionFrame() | RoomFrame() | LobbyFrame():
                effects += self._on_frame(message)
            case Ack():
                effects += self.acknowledged(message.cmid, message.entry_id)
            case OpError():
                effects += self._answered(message.cmid, OpFailed(message.cmid, message.reason))[1]
            case ClientHeartbeat():
                self._on_heartbeat(message)
            case LobbyBeat():
                self._on_lobby_beat(message)
            case Resync():
                if self.state is ClientState.SERVING:
                    effects += self._resume(message.reason)
                elif self.state in (ClientState.REGISTERING, ClientState.RESUMING):
                    self.inbox.forget_welcomes()  # any on its way predates the merge
                    effects += self._register()
            case NameClash():
                effects += self._on_name_clash(message)
            case RoomsReply():
                parts = self._directory.get(message.request_id)
                if parts is not None:
                    parts.extend(message.rooms[: max(0, DIRECTORY_ROOMS - len(parts))])
                    if message.done:
                        del self._directory[message.request_id]
                        effects.append(Deliver(RoomDirectory(message.request_id, tuple(parts))))
            case HistoryReply():
                effects.append(Deliver(HistoryLoaded(message.request_id, message.entries)))
            case KeysReply(request_id=request_id, keys=keys, yours=yours):
                effects.append(Deliver(KeysListed(request_id, keys, yours)))
        return effects

    def _try_welcome(self) -> list[Effect]:
        registering = isinstance(self.phase, (Registering, Resuming))
        welcomed, effects = self.inbox.try_welcome(registering)
        if welcomed is not None:
            effects += self._welcomed(*welcomed)
        return effects

    def _welcomed(self, msg: Welcome, holdback: HoldBack) -> list[Effect]:
        """The inbox applied a complete Welcome: serve the stream ``holdback`` starts,
        send what is pending, and apply the frames that came before it."""
        # A beat at once, and the silence-resend timer starts over: the resend is below.
        serving = Serving(holdback, next_beat=self._now, last_resend=self._now)
        detail = f"leader {msg.leader_id} epoch {msg.epoch}"
        effects = self._become(ClientEvent.WELCOMED, detail, serving)
        if not self.welcomed_once:
            self.welcomed_once = True
            ready = Ready(self.name, msg.leader_id, msg.leader_addr, msg.epoch, msg.peers)
            effects.append(Deliver(ready))
        for room in self.inbox.take_rejoins():
            if room not in self.rooms:
                rejoin_op = self.next_submit(JoinRoom(room), self._now + self.config.wall_offset)
                self.pending[rejoin_op.cmid] = rejoin_op
                self._automatic.add(rejoin_op.cmid)  # ours, not the user's: no Sent/OpFailed
        for cmid in sorted(self.pending):
            effects.append(Send(self.leader_addr, self.pending[cmid]))
        for frame in self.inbox.take_early_frames():
            if frame.epoch == self.epoch:
                effects += self._on_frame(frame)
        return effects

    def _on_frame(self, frame: Frame) -> list[Effect]:
        outcome, effects = self.inbox.on_frame(frame, self.holdback)
        if outcome.beat_now and isinstance(self.phase, Serving):
            # A beat now tells the leader we are in the group: it stops sending this
            # room's frames over our session too (ClientStreams.joined).
            self.phase.next_beat = self._now
        offline = outcome.offline
        if offline is None:
            return effects
        if self._logging_out and offline.client_id == self.client_tag:
            effects += self._become(ClientEvent.LOGGED_OUT, "logged out")
        elif offline.reason == RELEASED_REASON:
            # An operator took the name from this key: logging in again would claim it
            # straight back, so stop and say why.
            reason = released_notice(self.name)
            effects += self._become(ClientEvent.REJECTED, reason)
            effects.append(Deliver(Failed(reason)))
        else:
            # Not our logout: log in again; the Welcome says which rooms we are in.
            effects += self._resume(f"the name {self.name} was logged out ({offline.reason})")
        if offline.users_changed:
            effects.append(self.inbox.users_changed())
        return effects

    def acknowledged(self, cmid: int, entry_id: str) -> list[Effect]:
        """Operation ``cmid`` is durable as ``entry_id``: by an Ack, or by our own room
        message coming back in the room's stream (the leader streams only what every live
        backup stores, so it sends no Ack for that: see PROTOCOL.md, acknowledgements)."""
        submitted, effects = self._answered(cmid, Sent(cmid, entry_id))
        if submitted is not None and isinstance(submitted.op, Logout):
            # Durably logged out: done, whether or not our own UserOffline
            # frame reaches us (resuming now would log us back in).
            effects += self._become(ClientEvent.LOGGED_OUT, "logged out")
        return effects

    def _answered(self, cmid: int, event: Sent | OpFailed) -> tuple[Submit | None, list[Effect]]:
        """Settle pending operation ``cmid`` (None if it is not pending): the user hears
        ``event``, unless the operation was ours (a rejoin after a rename, say)."""
        submitted = self.pending.pop(cmid, None)
        shown = cmid in self.inbox.joins_shown
        self.inbox.joins_shown.discard(cmid)
        if submitted is not None:
            # The leader is answering: what is still pending is queued behind this, not
            # lost. Resending it anyway, once a second while any was pending, cost a busy
            # sender's leader a second copy of everything in flight, and gave an overloaded
            # one (answers slower than a second) all of it again every second.
            if isinstance(self.phase, Serving):
                self.phase.last_resend = self._now
            if cmid in self._automatic:
                self._automatic.discard(cmid)
                if isinstance(event, OpFailed) and isinstance(submitted.op, JoinRoom):
                    # Our rejoin after a rename was refused (a private room of the old
                    # name's): the room is gone for us, and the user is told.
                    return submitted, [Deliver(RoomExited(submitted.op.room)), Deliver(event)]
            else:
                op = submitted.op
                info = self.rooms.get(op.room) if isinstance(op, JoinRoom) else None
                if isinstance(event, Sent) and info is not None and not shown:
                    # The account was in the room already (another terminal joined it):
                    # the leader answered with that join. Shown as a join shows it.
                    return submitted, [Deliver(RoomEntered(info)), Deliver(event)]
                return submitted, [Deliver(event)]
        return submitted, []

    def _on_discover_reply(self, msg: DiscoverReply) -> list[Effect]:
        self.servers[msg.server_id] = msg.addr
        for info in msg.servers:
            self.servers[info.server_id] = info.addr
        if not msg.leader_id:
            return []
        if msg.epoch < self.epoch:
            # Only an older leader answers: the newer one we followed is gone. Tell it the
            # epoch we know, so it leads on under a newer one we can accept.
            if self._now >= self._last_nudge + self.config.timing.client_leader_timeout:
                self._last_nudge = self._now
                self._nudged = (msg.leader_addr, msg.epoch, self.epoch)
                suspect = LeaderSuspect(self.client_id, self.config.addr, self.epoch)
                return [Send(msg.leader_addr, suspect)]
            return []
        if self.state is ClientState.DISCOVERING or msg.epoch > self.epoch:
            return self._switch_leader(msg.leader_id, msg.leader_addr, msg.epoch, msg.servers)
        return []

    def _vouched(self, msg: LeaderAlive) -> bool:
        """An older leader we nudged answers for itself that it leads: follow it. Servers
        never take a client's epoch (a client's word is not proof), so the leader we knew
        of may well be newer than any leader left; this leader, still leading at or past
        the epoch it had when we nudged it, is the one to follow (DESIGN's availability:
        better a leader than none; a newer one, should it reappear, is followed again)."""
        nudged = self._nudged
        return (
            nudged is not None
            and self.state is ClientState.DISCOVERING
            and msg.src == msg.leader_id
            and msg.leader_addr == nudged[0]
            and msg.epoch >= nudged[1]
            and self.epoch == nudged[2]
        )

    def _on_heartbeat(self, msg: ClientHeartbeat) -> None:
        holdback = self.holdback
        if msg.epoch != self.epoch or holdback is None:
            return
        self._leader_heard = self._now
        heads = {touch.name: touch.gsn for touch in msg.room_heads}
        if holdback.behind(msg.session_head, heads) and holdback.stalled_since is None:
            holdback.stalled_since = self._now

    def count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def _on_lobby_beat(self, msg: LobbyBeat) -> None:
        holdback = self.holdback
        if msg.epoch != self.epoch or holdback is None:
            return
        last = self._last_beat
        if last is not None and last[0] == msg.epoch and msg.beat <= last[1]:
            # Signed, so genuine, but one we have had: a capture replayed after the
            # leader died must not hold off our failover (issue 15).
            self.count("replayed-beat")
            return
        self._last_beat = (msg.epoch, msg.beat)
        self._leader_heard = self._now
        if (
            self.config.lobby
            and holdback.behind(0, {LOBBY: msg.lobby_head})
            and holdback.stalled_since is None
        ):
            holdback.stalled_since = self._now

    def _on_name_clash(self, msg: NameClash) -> list[Effect]:
        if msg.name != self.name:
            return []
        taken = set(self.users)
        for suffix in range(2, 1000):
            candidate = f"{self.name[: 32 - len(str(suffix)) - 1]}_{suffix}"
            if candidate not in taken:
                break
        old, self.name = self.name, candidate
        # The rooms joined under the old name went with it: join them again as the new name.
        self.inbox.rooms_to_rejoin = sorted(set(self.inbox.rooms_to_rejoin) | set(self.rooms))
        effects: list[Effect] = [Deliver(Renamed(old, candidate, msg.reason))]
        self.welcomed_once = True
        effects += self._resume("name clash")
        return effects
