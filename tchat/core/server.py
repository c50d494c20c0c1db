"""The server node: a replica on the ring that follows, elects, or leads (sans-IO).

Longer than 400 lines: the node owns its phase (``become`` is the only place it changes)
and what every phase shares (the log and its fold, the epoch, the peers, the timers), so it
keeps the dispatch of every message (``handle``) and every timer (``tick``,
``next_deadline``) in one place. The work of each phase is already elsewhere (following.py,
candidacy.py, leader.py with desk.py and stream.py; the answers to discovery and status in
server_replies.py). Split, the dispatch would send a reader following one message through
two files again, the wandering path issue 14 removed."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

from tchat.core import codec
from tchat.core.archive import LogArchive
from tchat.core.candidacy import Candidacy
from tchat.core.config import ServerConfig
from tchat.core.effects import (
    Broadcast,
    DurableState,
    Effect,
    LogEvent,
    Persist,
    Send,
    Stopped,
)
from tchat.core.election import LcrElection
from tchat.core.errors import IllegalTransition
from tchat.core.fold import ClusterState
from tchat.core.following import Following
from tchat.core.leader import Leadership
from tchat.core.log import ReplicatedLog
from tchat.core.log_fold import LogFold
from tchat.core.messages import (
    MAX_SERVERS,
    NO_EPOCH,
    Admit,
    Append,
    AppendAck,
    ClientBeat,
    ClusterStatusRequest,
    Discover,
    DiscoverReply,
    Election,
    ElectionAck,
    Entry,
    Epoch,
    Heartbeat,
    HistoryRequest,
    JoinRequest,
    KeysRequest,
    LeaderSuspect,
    Leaving,
    Message,
    NewLeader,
    NotLeader,
    OpError,
    PasswordLogin,
    Register,
    Rejected,
    RoomsRequest,
    ServerInfo,
    StaleEpoch,
    StatusRequest,
    StepDown,
    Submit,
    SyncData,
    SyncRequest,
)
from tchat.core.roles import (
    BARE_PHASES,
    DISCOVERY_INTERVAL,
    TRANSITIONS,
    Joining,
    Leading,
    ServerPhase,
    ServerRole,
    Syncing,
)
from tchat.core.server_replies import discover_reply, status_reply
from tchat.core.wakeup import WakeWatch


class ServerNode:
    """One server. Feed it messages and time; carry out the effects it returns."""

    def __init__(
        self,
        config: ServerConfig,
        durable: DurableState | None = None,
        rng: random.Random | None = None,
        archive: LogArchive | None = None,
    ) -> None:
        self.config = config
        self.server_id = config.server_id
        self.rng = rng or random.Random(config.server_id)
        self.log = ReplicatedLog(archive, config.hot_entries)
        self.fold = LogFold(self.log, config)
        if archive is not None and len(archive):
            # A restart over a store that holds the log: rebuild from it, entry by entry.
            for entry in self.log.restore():
                if not self.log.is_duplicate(entry):
                    self.state.apply(entry)
        self.phase: ServerPhase = Joining()
        self.epoch = NO_EPOCH
        self.leader_id = 0
        self.leader_addr = ""
        self.max_term = 0
        self.peers: dict[int, str] = {}
        self.peer_heard: dict[int, float] = {}  # server ID -> last time it sent us anything
        self.election = LcrElection(self.server_id)
        self.candidacy = Candidacy(self)
        self.following = Following(self)
        self.counters: dict[str, int] = {}
        self._token = 0
        self._now = 0.0
        beat = config.timing.heartbeat_interval
        self.wake = WakeWatch(late_after=2 * beat, grace=beat)
        self.leader_heard = 0.0
        self.next_heartbeat = 0.0
        self.next_retry = 0.0
        self.next_discovery = 0.0
        self.join_deadline = 0.0
        if durable is not None:
            self.merge_entries(sorted(durable.entries, key=lambda e: e.key))
            self.max_term = durable.meta.get("term", 0)
            # Epochs never go backwards, not even across a restart; the leader of that
            # epoch is re-learned (and followed again) by discovery.
            self.epoch = Epoch(
                durable.meta.get("epoch_term", 0), durable.meta.get("epoch_leader", 0)
            )
            # Nor do rounds: a token of a term older than one we had seen (still in flight
            # from before the crash) must not elect us into a lower epoch (sim seed 701634),
            # nor one of the term whose leader we followed (sim --seed 9029 --servers 5
            # --clients 8 --duration 15 --chaos).
            self.election.closed_term = max(
                self.election.closed_term, self.max_term - 1, self.epoch.term
            )
        self.peers.update(self.state.servers)
        self.peers.pop(self.server_id, None)

    # -- small helpers -----------------------------------------------------------
    @property
    def state(self) -> ClusterState:
        """The fold of the whole log (kept by ``self.fold``)."""
        return self.fold.state

    def new_state(self) -> ClusterState:
        return self.fold.new_state()

    def next_token(self) -> int:
        self._token += 1
        return self._token

    @property
    def servers(self) -> tuple[ServerInfo, ...]:
        known = dict(self.peers)
        known[self.server_id] = self.config.addr
        return tuple(ServerInfo(sid, known[sid]) for sid in sorted(known))

    @property
    def live_backups(self) -> set[int]:
        if self.leadership is None:
            return set()
        return {sid for sid, r in self.leadership.replicas.items() if r.admitted}

    @property
    def backlog(self) -> int:
        """Entries this leader has sequenced and not committed yet (0 when not leading)."""
        return 0 if self.leadership is None else len(self.leadership.pending)

    def ring(self) -> list[int]:
        return sorted({*self.peers, self.server_id})

    def count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def log_event(self, kind: str, text: str, **fields: object) -> LogEvent:
        return LogEvent(kind, text, tuple(sorted(fields.items())))

    def chunk(self, entries: Iterator[Entry]) -> tuple[tuple[Entry, ...], bool]:
        """Take entries up to the frame budget; returns (chunk, more-remain)."""
        # Measured by the codec (each entry's bytes are made once and cached), not
        # estimated: an estimate let a chunk of multi-byte text or long clocks pass the cap.
        budget = min(self.config.sync_chunk_bytes, codec.FRAME_BUDGET)
        taken: list[Entry] = []
        used = 0
        for entry in entries:
            size = codec.entry_size(entry)
            if taken and used + size > budget:
                return tuple(taken), True
            taken.append(entry)
            used += size
        return tuple(taken), False

    def merge_entries(self, entries: Iterable[Entry]) -> list[Entry]:
        """Add entries from elsewhere (the fold refolds if any landed mid-log) and learn
        the servers they name. Returns the new ones."""
        before = set(self.state.servers)
        added = self.fold.merge(entries)
        for sid, addr in self.state.servers.items():
            if sid != self.server_id:
                self.peers[sid] = addr
        for sid in sorted(before - set(self.state.servers)):
            self.forget_peer(sid)  # it left (a ServerLeft entry): not "down", gone
        return added

    def forget_peer(self, server_id: int) -> None:
        """A server that left gracefully drops out of every list (status, ring, dashboard);
        if it comes back, its own frames teach us its address again."""
        if server_id != self.server_id:
            self.peers.pop(server_id, None)
            self.peer_heard.pop(server_id, None)

    def trim_peers(self) -> None:
        """Keep at most MAX_SERVERS peers: past that, forget the longest silent of those the
        log does not name (a crashed server the log names stays, shown down, until it
        returns or leaves). Only cluster servers' frames add peers; this bounds even a
        cluster whose servers came and went under fresh IDs."""
        extra = len(self.peers) - MAX_SERVERS
        named = self.state.servers
        spare = sorted(
            (sid for sid in self.peers if sid not in named),
            key=lambda sid: (self.peer_heard.get(sid, -1.0), sid),
        )
        for sid in spare[: max(0, extra)]:
            self.forget_peer(sid)
        for sid in [sid for sid in self.peer_heard if sid not in self.peers]:
            del self.peer_heard[sid]  # heard from once, never a peer: nothing to show
        if len(self.peers) > MAX_SERVERS:
            self.count("peers-full")

    def fold_from_floor(self, wanted: Callable[[Entry], bool]) -> ClusterState:
        return self.fold.fold_from_floor(wanted)

    @property
    def role(self) -> ServerRole:
        return self.phase.role

    @property
    def leadership(self) -> Leadership | None:
        """Our leader's state while we lead (the data of the Leading phase), else None."""
        return self.phase.leadership if isinstance(self.phase, Leading) else None

    def become(self, event: str, phase: ServerPhase | None = None) -> None:
        """Move to the phase TRANSITIONS gives for (our role, ``event``): the only place the
        phase changes. A phase with data (Syncing, Leading) comes ready-made."""
        role = TRANSITIONS.get((self.role, event))
        if phase is None and role is not None:
            phase = BARE_PHASES.get(role)
        if phase is None or phase.role is not role:
            raise IllegalTransition("ServerNode", self.role, event)
        self.phase = phase

    def set_epoch(self, epoch: Epoch) -> Persist:
        self.epoch = epoch
        return Persist(meta=(("epoch_term", epoch.term), ("epoch_leader", epoch.leader)))

    def observe_term(self, term: int) -> list[Effect]:
        effects: list[Effect] = []
        if term > self.max_term:
            self.max_term = term
            effects.append(Persist(meta=(("term", term),)))
        self.election.observe(term)
        return effects

    # -- lifecycle ---------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        self._now = now
        self.join_deadline = now + self.config.timing.leader_timeout * 2
        self.next_retry = now
        return self._discover(now)

    def _discover(self, now: float) -> list[Effect]:
        self.next_discovery = now + DISCOVERY_INTERVAL
        probe = Discover(self.config.addr, "server", self.next_token(), self.server_id)
        effects: list[Effect] = [Broadcast(probe)]
        effects.extend(Send(addr, probe) for _, addr in sorted(self.peers.items()))
        return effects

    def release_name(self, name: str, now: float) -> tuple[str, list[Effect]]:
        """An operator's ``tchat admin release-name`` (the runtime checked the cluster
        secret): ``("released", effects)``, or why not: ``"not-leader"`` (only the leader
        sequences entries) or ``"not-claimed"`` (no key holds the name)."""
        if self.leadership is None or not self.leadership.serving:
            return "not-leader", []
        if name not in self.state.claims:
            return "not-claimed", []
        return "released", self.leadership.desk.release_name(name, now)

    def step_down(self, now: float) -> list[Effect]:
        """Hand leadership over at once and stay on as a backup of the successor."""
        effects: list[Effect] = []
        if self.leadership is None:
            return effects
        effects.extend(self.leadership.flush(now))
        effects.extend(
            Send(addr, StepDown(self.server_id, self.epoch))
            for _, addr in sorted(self.peers.items())
        )
        effects.append(
            self.log_event(
                "stepped-down", f"leader {self.server_id} steps down", leader=self.server_id
            )
        )
        self.leader_id = 0
        self.leader_addr = ""
        self.following.admitted_seq = None
        self.become("step-down")
        # Sit the successor's election out (only pass tokens on), and do not start one.
        self.candidacy.abstain_until = now + self.candidacy.timeout() * 2
        self.join_deadline = self.candidacy.abstain_until
        self.next_retry = now + self.config.timing.heartbeat_interval * 2
        return effects

    def stop(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self.role is ServerRole.STOPPED:
            return effects
        if self.leadership is not None:
            effects.extend(self.leadership.flush(now))
            for _sid, addr in sorted(self.peers.items()):
                effects.append(Send(addr, StepDown(self.server_id, self.epoch)))
            # Not a step-down that stays on as a backup: whoever is elected logs us as left.
            leaving = Leaving(self.server_id, self.epoch)
            effects.extend(Send(addr, leaving) for _sid, addr in sorted(self.peers.items()))
            effects.append(self.log_event("stepped-down", f"leader {self.server_id} stepping down"))
        elif self.leader_addr:
            effects.append(Send(self.leader_addr, Leaving(self.server_id, self.epoch)))
        self.become("stop")
        effects.append(Stopped("graceful stop"))
        return effects

    def flush(self, now: float) -> list[Effect]:
        if self.leadership is None:
            return []
        return self.leadership.flush(now)

    # -- time --------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self.wake.promised(self._next_deadline())

    def _next_deadline(self) -> float | None:
        role = self.role
        if role is ServerRole.STOPPED:
            return None
        times = [self.next_discovery] if role is ServerRole.LEADER else []
        if self.leadership is not None:
            if self.leadership.outbox:
                return self._now
            times += [self.next_heartbeat, self.leadership.next_deadline()]
        elif isinstance(self.phase, Syncing):
            times.append(self.phase.deadline)
        else:
            times.append(self.next_retry)
            if self.leader_id and not self.election.participant:
                leader_timeout = self.leader_heard + self.config.timing.leader_timeout
                times.append(max(leader_timeout, self.wake.judge_after))
        election = self.election.next_deadline()
        if election is not None:
            times.append(election)
        return min(times)

    def tick(self, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        timing = self.config.timing
        role = self.role
        if role is ServerRole.STOPPED:
            return effects
        if self.wake.woke(now):  # we were the silent one: read what waits before judging
            self.count("late-wakeup")
        effects.extend(self.candidacy.timers(now))
        role = self.role
        if self.leadership is not None:
            if now >= self.next_heartbeat:
                self.next_heartbeat = now + timing.heartbeat_interval
                beat = Heartbeat(
                    self.server_id, self.config.addr, self.epoch, self.leadership.seq, self.servers
                )
                effects.extend(Send(addr, beat) for _, addr in sorted(self.peers.items()))
            effects.extend(self.leadership.tick(now))
            effects.extend(self.leadership.flush(now))
            if now >= self.next_discovery:
                effects.extend(self._discover(now))
        elif isinstance(self.phase, Syncing):
            if now >= self.phase.deadline:
                effects.extend(self.candidacy.take_office(now))
        else:
            if (
                self.leader_id
                and now >= self.leader_heard + timing.leader_timeout
                and now >= self.wake.judge_after
                and not self.election.participant
            ):
                effects.append(
                    self.log_event(
                        "leader-suspected",
                        f"no heartbeat from leader {self.leader_id} for "
                        f"{now - self.leader_heard:.3f}s",
                        leader=self.leader_id,
                    )
                )
                effects.extend(self.candidacy.start(now, suspect=self.leader_id))
            elif now >= self.next_retry:
                self.next_retry = now + timing.heartbeat_interval * 2
                if self.leader_addr and self.following.admitted_seq is None:
                    effects.append(Send(self.leader_addr, self.following.join_request()))
                elif not self.leader_id and not self.election.participant:
                    if now >= self.join_deadline:
                        effects.extend(self.candidacy.start(now, suspect=0))
                    else:
                        effects.extend(self._discover(now))
        return effects

    # -- messages ----------------------------------------------------------------
    def handle(self, message: Message, src_addr: str, now: float) -> list[Effect]:
        self._now = now
        if self.role is ServerRole.STOPPED:
            return []
        effects: list[Effect] = []
        src = getattr(message, "src", None)
        if isinstance(src, int) and src != self.server_id:
            self.peer_heard[src] = now
            if src_addr and not isinstance(message, (Heartbeat, JoinRequest, NewLeader)):
                self.peers.setdefault(src, src_addr)
        match message:
            case Discover():
                if (
                    message.server_id
                    and message.server_id != self.server_id
                    and message.server_id not in self.peers
                ):
                    # A server looking for the cluster. Discover is never signed (clients
                    # send it too), so learn the server only from its signed answer.
                    probe = Discover(self.config.addr, "server", self.next_token(), self.server_id)
                    effects.append(Send(message.addr, probe))
                effects.append(Send(message.addr, discover_reply(self, message.nonce)))
            case DiscoverReply():
                effects.extend(self._on_discover_reply(message, now))
            case ClusterStatusRequest():  # signed with the cluster key (the codec checked)
                effects.append(Send(message.addr, status_reply(self, message.nonce, full=True)))
            case StatusRequest():
                effects.append(Send(message.addr, status_reply(self, message.nonce)))
            case Heartbeat():
                effects.extend(self.following.on_heartbeat(message, now))
            case Append():
                effects.extend(self.following.on_append(message, src_addr, now))
            case Admit():
                effects.extend(self.following.on_admit(message, src_addr, now))
            case AppendAck():
                if self.leadership is not None and message.epoch == self.epoch:
                    addr = self.peers.get(message.src, src_addr)
                    effects.extend(self.leadership.on_ack(message, addr, now))
            case JoinRequest():
                self.peers[message.src] = message.addr
                if self.leadership is not None:
                    effects.extend(self.leadership.on_join(message, message.addr, now))
                elif self.leader_addr and self.epoch > message.epoch:
                    effects.append(
                        Send(message.addr, StaleEpoch(self.server_id, self.epoch, self.leader_addr))
                    )
            case SyncRequest():
                effects.extend(self.following.on_sync_request(message, src_addr, now))
            case SyncData():
                effects.extend(self.following.on_sync_data(message, now))
            case Election():
                effects.extend(self.candidacy.on_election(message, src_addr, now))
            case ElectionAck():
                self.election.acked(message.term, message.candidate, message.src)
            case NewLeader():
                self.peers[message.src] = message.addr
                effects.extend(
                    self.candidacy.on_new_leader(message.epoch, message.addr, message.servers, now)
                )
            case StaleEpoch():
                if message.epoch > self.epoch and message.leader_addr:
                    effects.extend(self.following.follow(message.epoch, message.leader_addr, now))
                elif message.epoch > self.epoch and self.role is ServerRole.LEADER:
                    # A server restarted with the epoch it led on the other side of a
                    # healed partition: newer than ours, but its leader is gone. It rejects
                    # our frames as stale and no election can win while we lead, so we
                    # renew past it (tchat sim --seed 10110 --servers 5 --clients 6).
                    effects.extend(
                        self.candidacy.renew_epoch(message.epoch, f"server {message.src}", now)
                    )
            case StepDown():
                if message.epoch == self.epoch and message.src == self.leader_id:
                    self.candidacy.departed.add(message.src)
                    effects.append(
                        self.log_event(
                            "handover", f"leader {message.src} handed over", leader=message.src
                        )
                    )
                    effects.extend(self.candidacy.start(now, suspect=message.src))
            case Leaving() if message.src != self.server_id:
                if self.leadership is not None:
                    effects.extend(self.leadership.drop_replica(message.src, "left", now))
                    effects.extend(self.leadership.server_left(message.src, now))
                elif message.src in self.peers and len(self.candidacy.left) < MAX_SERVERS:
                    self.candidacy.left.add(message.src)  # a leader's stop: see take_office
            case LeaderSuspect():
                effects.extend(self.candidacy.on_leader_suspect(message, now))
            case (
                Register()
                | Submit()
                | HistoryRequest()
                | ClientBeat()
                | RoomsRequest()
                | KeysRequest()
            ):
                effects.extend(self._on_client(message, src_addr, now))
            case _:
                self.count("unexpected")
        if len(self.peers) > MAX_SERVERS or len(self.peer_heard) > 2 * MAX_SERVERS:
            self.trim_peers()
        return effects

    # -- facts the runtime verified (account passwords) ------------------------------
    def password_login(self, login: PasswordLogin, now: float) -> list[Effect]:
        """The runtime verified ``login.register``'s password against ``login.phc`` (and its
        key proof): the leader's desk decides whether the key joins the account."""
        self._now = now
        leadership = self.leadership
        if self.role is ServerRole.STOPPED:
            return []
        if leadership is None:
            msg = login.register
            return [Send(msg.addr, NotLeader(self.leader_id, self.leader_addr, self.epoch))]
        return leadership.desk.on_password_login(login, now)

    def refuse_login(self, msg: Register, reason: str, counter: str) -> list[Effect]:
        """The runtime refused ``msg``'s password (wrong, rate-limited, malformed): counted
        here, with the other refusals, and answered."""
        self.count(counter)
        event = self.log_event("login-refused", f"login as {msg.name}: {reason}", user=msg.name)
        return [event, Send(msg.addr, Rejected(reason))]

    def refuse_operation(self, msg: Submit, src_addr: str, reason: str) -> list[Effect]:
        """The runtime refused ``msg``'s operation before the core saw it (a password it
        would not hash): the client gets an OpError, as for any refused operation."""
        leadership = self.leadership
        if leadership is None:
            return [Send(src_addr, NotLeader(self.leader_id, self.leader_addr, self.epoch))]
        session = leadership.streams.sessions.get(msg.client_id)
        if session is None or session.addr != src_addr:
            self.count("foreign-session")
            return []
        self.count("password-refused")
        return [Send(src_addr, OpError(self.epoch, msg.cmid, reason))]

    def _on_discover_reply(self, msg: DiscoverReply, now: float) -> list[Effect]:
        if msg.server_id != self.server_id:
            self.peers[msg.server_id] = msg.addr
        for info in msg.servers:
            if info.server_id != self.server_id:
                self.peers.setdefault(info.server_id, info.addr)
        if not msg.leader_id or msg.leader_id == self.server_id:
            return []
        if msg.epoch > self.epoch or (msg.epoch == self.epoch and not self.leader_addr):
            return self.following.follow(msg.epoch, msg.leader_addr, now)
        return []

    def _on_client(self, msg: Message, src_addr: str, now: float) -> list[Effect]:
        leadership = self.leadership
        if leadership is None:
            if isinstance(msg, (Register, Submit)):
                reply_to = msg.addr if isinstance(msg, Register) else src_addr
                return [Send(reply_to, NotLeader(self.leader_id, self.leader_addr, self.epoch))]
            return []
        if isinstance(msg, (Submit, HistoryRequest, ClientBeat, KeysRequest)):
            session = leadership.streams.sessions.get(msg.client_id)
            if session is not None and session.addr != src_addr:
                # A client ID is no credential: only the session that logged in (its
                # proven Register came from there) speaks, reads or beats for it.
                self.count("foreign-session")
                return []
        match msg:
            case Register():
                return leadership.desk.on_register(msg, msg.addr, now)
            case Submit():
                return leadership.desk.on_submit(msg, src_addr, now)
            case HistoryRequest():
                return leadership.desk.on_history(msg, src_addr)
            case RoomsRequest():
                return leadership.desk.on_rooms(msg, src_addr)
            case KeysRequest():
                return leadership.desk.on_keys(msg, src_addr)
            case ClientBeat():
                return leadership.desk.on_beat(msg, now)
        return []
