"""The server node: a replica on the ring that follows, elects, or leads (sans-IO)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from enum import Enum

from tchat.core.config import ServerConfig
from tchat.core.effects import (
    Broadcast,
    DurableState,
    Effect,
    LeaderChanged,
    LogEvent,
    Persist,
    Send,
    Stopped,
)
from tchat.core.election import LcrElection, Verdict
from tchat.core.errors import IllegalTransition
from tchat.core.fold import ClusterState
from tchat.core.leader import Leadership
from tchat.core.log import ReplicatedLog
from tchat.core.messages import (
    NO_EPOCH,
    Admit,
    Append,
    AppendAck,
    ClientBeat,
    Discover,
    DiscoverReply,
    Election,
    ElectionAck,
    Entry,
    Epoch,
    Heartbeat,
    HistoryRequest,
    JoinRequest,
    LeaderAlive,
    LeaderSuspect,
    Leaving,
    Message,
    NewLeader,
    NotLeader,
    Register,
    RoomInfo,
    RoomsRequest,
    ServerInfo,
    StaleEpoch,
    StatusReply,
    StatusRequest,
    StepDown,
    Submit,
    SyncData,
    SyncRequest,
)


class ServerRole(Enum):
    JOINING = "joining"  # looking for the leader, or catching up with it
    BACKUP = "backup"  # admitted by the leader: stores and acknowledges its batches
    CANDIDATE = "candidate"  # taking part in an election round
    SYNCING = "syncing"  # elected: pulling what the others have before announcing
    LEADER = "leader"
    STOPPED = "stopped"


_TRANSITIONS: dict[ServerRole, frozenset[ServerRole]] = {
    ServerRole.JOINING: frozenset(
        {
            ServerRole.JOINING,
            ServerRole.BACKUP,
            ServerRole.CANDIDATE,
            ServerRole.SYNCING,
            ServerRole.STOPPED,
        }
    ),
    ServerRole.BACKUP: frozenset(
        {ServerRole.JOINING, ServerRole.CANDIDATE, ServerRole.SYNCING, ServerRole.STOPPED}
    ),
    ServerRole.CANDIDATE: frozenset(
        {
            ServerRole.JOINING,
            ServerRole.BACKUP,
            ServerRole.CANDIDATE,
            ServerRole.SYNCING,
            ServerRole.STOPPED,
        }
    ),
    ServerRole.SYNCING: frozenset(
        {
            ServerRole.JOINING,
            ServerRole.LEADER,
            ServerRole.CANDIDATE,
            ServerRole.SYNCING,
            ServerRole.STOPPED,
        }
    ),
    ServerRole.LEADER: frozenset({ServerRole.JOINING, ServerRole.SYNCING, ServerRole.STOPPED}),
    ServerRole.STOPPED: frozenset(),
}

DISCOVERY_INTERVAL = 1.0  # a leader looks for other partitions' leaders this often


class ServerNode:
    """One server. Feed it messages and time; carry out the effects it returns."""

    def __init__(
        self,
        config: ServerConfig,
        durable: DurableState | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.server_id = config.server_id
        self.rng = rng or random.Random(config.server_id)
        self.log = ReplicatedLog()
        self.state = self.new_state()
        self.role = ServerRole.JOINING
        self.epoch = NO_EPOCH
        self.leader_id = 0
        self.leader_addr = ""
        self.max_term = 0
        self.peers: dict[int, str] = {}
        self.peer_heard: dict[int, float] = {}  # server ID -> last time it sent us anything
        self.election = LcrElection(self.server_id)
        self.leadership: Leadership | None = None
        self.counters: dict[str, int] = {}
        self._token = 0
        self._now = 0.0
        self._leader_heard = 0.0
        self._next_heartbeat = 0.0
        self._next_retry = 0.0
        self._next_discovery = 0.0
        self._join_deadline = 0.0
        self._admitted_seq: int | None = None  # last batch stored, once admitted this epoch
        self._sync_wait: dict[int, int] = {}  # peer -> token while SYNCING
        self._sync_deadline = 0.0
        self._departed: set[int] = set()
        self._abstain_until = float("-inf")
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
    def new_state(self) -> ClusterState:
        c = self.config
        return ClusterState(c.multicast_base, c.multicast_count, c.multicast_port)

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

    def ring(self) -> list[int]:
        return sorted({*self.peers, self.server_id})

    def count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def log_event(self, effects: list[Effect], kind: str, text: str, **fields: object) -> None:
        effects.append(LogEvent(kind, text, tuple(sorted(fields.items()))))

    def chunk(self, entries: Iterator[Entry]) -> tuple[tuple[Entry, ...], bool]:
        """Take entries up to the frame budget; returns (chunk, more-remain)."""
        budget = self.config.sync_chunk_bytes
        taken: list[Entry] = []
        used = 0
        for entry in entries:
            size = 96 + len(getattr(entry.body, "text", "")) * 4 + 12 * len(entry.clock)
            if taken and used + size > budget:
                return tuple(taken), True
            taken.append(entry)
            used += size
        return tuple(taken), False

    def merge_entries(self, entries: Iterable[Entry]) -> list[Entry]:
        """Add entries from elsewhere; refold if any landed mid-log. Returns the new ones."""
        added: list[Entry] = []
        refold = False
        for entry in entries:
            where = self.log.add(entry)
            if where is None:
                continue
            added.append(entry)
            if where and not refold:
                if not self.log.is_duplicate(entry):
                    self.state.apply(entry)
            else:
                refold = True
        if refold:
            clashes = self.state.clashes
            self.state = self.new_state()
            for entry in self.log.entries():
                if not self.log.is_duplicate(entry):
                    self.state.apply(entry)
            self.state.clashes = clashes + [c for c in self.state.clashes if c not in clashes]
        for sid, addr in self.state.servers.items():
            if sid != self.server_id:
                self.peers[sid] = addr
        return added

    def _become(self, role: ServerRole, event: str) -> None:
        if role not in _TRANSITIONS[self.role]:
            raise IllegalTransition("ServerNode", self.role, event)
        self.role = role

    def _set_epoch(self, epoch: Epoch, effects: list[Effect]) -> None:
        self.epoch = epoch
        effects.append(Persist(meta=(("epoch_term", epoch.term), ("epoch_leader", epoch.leader))))

    def _observe_term(self, term: int, effects: list[Effect]) -> None:
        if term > self.max_term:
            self.max_term = term
            effects.append(Persist(meta=(("term", term),)))
        self.election.observe(term)

    # -- lifecycle ---------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        self._now = now
        self._join_deadline = now + self.config.timing.leader_timeout * 2
        self._next_retry = now
        return self._discover(now)

    def _discover(self, now: float) -> list[Effect]:
        self._next_discovery = now + DISCOVERY_INTERVAL
        probe = Discover(self.config.addr, "server", self.next_token(), self.server_id)
        effects: list[Effect] = [Broadcast(probe)]
        effects.extend(Send(addr, probe) for _, addr in sorted(self.peers.items()))
        return effects

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
        self.log_event(
            effects, "stepped-down", f"leader {self.server_id} steps down", leader=self.server_id
        )
        self.leadership = None
        self.leader_id = 0
        self.leader_addr = ""
        self._admitted_seq = None
        self._become(ServerRole.JOINING, "step-down")
        # Sit the successor's election out (only pass tokens on), and do not start one.
        self._abstain_until = now + self._election_timeout() * 2
        self._join_deadline = self._abstain_until
        self._next_retry = now + self.config.timing.heartbeat_interval * 2
        return effects

    def stop(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self.role is ServerRole.STOPPED:
            return effects
        if self.leadership is not None:
            effects.extend(self.leadership.flush(now))
            for _sid, addr in sorted(self.peers.items()):
                effects.append(Send(addr, StepDown(self.server_id, self.epoch)))
            self.log_event(effects, "stepped-down", f"leader {self.server_id} stepping down")
        elif self.leader_addr:
            effects.append(Send(self.leader_addr, Leaving(self.server_id, self.epoch)))
        self.leadership = None
        self._become(ServerRole.STOPPED, "stop")
        effects.append(Stopped("graceful stop"))
        return effects

    def flush(self, now: float) -> list[Effect]:
        if self.leadership is None:
            return []
        return self.leadership.flush(now)

    # -- time --------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        role = self.role
        if role is ServerRole.STOPPED:
            return None
        times = [self._next_discovery] if role is ServerRole.LEADER else []
        if self.leadership is not None:
            if self.leadership.outbox:
                return self._now
            times += [self._next_heartbeat, self.leadership.next_deadline()]
        elif role is ServerRole.SYNCING:
            times.append(self._sync_deadline)
        else:
            times.append(self._next_retry)
            if self.leader_id and not self.election.participant:
                times.append(self._leader_heard + self.config.timing.leader_timeout)
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
        effects.extend(self._election_timers(now))
        role = self.role
        if self.leadership is not None:
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + timing.heartbeat_interval
                beat = Heartbeat(
                    self.server_id, self.config.addr, self.epoch, self.leadership.seq, self.servers
                )
                effects.extend(Send(addr, beat) for _, addr in sorted(self.peers.items()))
            effects.extend(self.leadership.tick(now))
            effects.extend(self.leadership.flush(now))
            if now >= self._next_discovery:
                effects.extend(self._discover(now))
        elif role is ServerRole.SYNCING:
            if now >= self._sync_deadline:
                effects.extend(self._take_office(now))
        else:
            if (
                self.leader_id
                and now >= self._leader_heard + timing.leader_timeout
                and not self.election.participant
            ):
                self.log_event(
                    effects,
                    "leader-suspected",
                    f"no heartbeat from leader {self.leader_id} for "
                    f"{now - self._leader_heard:.3f}s",
                    leader=self.leader_id,
                )
                effects.extend(self._start_election(now, suspect=self.leader_id))
            elif now >= self._next_retry:
                self._next_retry = now + timing.heartbeat_interval * 2
                if self.leader_addr and self._admitted_seq is None:
                    effects.append(Send(self.leader_addr, self._join_request()))
                elif not self.leader_id and not self.election.participant:
                    if now >= self._join_deadline:
                        effects.extend(self._start_election(now, suspect=0))
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
                effects.append(Send(message.addr, self._discover_reply(message.nonce)))
            case DiscoverReply():
                self._on_discover_reply(message, effects, now)
            case StatusRequest():
                effects.append(Send(message.addr, self._status_reply(message.nonce)))
            case Heartbeat():
                self._on_heartbeat(message, effects, now)
            case Append():
                self._on_append(message, src_addr, effects, now)
            case Admit():
                self._on_admit(message, src_addr, effects, now)
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
                self._on_sync_request(message, src_addr, effects, now)
            case SyncData():
                self._on_sync_data(message, effects, now)
            case Election():
                self._on_election(message, src_addr, effects, now)
            case ElectionAck():
                self.election.acked(message.term, message.candidate, message.src)
            case NewLeader():
                self.peers[message.src] = message.addr
                self._on_new_leader(message.epoch, message.addr, message.servers, effects, now)
            case StaleEpoch():
                if message.epoch > self.epoch and message.leader_addr:
                    self._follow(message.epoch, message.leader_addr, effects, now)
                elif message.epoch > self.epoch and self.role is ServerRole.LEADER:
                    # A server restarted with the epoch it led on the other side of a
                    # healed partition: newer than ours, but its leader is gone. It rejects
                    # our frames as stale and no election can win while we lead, so we
                    # renew past it (tchat sim --seed 10110 --servers 5 --clients 6).
                    self._renew_epoch(message.epoch, f"server {message.src}", effects, now)
            case StepDown():
                if message.epoch == self.epoch and message.src == self.leader_id:
                    self._departed.add(message.src)
                    self.log_event(
                        effects, "handover", f"leader {message.src} handed over", leader=message.src
                    )
                    effects.extend(self._start_election(now, suspect=message.src))
            case Leaving():
                if self.leadership is not None:
                    effects.extend(self.leadership.drop_replica(message.src, "left", now))
            case LeaderSuspect():
                self._on_leader_suspect(message, effects, now)
            case Register() | Submit() | HistoryRequest() | ClientBeat() | RoomsRequest():
                self._on_client(message, src_addr, effects, now)
            case _:
                self.count("unexpected")
        return effects

    def _discover_reply(self, nonce: int) -> DiscoverReply:
        return DiscoverReply(
            self.server_id,
            self.config.addr,
            self.leader_id,
            self.leader_addr,
            self.epoch,
            self.servers,
            nonce,
        )

    def _status_reply(self, nonce: int) -> StatusReply:
        rooms = tuple(
            RoomInfo(r.name, r.group, tuple(sorted(r.members)), r.messages)
            for _, r in sorted(self.state.rooms.items())
        )
        live = tuple(sorted(self.live_backups | {self.server_id}))
        return StatusReply(
            self.server_id,
            self.config.addr,
            self.role.value,
            self.epoch,
            self.leader_id,
            self.leader_addr,
            self.servers,
            live,
            self.state.user_infos(),
            rooms,
            len(self.log),
            nonce,
        )

    def _on_discover_reply(self, msg: DiscoverReply, effects: list[Effect], now: float) -> None:
        if msg.server_id != self.server_id:
            self.peers[msg.server_id] = msg.addr
        for info in msg.servers:
            if info.server_id != self.server_id:
                self.peers.setdefault(info.server_id, info.addr)
        if not msg.leader_id or msg.leader_id == self.server_id:
            return
        if msg.epoch > self.epoch or (msg.epoch == self.epoch and not self.leader_addr):
            self._follow(msg.epoch, msg.leader_addr, effects, now)

    def _follow(self, epoch: Epoch, leader_addr: str, effects: list[Effect], now: float) -> None:
        """Accept the leader of ``epoch`` (newer than ours) and ask it to admit us."""
        if self.leadership is not None or self.role is ServerRole.SYNCING:
            self.log_event(
                effects,
                "stepped-down",
                f"server {self.server_id} yields to newer epoch {epoch}",
                epoch=str(epoch),
            )
        self.leadership = None
        self._observe_term(epoch.term, effects)
        self.election.finish()
        self._set_epoch(epoch, effects)
        self.leader_id = epoch.leader
        self.leader_addr = leader_addr
        self._leader_heard = now
        self._admitted_seq = None
        self._sync_wait.clear()
        self._become(ServerRole.JOINING, "follow")
        effects.append(LeaderChanged(epoch.leader, leader_addr, epoch))
        effects.append(Send(leader_addr, self._join_request()))
        self._next_retry = now + self.config.timing.heartbeat_interval * 2

    def _join_request(self) -> JoinRequest:
        return JoinRequest(self.server_id, self.config.addr, self.epoch, self.log.clock)

    def _fence(self, epoch: Epoch, leader_addr: str, effects: list[Effect], now: float) -> bool:
        """Epoch fencing for leader frames: True if the frame is of our current epoch."""
        if epoch < self.epoch:
            self.count("stale-epoch")
            if leader_addr:
                effects.append(
                    Send(leader_addr, StaleEpoch(self.server_id, self.epoch, self.leader_addr))
                )
            return False
        if epoch > self.epoch:
            self._follow(epoch, leader_addr, effects, now)
            return False
        return self.leadership is None and self.role is not ServerRole.SYNCING

    def _on_heartbeat(self, msg: Heartbeat, effects: list[Effect], now: float) -> None:
        self.peers[msg.src] = msg.addr
        for info in msg.servers:
            if info.server_id != self.server_id:
                self.peers.setdefault(info.server_id, info.addr)
        if not self._fence(msg.epoch, msg.addr, effects, now):
            return
        self._leader_heard = now
        self.leader_addr = msg.addr
        self.leader_id = msg.epoch.leader
        if self.role is ServerRole.CANDIDATE:
            self.election.finish()
            self._become(
                ServerRole.BACKUP if self._admitted_seq is not None else ServerRole.JOINING,
                "heartbeat",
            )
        if self._admitted_seq is None:
            effects.append(Send(msg.addr, self._join_request()))
        else:
            effects.append(
                Send(
                    msg.addr,
                    AppendAck(self.server_id, self.epoch, self._admitted_seq, self.log.clock),
                )
            )

    def _on_append(self, msg: Append, src_addr: str, effects: list[Effect], now: float) -> None:
        addr = self.peers.get(msg.src, src_addr)
        if not self._fence(msg.epoch, addr, effects, now):
            return
        self._leader_heard = now
        if self._admitted_seq is None:
            return  # the leader resends once it has admitted us
        if msg.seq == self._admitted_seq + 1:
            added = self.merge_entries(msg.entries)
            if added:
                effects.append(Persist(entries=tuple(added)))
            self._admitted_seq = msg.seq
        effects.append(
            Send(addr, AppendAck(self.server_id, self.epoch, self._admitted_seq, self.log.clock))
        )

    def _on_admit(self, msg: Admit, src_addr: str, effects: list[Effect], now: float) -> None:
        addr = self.peers.get(msg.src, src_addr)
        if msg.epoch < self.epoch:
            self.count("stale-epoch")
            return
        if msg.epoch > self.epoch:
            self._follow(msg.epoch, addr, effects, now)
            effects.pop()  # _follow's JoinRequest: the Admit below answers it already
        self._leader_heard = now
        added = self.merge_entries(msg.entries)
        if added:
            effects.append(Persist(entries=tuple(added)))
        if not msg.done:
            effects.append(Send(addr, self._join_request()))
            return
        if self._admitted_seq is not None and msg.base_seq > self._admitted_seq:
            self._admitted_seq = msg.base_seq  # re-admitted after the leader lost track of us
        if self._admitted_seq is None:
            self._admitted_seq = msg.base_seq
            if self.role is not ServerRole.CANDIDATE:
                self._become(ServerRole.BACKUP, "admitted")
            self.log_event(
                effects,
                "admitted",
                f"server {self.server_id} is a backup of "
                f"leader {self.leader_id} (epoch {self.epoch})",
                epoch=str(self.epoch),
            )
        effects.append(
            Send(addr, AppendAck(self.server_id, self.epoch, self._admitted_seq, self.log.clock))
        )

    def _on_sync_request(
        self, msg: SyncRequest, src_addr: str, effects: list[Effect], now: float
    ) -> None:
        addr = self.peers.get(msg.src, src_addr)
        if msg.epoch < self.epoch:
            effects.append(Send(addr, StaleEpoch(self.server_id, self.epoch, self.leader_addr)))
            return
        if msg.epoch > self.epoch:
            # A leader-elect collecting: the round reached its end; wait for its announcement.
            self._observe_term(msg.epoch.term, effects)
            if self.election.deadline is not None:
                self.election.deadline = max(
                    self.election.deadline, now + self.config.timing.sync_timeout * 2
                )
            self._leader_heard = now
        chunk, more = self.chunk(self.log.missing_for(msg.clock))
        effects.append(
            Send(addr, SyncData(self.server_id, msg.epoch, msg.token, chunk, self.log.clock, more))
        )

    def _on_sync_data(self, msg: SyncData, effects: list[Effect], now: float) -> None:
        if self.leadership is not None:
            if msg.epoch == self.epoch:
                effects.extend(self.leadership.on_sync_data(msg, now))
            return
        if self.role is not ServerRole.SYNCING or self._sync_wait.get(msg.src) != msg.token:
            return
        added = self.merge_entries(msg.entries)
        if added:
            effects.append(Persist(entries=tuple(added)))
        if msg.more:
            effects.append(
                Send(
                    self.peers[msg.src],
                    SyncRequest(self.server_id, self.epoch, msg.token, self.log.clock),
                )
            )
        else:
            del self._sync_wait[msg.src]
            if not self._sync_wait:
                effects.extend(self._take_office(now))

    def _on_client(self, msg: Message, src_addr: str, effects: list[Effect], now: float) -> None:
        leadership = self.leadership
        if leadership is None:
            if isinstance(msg, (Register, Submit)):
                reply_to = msg.addr if isinstance(msg, Register) else src_addr
                effects.append(
                    Send(reply_to, NotLeader(self.leader_id, self.leader_addr, self.epoch))
                )
            return
        match msg:
            case Register():
                effects.extend(leadership.on_register(msg, msg.addr, now))
            case Submit():
                session = leadership.streams.sessions.get(msg.client_id)
                effects.extend(
                    leadership.on_submit(msg, session.addr if session else src_addr, now)
                )
            case HistoryRequest():
                effects.extend(leadership.on_history(msg, src_addr))
            case RoomsRequest():
                effects.extend(leadership.on_rooms(msg, src_addr))
            case ClientBeat():
                leadership.on_beat(msg.client_id, now)

    def _renew_epoch(self, newer: Epoch, who: str, effects: list[Effect], now: float) -> None:
        """Lead on under an epoch past ``newer``, which someone knows but whose leader is
        gone: no election needed (we lead already); announce it as a new leader does."""
        self.log_event(
            effects,
            "epoch-renewed",
            f"{who} knows newer epoch {newer}; renewing ours",
            epoch=str(newer),
        )
        term = max(self.max_term, self.epoch.term, newer.term) + 1
        self._observe_term(term, effects)
        self.election.begin(term, now, self._election_timeout())
        effects.extend(self._elected(now))

    def _on_leader_suspect(self, msg: LeaderSuspect, effects: list[Effect], now: float) -> None:
        timing = self.config.timing
        if msg.epoch.term > self.max_term:
            self._observe_term(msg.epoch.term, effects)
        if self.leadership is not None and msg.epoch > self.epoch:
            # The client followed a newer leader that is gone (stopped, or on the other
            # side of a healed partition): lead on under an epoch newer than the one it
            # knows, or it would keep rejecting us as stale.
            # No election needed: we lead already. Take a new epoch (term past both) and
            # announce it, as a freshly elected leader does.
            if self.role is ServerRole.LEADER:
                self._renew_epoch(msg.epoch, f"client {msg.client_id}", effects, now)
            return
        if self.leadership is not None:
            effects.append(
                Send(
                    msg.addr,
                    LeaderAlive(self.server_id, self.server_id, self.config.addr, self.epoch),
                )
            )
            return
        if self.leader_id and now - self._leader_heard <= timing.heartbeat_interval * 3:
            self.count("suspicion-refused")
            effects.append(
                Send(
                    msg.addr,
                    LeaderAlive(self.server_id, self.leader_id, self.leader_addr, self.epoch),
                )
            )
            return
        if not self.election.participant and self.role is not ServerRole.SYNCING:
            self.log_event(
                effects,
                "leader-suspected",
                f"client {msg.client_id} reports leader {self.leader_id} silent; confirmed",
                leader=self.leader_id,
            )
            effects.extend(self._start_election(now, suspect=self.leader_id))

    # -- election ----------------------------------------------------------------
    def _election_timeout(self) -> float:
        timing = self.config.timing
        return timing.election_timeout + timing.hop_timeout * (len(self.peers) + 1)

    def _start_election(self, now: float, suspect: int) -> list[Effect]:
        effects: list[Effect] = []
        term = max(self.max_term, self.epoch.term) + 1
        self._observe_term(term, effects)
        candidate = self.election.begin(term, now, self._election_timeout())
        if self.role is not ServerRole.LEADER:
            self._become(ServerRole.CANDIDATE, "start-election")
        self.log_event(
            effects,
            "election-started",
            f"server {self.server_id} starts election round {term}",
            term=term,
            initiator=self.server_id,
        )
        skip = self._known_gone(now)
        if suspect:
            skip.add(suspect)
        effects.extend(self._send_token(candidate, now, skip))
        return effects

    def _known_gone(self, now: float) -> set[int]:
        """Servers not worth waiting for: one that handed over, and our leader once it has
        missed a few heartbeats (every hop would otherwise wait a hop timeout on it)."""
        gone = set(self._departed)
        silent = now - self._leader_heard > self.config.timing.heartbeat_interval * 3
        if self.leader_id and self.leader_id != self.server_id and silent:
            gone.add(self.leader_id)
        return gone

    def _send_token(self, candidate: int, now: float, skip: set[int]) -> list[Effect]:
        target = self.election.send(
            candidate, self.ring(), now, self.config.timing.hop_timeout, skip
        )
        if target is None:  # nobody else answers: a ring of one
            if candidate >= self.server_id and candidate == self.server_id:
                return self._elected(now)
            return []
        return [Send(self.peers[target], Election(self.server_id, self.election.term, candidate))]

    def _on_election(self, msg: Election, src_addr: str, effects: list[Effect], now: float) -> None:
        addr = self.peers.get(msg.src, src_addr)
        effects.append(Send(addr, ElectionAck(self.server_id, msg.term, msg.candidate)))
        if msg.term > self.max_term:
            self._observe_term(msg.term, effects)
        if now < self._abstain_until and msg.candidate != self.server_id:
            # We just stepped down: relay the token without standing ourselves.
            if self.election.relay(msg.term, msg.candidate):
                gone = self._known_gone(now) - {msg.candidate}  # it campaigns: alive
                effects.extend(self._send_token(msg.candidate, now, gone))
            return
        verdict, candidate = self.election.receive(
            msg.term, msg.candidate, now, self._election_timeout()
        )
        if verdict is Verdict.DROP:
            return
        if verdict is Verdict.ELECTED:
            effects.extend(self._elected(now))
            return
        if self.role in (ServerRole.JOINING, ServerRole.BACKUP):
            self._become(ServerRole.CANDIDATE, "election-token")
        # The candidate is campaigning, so it is alive even if it is the leader we stopped
        # hearing: skipping it would kill its token for good (sim seed 201613).
        effects.extend(self._send_token(candidate, now, self._known_gone(now) - {candidate}))

    def _election_timers(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        hop = self.election.hop_expired(now)
        if hop is not None and hop.term == self.election.term:
            self.log_event(
                effects,
                "hop-skipped",
                f"server {hop.target} did not acknowledge the election token; skipping",
                server=hop.target,
            )
            effects.extend(self._send_token(hop.candidate, now, hop.skipped))
        deadline = self.election.deadline
        if deadline is not None and now >= deadline and self.role is ServerRole.CANDIDATE:
            self.log_event(
                effects,
                "election-timeout",
                f"round {self.election.term} produced no leader; starting another",
                term=self.election.term,
            )
            effects.extend(self._start_election(now, suspect=self.leader_id))
        elif deadline is not None and now >= deadline:
            self.election.finish()
        return effects

    def _elected(self, now: float) -> list[Effect]:
        gone = self._known_gone(now)  # before we forget who led
        effects: list[Effect] = []
        term = self.election.term
        started = self.election.started_at if self.election.started_at is not None else now
        self.election.finish()
        self.leadership = None
        self._set_epoch(Epoch(term, self.server_id), effects)
        self.leader_id = self.server_id
        self.leader_addr = self.config.addr
        self._become(ServerRole.SYNCING, "elected")
        self.log_event(
            effects,
            "elected",
            f"server {self.server_id} won round {term} in {now - started:.3f}s; syncing",
            term=term,
            duration=round(now - started, 6),
        )
        self._sync_wait = {}
        quiet = self.config.timing.leader_timeout
        for sid, addr in sorted(self.peers.items()):
            if sid in gone or now - self.peer_heard.get(sid, -quiet) > quiet:
                continue  # gone (or never heard): do not wait for its sync answer
            token = self.next_token()
            self._sync_wait[sid] = token
            effects.append(
                Send(addr, SyncRequest(self.server_id, self.epoch, token, self.log.clock))
            )
        self._sync_deadline = now + self.config.timing.sync_timeout
        if not self._sync_wait:
            effects.extend(self._take_office(now))
        return effects

    def _take_office(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        self._become(ServerRole.LEADER, "synced")
        missing = sorted(self._sync_wait)
        self._sync_wait.clear()
        self._departed.clear()
        self._admitted_seq = None
        leadership = self.leadership = Leadership(self, self.epoch, now)
        leadership.serve_deadline = now + self.config.timing.sync_timeout
        if self.state.servers.get(self.server_id) != self.config.addr:
            from tchat.core.messages import ServerJoined

            _, persist = leadership.sequence(ServerJoined(self.server_id, self.config.addr), now)
            effects.extend(persist)
        effects.extend(leadership.notify_clashes())
        self._next_heartbeat = now
        self._next_retry = now
        self._next_discovery = now + DISCOVERY_INTERVAL
        announce = NewLeader(self.server_id, self.config.addr, self.epoch, self.servers)
        effects.extend(Send(addr, announce) for _, addr in sorted(self.peers.items()))
        effects.extend(Send(u.addr, announce) for _, u in sorted(self.state.users.items()))
        effects.append(LeaderChanged(self.server_id, self.config.addr, self.epoch))
        self.log_event(
            effects,
            "new-leader",
            f"server {self.server_id} leads epoch {self.epoch}"
            + (f" (no sync answer from {missing})" if missing else ""),
            epoch=str(self.epoch),
            leader=self.server_id,
        )
        return effects

    def _on_new_leader(
        self,
        epoch: Epoch,
        addr: str,
        servers: tuple[ServerInfo, ...],
        effects: list[Effect],
        now: float,
    ) -> None:
        for info in servers:
            if info.server_id != self.server_id:
                self.peers.setdefault(info.server_id, info.addr)
        if epoch > self.epoch:
            self._follow(epoch, addr, effects, now)
        elif epoch < self.epoch:
            effects.append(Send(addr, StaleEpoch(self.server_id, self.epoch, self.leader_addr)))
