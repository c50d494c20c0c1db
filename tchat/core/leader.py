"""What a server does while it leads an epoch: replicate, commit, and serve clients.

Longer than 400 lines: sequencing, commit and the backups' admissions and acknowledgements
change one state together (the pending entries, each Replica's acknowledged position, the
clock every admitted backup holds), and the commit rule reads all of it at once. Split, the
replica half would write the commit half's fields, a helper that is the node in disguise.
What the leader does for clients is in desk.py, and how it streams to them in stream.py."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tchat.core import codec
from tchat.core.desk import ClientDesk
from tchat.core.effects import Effect, Persist, Send
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    Ack,
    Admit,
    Append,
    AppendAck,
    Dot,
    Entry,
    EntryBody,
    Epoch,
    JoinRequest,
    NameReleased,
    Origin,
    Register,
    ServerJoined,
    ServerLeft,
    Submit,
    SyncData,
    SyncRequest,
    UserOffline,
    UserOnline,
)
from tchat.core.node_context import Pending
from tchat.core.stream import BEAT_SLOTS, ClientStreams
from tchat.core.vclock import VectorClock

RETRANSMIT_BATCHES = 64  # batches resent to a lagging backup per retransmit tick, at most

if TYPE_CHECKING:
    from tchat.core.node_context import ServerCore


@dataclass(slots=True)
class Replica:
    """A backup as the leader sees it."""

    server_id: int
    addr: str
    acked_seq: int
    acked_clock: VectorClock
    last_heard: float
    admitted: bool = False


class Leadership:
    """The leader's state for one epoch. Dropped whole when the server steps down."""

    def __init__(self, node: ServerCore, epoch: Epoch, now: float) -> None:
        self.node = node
        self.epoch = epoch
        self.seq = 0
        # seq -> (the batch's entries, when it first went out), until every backup has it
        self.batches: dict[int, tuple[tuple[Entry, ...], float]] = {}
        self.outbox: list[Entry] = []
        self.pending: deque[Pending] = deque()
        self.pending_dots: dict[Dot, Pending] = {}
        self.replicas: dict[int, Replica] = {}
        self.serving = False
        self.serve_deadline = now
        self.waiting_registers: list[tuple[Register, str]] = []
        self.streams = ClientStreams(epoch, self._committed_view())
        self.desk = ClientDesk(self)
        self.resync_needed = False
        self._merged_pending = 0  # merged entries not committed yet
        self._sync_tokens: dict[int, tuple[int, float]] = {}  # backup -> (token, sent at)
        # When the next client heartbeat step is due: BEAT_SLOTS of them per
        # client_heartbeat_interval, each beating one slot of sessions (ClientStreams)
        self.next_client_beat = now + node.config.timing.client_heartbeat_interval / BEAT_SLOTS
        self.next_retry = now
        self.deferred: list[tuple[Submit, str, float]] = []
        # Acks of entries a live backup does not hold yet (a resent op recorded earlier, or
        # the canonical copy of a duplicate): sent once every admitted backup holds them.
        self.held_acks: list[tuple[Entry, str, int]] = []

    def _committed_view(self) -> ClusterState:
        node = self.node
        floor = node.log.floor
        if floor is None or all(p.entry.key >= floor for p in self.pending):
            # Every uncommitted entry is in the window: the fold below it is committed.
            return node.fold_from_floor(lambda entry: entry.dot not in self.pending_dots)
        view = node.new_state()
        for entry in node.log.iter_entries():
            if not node.log.is_duplicate(entry) and entry.dot not in self.pending_dots:
                view.apply(entry)
        return view

    # -- sequencing ----------------------------------------------------------------
    def sequence(
        self,
        body: EntryBody,
        now: float,
        origin: Origin | None = None,
    ) -> tuple[Entry, list[Effect]]:
        return self.record(self.next_entry(body, now, origin))

    def next_entry(self, body: EntryBody, now: float, origin: Origin | None = None) -> Entry:
        """The entry ``sequence`` would record for ``body`` now (nothing changes): a caller
        may weigh it first, and then records this very object (its bytes made once)."""
        node = self.node
        me = node.server_id
        # Only our own log's clock: an entry never claims history this replica lacks, which
        # keeps every log causally closed (a clock then says exactly what a log holds).
        clock = node.log.clock.increment(me)
        return Entry(Dot(me, clock[me]), clock, now + node.config.wall_offset, origin, body)

    def record(self, entry: Entry) -> tuple[Entry, list[Effect]]:
        """Add ``entry`` (made by ``next_entry`` since the log last changed) to the log."""
        node = self.node
        node.log.add(entry)
        node.state.apply(entry)
        self._enqueue(entry, [])
        return entry, [Persist(entries=(entry,))]

    def _enqueue(self, entry: Entry, acks: list[tuple[str, int]], merged: bool = False) -> None:
        pending = Pending(entry, acks, merged)
        self.pending.append(pending)
        self.pending_dots[entry.dot] = pending
        self.outbox.append(entry)

    def adopt_merged(self, entries: list[Entry]) -> None:
        """Entries another server brought (a partition healing): replicate them; once they
        are committed every client resumes, and its catch-up (computed from the log, with
        membership as it was at each entry) brings it what it should see of them. Streaming
        them instead would judge membership by the present, and could deliver an old entry
        after one that followed it."""
        for entry in entries:
            self._enqueue(entry, [], merged=True)
        self._merged_pending += len(entries)

    def flush(self, now: float) -> list[Effect]:
        """Ship queued entries to every admitted backup, in batches of at most
        ``batch_max`` entries and FRAME_BUDGET bytes (a batch over the frame cap could
        never be sent: nothing would commit again)."""
        effects: list[Effect] = []
        limit = self.node.config.batch_max
        while self.outbox:
            end = codec.take(self.outbox[:limit], codec.entry_size)
            chunk, self.outbox = tuple(self.outbox[:end]), self.outbox[end:]
            self.seq += 1
            self.batches[self.seq] = (chunk, now)
            message = Append(self.node.server_id, self.epoch, self.seq, chunk)
            for replica in self._admitted():
                effects.append(Send(replica.addr, message))
        effects.extend(self.advance(now))
        return effects

    def _admitted(self) -> list[Replica]:
        return [self.replicas[sid] for sid in sorted(self.replicas) if self.replicas[sid].admitted]

    # -- commit --------------------------------------------------------------------
    def advance(self, now: float) -> list[Effect]:
        """Commit (in order) every entry that every admitted backup holds, and stream it."""
        effects: list[Effect] = []
        if not self.serving:
            return effects
        held = self.held()
        acks: list[Effect] = []  # after the frames: a run of room messages shares one frame
        while self.pending:
            head = self.pending[0]
            if held is not None and not head.entry.clock <= held:
                break
            self.pending.popleft()
            del self.pending_dots[head.entry.dot]
            self._merged_pending -= head.merged
            canonical = head.entry
            shown = streamed = False
            if self._merged_pending:
                # The log took merged entries (still being replicated) at any place in
                # its order, ahead of this one perhaps: the streams' view does not have
                # them, so streaming on it could judge membership wrongly (a kick merged
                # in, its own copy here a duplicate that never streams, and the next room
                # message went to the kicked member). Stop here; every client resumes.
                self.resync_needed = True
            if self.node.log.is_duplicate(head.entry):
                # Another partition recorded this operation first: that copy is the one.
                assert head.entry.origin is not None
                canonical = self.node.log.by_origin(head.entry.origin) or head.entry
            elif head.merged or self.resync_needed:
                # From the first merged entry on, nothing is streamed until every client
                # has resumed: a later entry's clock covers the merged ones, so delivering
                # it first would hide them from the client's catch-up.
                self.resync_needed = True
            else:
                effects.extend(self.streams.publish(head.entry, now))
                streamed = True
                # its room frame is then the sender's acknowledgement
                shown = self.streams.shows_sender(head.entry)
            if not shown:
                for client_id, cmid in head.acks:
                    acks.extend(self.ack_when_held(canonical, client_id, cmid, held))
            effects.extend(self._after_commit(head.entry, streamed, now))
        effects.extend(self.streams.flush_rooms(now))
        effects.extend(acks)
        if self.held_acks:
            waiting, self.held_acks = self.held_acks, []
            for entry, client_id, cmid in waiting:
                effects.extend(self.ack_when_held(entry, client_id, cmid, held))
        if self.resync_needed and not self._merged_pending:
            # Merged entries may sit anywhere in log order: the fold in log order is the
            # truth every replica agrees on, so the streams restart from it and every
            # client resumes (catching up on what the merge brought it).
            self.resync_needed = False
            effects.extend(self.streams.reset_view(self._committed_view(), now))
            effects.extend(self.desk.resync_all("the log merged entries from another partition"))
        self._trim_batches()
        return effects

    def held(self) -> VectorClock | None:
        """What every admitted backup holds (the log is causally closed everywhere);
        None when there is no admitted backup."""
        held = None
        for replica in self._admitted():
            held = replica.acked_clock if held is None else held.meet(replica.acked_clock)
        return held

    def ack_when_held(
        self, entry: Entry, client_id: str, cmid: int, held: VectorClock | None
    ) -> list[Effect]:
        """Acknowledge ``entry`` only once every live backup stores it (design: any
        surviving server holds every ack); until then the ack waits in ``held_acks``."""
        if held is not None and not entry.clock <= held:
            self.held_acks.append((entry, client_id, cmid))
            return []
        session = self.streams.sessions.get(client_id)
        if session is None:
            return []
        return [Send(session.addr, Ack(self.epoch, cmid, entry.id))]

    def _after_commit(self, entry: Entry, streamed: bool, now: float) -> list[Effect]:
        """What follows ``entry``'s commit (``streamed``: the streams published it)."""
        body = entry.body
        if isinstance(body, UserOnline):
            effects = self.desk.drop_replaced() if self.node.state.replaced else []
            effects.extend(self.desk.on_login_committed(body, streamed, now))
            return effects
        if isinstance(body, UserOffline):
            session = self.streams.sessions.get(body.client_id)
            if session is not None and session.name == body.name:
                self.streams.detach(body.client_id)
        if isinstance(body, NameReleased):
            # Said at the commit, not when sequenced: the operator's `tchat admin` waits
            # for this (the runtime listens) before it says the name is free.
            return [
                self.node.log_event("name-released", f"name {body.name} released", user=body.name)
            ]
        return []

    def _trim_batches(self) -> None:
        admitted = self._admitted()
        floor = min((r.acked_seq for r in admitted), default=self.seq)
        for seq in [s for s in self.batches if s <= floor]:
            del self.batches[seq]

    # -- backups -------------------------------------------------------------------
    def on_join(self, msg: JoinRequest, addr: str, now: float) -> list[Effect]:
        return self._admit(msg.src, addr, msg.clock, now)

    def _admit(self, src: int, addr: str, clock: VectorClock, now: float) -> list[Effect]:
        """(Re)admit a backup: send it what it lacks, then batches from our current seq.
        Also pulls what it has and we lack. Used for joins, and for a backup we dropped
        from the view (or whose batches we trimmed) that still believes it is admitted."""
        node = self.node
        effects: list[Effect] = []
        replica = self.replicas.get(src)
        if replica is None or replica.addr != addr:
            replica = self.replicas[src] = Replica(src, addr, self.seq, clock, now)
        replica.last_heard = now
        replica.acked_clock = replica.acked_clock.merge(clock)
        if node.state.servers.get(src) != addr:
            _, persist = self.sequence(ServerJoined(src, addr), now)
            effects.extend(persist)
            effects.append(
                node.log_event("server-joined", f"server {src} joined at {addr}", server=src)
            )
        effects.extend(self.pull(src, addr, clock, now))
        chunk, more = node.chunk(node.log.missing_for(clock))
        if not more:
            replica.admitted = True
            replica.acked_seq = self.seq
        effects.append(Send(addr, Admit(node.server_id, self.epoch, self.seq, chunk, not more)))
        return effects

    def server_left(self, src: int, now: float) -> list[Effect]:
        """``src`` stopped gracefully (Leaving, or a leader's hand-over): a ServerLeft entry
        takes it out of every server's list, so no status shows it "down" for ever. If it
        comes back, its join logs a ServerJoined again."""
        node = self.node
        node.forget_peer(src)
        if src not in node.state.servers:
            return []
        _, persist = self.sequence(ServerLeft(src), now)
        return [
            *persist,
            node.log_event("server-left", f"server {src} left the cluster", server=src),
        ]

    def pull(self, src: int, addr: str, clock: VectorClock, now: float) -> list[Effect]:
        """Ask a backup for entries it has and we lack (it led a partition, or restarted
        with history nobody else kept). One pull at a time per backup; a lost one is
        retried after the sync timeout."""
        node = self.node
        if clock <= node.log.clock:
            return []
        started = self._sync_tokens.get(src)
        if started is not None and now < started[1] + node.config.timing.sync_timeout:
            return []
        token = node.next_token()
        self._sync_tokens[src] = (token, now)
        return [Send(addr, SyncRequest(node.server_id, self.epoch, token, node.log.clock))]

    def on_sync_data(self, msg: SyncData, now: float) -> list[Effect]:
        """A backup's entries we lacked (pulled after its JoinRequest)."""
        node = self.node
        started = self._sync_tokens.get(msg.src)
        if started is None or started[0] != msg.token:
            return []
        merged = node.merge_entries(msg.entries)
        effects: list[Effect] = [Persist(entries=tuple(merged))] if merged else []
        self.adopt_merged(merged)
        if merged:
            effects.extend(self.desk.retry_deferred(now))
            effects.append(
                node.log_event(
                    "merged",
                    f"merged {len(merged)} entries from server {msg.src}",
                    server=msg.src,
                    count=len(merged),
                )
            )
        addr = node.peers.get(msg.src)
        if msg.more and addr:
            self._sync_tokens[msg.src] = (msg.token, now)
            effects.append(
                Send(addr, SyncRequest(node.server_id, self.epoch, msg.token, node.log.clock))
            )
        else:
            del self._sync_tokens[msg.src]
        return effects

    def on_ack(self, msg: AppendAck, addr: str, now: float) -> list[Effect]:
        replica = self.replicas.get(msg.src)
        if replica is None or not replica.admitted:
            return self._admit(msg.src, addr, msg.clock, now)
        if msg.epoch == self.epoch and msg.seq < replica.acked_seq:
            # It is behind what we recorded at its (re)admission: that Admit was lost, and
            # the batches in between may be trimmed already. Readmit it from its own clock,
            # or it waits forever for a batch we never resend (sim seed 820098, 6 servers).
            replica.admitted = False
            return self._admit(msg.src, addr, msg.clock, now)
        replica.last_heard = now
        replica.acked_seq = max(replica.acked_seq, msg.seq)
        replica.acked_clock = replica.acked_clock.merge(msg.clock)
        # Lost batches are resent by the retransmit timer, not here: resending on every
        # ack would answer each in-flight batch's ack with more batches (a storm).
        effects = self.pull(msg.src, replica.addr, msg.clock, now)
        effects.extend(self.advance(now))
        return effects

    def _retransmit(self, replica: Replica, now: float) -> list[Effect]:
        """Resend the batches after ``replica``'s last ack that went out at least a
        retransmit interval ago (younger ones may still be on their way).

        A backup takes batches in order only, so after a lost one it drops the rest
        until the gap is filled: it catches up only through this. At 4 batches a tick
        (40 a second) a backup behind a busy leader never did (``tchat sim --ops 30``:
        50 batches behind 10 s after the load stopped); 64 a tick is 640 a second."""
        effects: list[Effect] = []
        sent_before = now - self.node.config.timing.retransmit_interval
        last = min(self.seq, replica.acked_seq + RETRANSMIT_BATCHES)
        for seq in range(replica.acked_seq + 1, last + 1):
            batch = self.batches.get(seq)
            if batch is None:  # trimmed: it must re-admit
                replica.admitted = False
                break
            chunk, sent_at = batch
            if sent_at > sent_before:
                break  # this one and the rest are young: their acks may be on the way
            effects.append(Send(replica.addr, Append(self.node.server_id, self.epoch, seq, chunk)))
        return effects

    def drop_replica(self, server_id: int, reason: str, now: float) -> list[Effect]:
        replica = self.replicas.pop(server_id, None)
        self._sync_tokens.pop(server_id, None)
        if replica is None:
            return []
        effects: list[Effect] = []
        effects.append(
            self.node.log_event(
                "server-dropped",
                f"server {server_id} dropped: {reason}",
                server=server_id,
                reason=reason,
            )
        )
        effects.extend(self.advance(now))
        return effects

    def tick(self, now: float) -> list[Effect]:
        node = self.node
        timing = node.config.timing
        effects: list[Effect] = []
        if now >= self.next_retry:
            self.next_retry = now + timing.retransmit_interval
            effects.extend(self.desk.retry_deferred(now))
            for sid in sorted(self.replicas):
                replica = self.replicas[sid]
                if (
                    now - replica.last_heard > timing.backup_timeout
                    and now >= node.wake.judge_after
                ):
                    effects.extend(self.drop_replica(sid, "silent", now))
                elif replica.admitted and replica.acked_seq < self.seq:
                    effects.extend(self._retransmit(replica, now))
        if not self.serving and (
            now >= self.serve_deadline or all(r.admitted for r in self.replicas.values())
        ):
            self.serving = True
            effects.append(
                node.log_event(
                    "serving",
                    f"leader {node.server_id} serving epoch {self.epoch}",
                    epoch=str(self.epoch),
                )
            )
            waiting, self.waiting_registers = self.waiting_registers, []
            for message, addr in waiting:
                effects.extend(self.desk.on_register(message, addr, now))
            effects.extend(self.advance(now))
        due = self.streams.lobby_due
        if due is not None and now >= due:
            effects.extend(self.streams.flush_lobby(now))
        if now >= self.next_client_beat:
            # Steps on a fixed grid, so BEAT_SLOTS steps make one interval and each session
            # (its slot beaten every BEAT_SLOTS-th step) still hears from us once per
            # client_heartbeat_interval: a client's client_leader_timeout (3 intervals) and
            # its probe at 2/3 of it hold as before. A late step (a stalled loop) moves the
            # grid rather than catching up: a burst of overdue slots is the stall we avoid.
            step = timing.client_heartbeat_interval / BEAT_SLOTS
            self.next_client_beat += step
            if self.next_client_beat <= now:
                self.next_client_beat = now + step
            round_starts = self.streams.beat_cursor == 0
            effects.extend(self.streams.heartbeats(node.server_id, now))
            if round_starts:  # the round's LobbyBeat went out; expiry stays once a round
                effects.extend(self.desk.expire_clients(now))
        return effects

    def next_deadline(self) -> float:
        times = [self.next_retry, self.next_client_beat]
        if self.streams.lobby_due is not None:
            times.append(self.streams.lobby_due)
        if not self.serving:
            times.append(self.serve_deadline)
        return min(times)
