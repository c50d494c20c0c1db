"""A server following a leader: fencing, admission, numbered batches, and sync answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tchat.core.effects import (
    Effect,
    LeaderChanged,
    Persist,
    Send,
)
from tchat.core.messages import (
    Admit,
    Append,
    AppendAck,
    Epoch,
    Heartbeat,
    JoinRequest,
    StaleEpoch,
    SyncData,
    SyncRequest,
)
from tchat.core.roles import ServerRole, Syncing

if TYPE_CHECKING:
    from tchat.core.server_context import ServerView


class Following:
    """What a ServerNode does as a backup (and when it answers a sync)."""

    def __init__(self, node: ServerView) -> None:
        self.node = node
        self.admitted_seq: int | None = None  # last batch stored, once admitted this epoch

    def follow(
        self, epoch: Epoch, leader_addr: str, now: float, ask_to_join: bool = True
    ) -> list[Effect]:
        """Accept the leader of ``epoch`` (newer than ours) and, unless it is admitting us
        already, ask it to admit us."""
        node = self.node
        effects: list[Effect] = []
        if node.leadership is not None or node.role is ServerRole.SYNCING:
            effects.append(
                node.log_event(
                    "stepped-down",
                    f"server {node.server_id} yields to newer epoch {epoch}",
                    epoch=str(epoch),
                )
            )
        effects.extend(node.observe_term(epoch.term))
        node.election.finish()
        effects.append(node.set_epoch(epoch))
        node.leader_id = epoch.leader
        node.leader_addr = leader_addr
        node.leader_heard = now
        self.admitted_seq = None
        node.become("follow")
        effects.append(LeaderChanged(epoch.leader, leader_addr, epoch))
        if ask_to_join:
            effects.append(Send(leader_addr, self.join_request()))
        node.next_retry = now + node.config.timing.heartbeat_interval * 2
        return effects

    def join_request(self) -> JoinRequest:
        node = self.node
        return JoinRequest(node.server_id, node.config.addr, node.epoch, node.log.clock)

    def fence(self, epoch: Epoch, leader_addr: str, now: float) -> tuple[bool, list[Effect]]:
        """Epoch fencing for leader frames: whether the frame is of our current epoch, and
        what fencing did (refuse a stale leader, follow a newer one)."""
        node = self.node
        if epoch < node.epoch:
            node.count("stale-epoch")
            if not leader_addr:
                return False, []
            return False, [
                Send(leader_addr, StaleEpoch(node.server_id, node.epoch, node.leader_addr))
            ]
        if epoch > node.epoch:
            return False, self.follow(epoch, leader_addr, now)
        return node.leadership is None and node.role is not ServerRole.SYNCING, []

    def on_heartbeat(self, msg: Heartbeat, now: float) -> list[Effect]:
        node = self.node
        node.peers[msg.src] = msg.addr
        for info in msg.servers:
            if info.server_id != node.server_id:
                node.peers.setdefault(info.server_id, info.addr)
        current, effects = self.fence(msg.epoch, msg.addr, now)
        if not current:
            return effects
        node.leader_heard = now
        node.leader_addr = msg.addr
        node.leader_id = msg.epoch.leader
        if node.role is ServerRole.CANDIDATE:
            node.election.finish()
            node.become("heartbeat-admitted" if self.admitted_seq is not None else "heartbeat")
        if self.admitted_seq is None:
            effects.append(Send(msg.addr, self.join_request()))
        else:
            effects.append(
                Send(
                    msg.addr,
                    AppendAck(node.server_id, node.epoch, self.admitted_seq, node.log.clock),
                )
            )
        return effects

    def on_append(self, msg: Append, src_addr: str, now: float) -> list[Effect]:
        node = self.node
        addr = node.peers.get(msg.src, src_addr)
        current, effects = self.fence(msg.epoch, addr, now)
        if not current:
            return effects
        node.leader_heard = now
        if self.admitted_seq is None:
            return effects  # the leader resends once it has admitted us
        if msg.seq == self.admitted_seq + 1:
            added = node.merge_entries(msg.entries)
            if added:
                effects.append(Persist(entries=tuple(added)))
            self.admitted_seq = msg.seq
        effects.append(
            Send(addr, AppendAck(node.server_id, node.epoch, self.admitted_seq, node.log.clock))
        )
        return effects

    def on_admit(self, msg: Admit, src_addr: str, now: float) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        addr = node.peers.get(msg.src, src_addr)
        if msg.epoch < node.epoch:
            node.count("stale-epoch")
            return effects
        if msg.epoch > node.epoch:
            # No JoinRequest: the Admit below answers it already.
            effects.extend(self.follow(msg.epoch, addr, now, ask_to_join=False))
        node.leader_heard = now
        added = node.merge_entries(msg.entries)
        if added:
            effects.append(Persist(entries=tuple(added)))
        if not msg.done:
            effects.append(Send(addr, self.join_request()))
            return effects
        if self.admitted_seq is not None and msg.base_seq > self.admitted_seq:
            self.admitted_seq = msg.base_seq  # re-admitted after the leader lost track of us
        if self.admitted_seq is None:
            self.admitted_seq = msg.base_seq
            if node.role is not ServerRole.CANDIDATE:
                node.become("admitted")
            effects.append(
                node.log_event(
                    "admitted",
                    f"server {node.server_id} is a backup of "
                    f"leader {node.leader_id} (epoch {node.epoch})",
                    epoch=str(node.epoch),
                )
            )
        effects.append(
            Send(addr, AppendAck(node.server_id, node.epoch, self.admitted_seq, node.log.clock))
        )
        return effects

    def on_sync_request(self, msg: SyncRequest, src_addr: str, now: float) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        addr = node.peers.get(msg.src, src_addr)
        if msg.epoch < node.epoch:
            effects.append(Send(addr, StaleEpoch(node.server_id, node.epoch, node.leader_addr)))
            return effects
        if msg.epoch > node.epoch:
            # A leader-elect collecting: the round reached its end; wait for its announcement.
            effects.extend(node.observe_term(msg.epoch.term))
            if node.election.deadline is not None:
                node.election.deadline = max(
                    node.election.deadline, now + node.config.timing.sync_timeout * 2
                )
            node.leader_heard = now
        chunk, more = node.chunk(node.log.missing_for(msg.clock))
        effects.append(
            Send(addr, SyncData(node.server_id, msg.epoch, msg.token, chunk, node.log.clock, more))
        )
        return effects

    def on_sync_data(self, msg: SyncData, now: float) -> list[Effect]:
        node = self.node
        effects: list[Effect] = []
        if node.leadership is not None:
            if msg.epoch == node.epoch:
                effects.extend(node.leadership.on_sync_data(msg, now))
            return effects
        phase = node.phase
        if not isinstance(phase, Syncing) or phase.waiting.get(msg.src) != msg.token:
            return effects
        added = node.merge_entries(msg.entries)
        if added:
            effects.append(Persist(entries=tuple(added)))
        if msg.more:
            effects.append(
                Send(
                    node.peers[msg.src],
                    SyncRequest(node.server_id, node.epoch, msg.token, node.log.clock),
                )
            )
        else:
            del phase.waiting[msg.src]
            if not phase.waiting:
                effects.extend(node.candidacy.take_office(now))
        return effects
