"""A server standing for leadership: LCR rounds, the leader-elect's sync, taking office,
epoch renewal, and clients' reports of a silent leader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tchat.core.effects import (
    Effect,
    LeaderChanged,
    Send,
)
from tchat.core.election import Verdict
from tchat.core.leader import Leadership
from tchat.core.messages import (
    Election,
    ElectionAck,
    Epoch,
    LeaderAlive,
    LeaderSuspect,
    NewLeader,
    ServerInfo,
    ServerJoined,
    StaleEpoch,
    SyncRequest,
)
from tchat.core.roles import Leading, ServerRole, Syncing

if TYPE_CHECKING:
    from tchat.core.server_context import ServerView


class Candidacy:
    """What a ServerNode does to find, become or renew a leader."""

    def __init__(self, node: ServerView) -> None:
        self.node = node
        self.departed: set[int] = set()  # servers that handed over this epoch
        # Servers that stopped gracefully (Leaving) while we did not lead: logged as left
        # if we take office before following another leader (which got the same Leaving
        # and logs it). At most MAX_SERVERS (the handler checks).
        self.left: set[int] = set()
        self.abstain_until = float("-inf")  # after stepping down: relay tokens, do not stand

    def renew_epoch(self, newer: Epoch, who: str, now: float) -> list[Effect]:
        """Lead on under an epoch past ``newer``, which someone knows but whose leader is
        gone: no election needed (we lead already); announce it as a new leader does."""
        node = self.node
        effects: list[Effect] = []
        effects.append(
            node.log_event(
                "epoch-renewed",
                f"{who} knows newer epoch {newer}; renewing ours",
                epoch=str(newer),
            )
        )
        term = max(node.max_term, node.epoch.term, newer.term) + 1
        effects.extend(node.observe_term(term))
        node.election.begin(term, now, self.timeout())
        effects.extend(self.elected(now))
        return effects

    def on_leader_suspect(self, msg: LeaderSuspect, now: float) -> list[Effect]:
        """A client reports its leader silent. Its epoch is a hint, never a fact: a client
        is unauthenticated, so its number neither raises our term nor makes us renew (one
        forged frame with term 2**63 - 1 once stopped every server). We check for
        ourselves and answer with what we know, signed."""
        node = self.node
        effects: list[Effect] = []
        timing = node.config.timing
        if msg.epoch > node.epoch:
            node.count("client-epoch-ignored")
        if node.leadership is not None:
            # We lead: say so. A client that knew a newer epoch whose leader is gone follows
            # us on this answer (the leader itself vouches that it leads; §5 of PROTOCOL.md).
            effects.append(
                Send(
                    msg.addr,
                    LeaderAlive(node.server_id, node.server_id, node.config.addr, node.epoch),
                )
            )
            return effects
        if node.leader_id and now - node.leader_heard <= timing.heartbeat_interval * 3:
            node.count("suspicion-refused")
            effects.append(
                Send(
                    msg.addr,
                    LeaderAlive(node.server_id, node.leader_id, node.leader_addr, node.epoch),
                )
            )
            return effects
        if not node.leader_id:
            # We follow nobody yet (joining): there is no leader of ours to judge, and a
            # round started on a client's word would depose whichever leader is healthy.
            # Our own join timer elects if discovery finds no leader.
            node.count("suspicion-unfounded")
            return effects
        if not node.election.participant and node.role is not ServerRole.SYNCING:
            effects.append(
                node.log_event(
                    "leader-suspected",
                    f"client {msg.client_id} reports leader {node.leader_id} silent; confirmed",
                    leader=node.leader_id,
                )
            )
            effects.extend(self.start(now, suspect=node.leader_id))
        return effects

    def timeout(self) -> float:
        node = self.node
        timing = node.config.timing
        return timing.election_timeout + timing.hop_timeout * (len(node.peers) + 1)

    def start(self, now: float, suspect: int) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        term = max(node.max_term, node.epoch.term) + 1
        effects.extend(node.observe_term(term))
        candidate = node.election.begin(term, now, self.timeout())
        if node.role is not ServerRole.LEADER:
            node.become("start-election")
        effects.append(
            node.log_event(
                "election-started",
                f"server {node.server_id} starts election round {term}",
                term=term,
                initiator=node.server_id,
            )
        )
        skip = self.known_gone(now)
        if suspect:
            skip.add(suspect)
        effects.extend(self.send_token(candidate, now, skip))
        return effects

    def known_gone(self, now: float) -> set[int]:
        """Servers not worth waiting for: one that handed over, and our leader once it has
        missed a few heartbeats (every hop would otherwise wait a hop timeout on it)."""
        node = self.node
        gone = set(self.departed)
        silent = now - node.leader_heard > node.config.timing.heartbeat_interval * 3
        if node.leader_id and node.leader_id != node.server_id and silent:
            gone.add(node.leader_id)
        return gone

    def send_token(self, candidate: int, now: float, skip: set[int]) -> list[Effect]:
        node = self.node
        target = node.election.send(
            candidate, node.ring(), now, node.config.timing.hop_timeout, skip
        )
        if target is None:  # nobody else answers: a ring of one
            if candidate >= node.server_id and candidate == node.server_id:
                return self.elected(now)
            return []
        return [Send(node.peers[target], Election(node.server_id, node.election.term, candidate))]

    def on_election(self, msg: Election, src_addr: str, now: float) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        addr = node.peers.get(msg.src, src_addr)
        effects.append(Send(addr, ElectionAck(node.server_id, msg.term, msg.candidate)))
        if msg.term > node.max_term:
            effects.extend(node.observe_term(msg.term))
        if now < self.abstain_until and msg.candidate != node.server_id:
            # We just stepped down: relay the token without standing ourselves.
            if node.election.relay(msg.term, msg.candidate):
                gone = self.known_gone(now) - {msg.candidate}  # it campaigns: alive
                effects.extend(self.send_token(msg.candidate, now, gone))
            return effects
        verdict, candidate = node.election.receive(msg.term, msg.candidate, now, self.timeout())
        if verdict is Verdict.DROP:
            return effects
        if verdict is Verdict.ELECTED:
            effects.extend(self.elected(now))
            return effects
        if node.role in (ServerRole.JOINING, ServerRole.BACKUP):
            node.become("election-token")
        # The candidate is campaigning, so it is alive even if it is the leader we stopped
        # hearing: skipping it would kill its token for good (sim seed 201613).
        effects.extend(self.send_token(candidate, now, self.known_gone(now) - {candidate}))
        return effects

    def timers(self, now: float) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        hop = node.election.hop_expired(now)
        if hop is not None and hop.term == node.election.term:
            effects.append(
                node.log_event(
                    "hop-skipped",
                    f"server {hop.target} did not acknowledge the election token; skipping",
                    server=hop.target,
                )
            )
            effects.extend(self.send_token(hop.candidate, now, hop.skipped))
        deadline = node.election.deadline
        if deadline is not None and now >= deadline and node.role is ServerRole.CANDIDATE:
            effects.append(
                node.log_event(
                    "election-timeout",
                    f"round {node.election.term} produced no leader; starting another",
                    term=node.election.term,
                )
            )
            effects.extend(self.start(now, suspect=node.leader_id))
        elif deadline is not None and now >= deadline:
            node.election.finish()
        return effects

    def elected(self, now: float) -> list[Effect]:
        node = self.node
        gone = self.known_gone(now)  # before we forget who led
        effects: list[Effect] = []
        term = node.election.term
        started = node.election.started_at if node.election.started_at is not None else now
        node.election.finish()
        effects.append(node.set_epoch(Epoch(term, node.server_id)))
        node.leader_id = node.server_id
        node.leader_addr = node.config.addr
        syncing = Syncing(deadline=now + node.config.timing.sync_timeout)
        node.become("elected", syncing)
        effects.append(
            node.log_event(
                "elected",
                f"server {node.server_id} won round {term} in {now - started:.3f}s; syncing",
                term=term,
                duration=round(now - started, 6),
            )
        )
        quiet = node.config.timing.leader_timeout
        for sid, addr in sorted(node.peers.items()):
            if sid in gone or now - node.peer_heard.get(sid, -quiet) > quiet:
                continue  # gone (or never heard): do not wait for its sync answer
            token = node.next_token()
            syncing.waiting[sid] = token
            effects.append(
                Send(addr, SyncRequest(node.server_id, node.epoch, token, node.log.clock))
            )
        if not syncing.waiting:
            effects.extend(self.take_office(now))
        return effects

    def take_office(self, now: float) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        phase = node.phase
        missing = sorted(phase.waiting) if isinstance(phase, Syncing) else []
        left, self.left = sorted(self.left), set()
        self.departed.clear()
        node.following.admitted_seq = None
        leadership = Leadership(node, node.epoch, now)
        node.become("synced", Leading(leadership))
        leadership.serve_deadline = now + node.config.timing.sync_timeout
        if node.state.servers.get(node.server_id) != node.config.addr:
            _, persist = leadership.sequence(ServerJoined(node.server_id, node.config.addr), now)
            effects.extend(persist)
        for sid in left:  # said Leaving while nobody led (a leader's graceful stop)
            effects.extend(leadership.server_left(sid, now))
        effects.extend(leadership.desk.notify_clashes())
        node.next_heartbeat = now
        node.next_retry = now
        # Look around at once: a server the log no longer names (it left, and came back)
        # hears of us only through our discovery, and it may campaign again before a
        # whole interval passes, forcing a new round each time (sim seed 976171057).
        node.next_discovery = now
        announce = NewLeader(node.server_id, node.config.addr, node.epoch, node.servers)
        effects.extend(Send(addr, announce) for _, addr in sorted(node.peers.items()))
        effects.extend(
            Send(addr, announce)
            for _, user in sorted(node.state.users.items())
            for addr in user.sessions.values()  # every terminal of every user
        )
        effects.append(LeaderChanged(node.server_id, node.config.addr, node.epoch))
        effects.append(
            node.log_event(
                "new-leader",
                f"server {node.server_id} leads epoch {node.epoch}"
                + (f" (no sync answer from {missing})" if missing else ""),
                epoch=str(node.epoch),
                leader=node.server_id,
            )
        )
        return effects

    def on_new_leader(
        self,
        epoch: Epoch,
        addr: str,
        servers: tuple[ServerInfo, ...],
        now: float,
    ) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        for info in servers:
            if info.server_id != node.server_id:
                node.peers.setdefault(info.server_id, info.addr)
        if epoch > node.epoch:
            # The new leader got the same Leaving and logs it: ours would go stale, and
            # be logged wrongly were we elected after the server came back.
            self.left.clear()
            effects.extend(node.following.follow(epoch, addr, now))
        elif epoch < node.epoch:
            effects.append(Send(addr, StaleEpoch(node.server_id, node.epoch, node.leader_addr)))
        return effects
