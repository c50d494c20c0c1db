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
from tchat.core.roles import ServerRole

if TYPE_CHECKING:
    from tchat.core.server import ServerNode


class Following:
    """What a ServerNode does as a backup (and when it answers a sync)."""

    def __init__(self, node: ServerNode) -> None:
        self.node = node

    def follow(self, epoch: Epoch, leader_addr: str, effects: list[Effect], now: float) -> None:
        """Accept the leader of ``epoch`` (newer than ours) and ask it to admit us."""
        node = self.node
        if node.leadership is not None or node.role is ServerRole.SYNCING:
            node.log_event(
                effects,
                "stepped-down",
                f"server {node.server_id} yields to newer epoch {epoch}",
                epoch=str(epoch),
            )
        node.leadership = None
        node._observe_term(epoch.term, effects)
        node.election.finish()
        node._set_epoch(epoch, effects)
        node.leader_id = epoch.leader
        node.leader_addr = leader_addr
        node._leader_heard = now
        node._admitted_seq = None
        node._sync_wait.clear()
        node._become(ServerRole.JOINING, "follow")
        effects.append(LeaderChanged(epoch.leader, leader_addr, epoch))
        effects.append(Send(leader_addr, self.join_request()))
        node._next_retry = now + node.config.timing.heartbeat_interval * 2

    def join_request(self) -> JoinRequest:
        node = self.node
        return JoinRequest(node.server_id, node.config.addr, node.epoch, node.log.clock)

    def fence(self, epoch: Epoch, leader_addr: str, effects: list[Effect], now: float) -> bool:
        """Epoch fencing for leader frames: True if the frame is of our current epoch."""
        node = self.node
        if epoch < node.epoch:
            node.count("stale-epoch")
            if leader_addr:
                effects.append(
                    Send(leader_addr, StaleEpoch(node.server_id, node.epoch, node.leader_addr))
                )
            return False
        if epoch > node.epoch:
            self.follow(epoch, leader_addr, effects, now)
            return False
        return node.leadership is None and node.role is not ServerRole.SYNCING

    def on_heartbeat(self, msg: Heartbeat, effects: list[Effect], now: float) -> None:
        node = self.node
        node.peers[msg.src] = msg.addr
        for info in msg.servers:
            if info.server_id != node.server_id:
                node.peers.setdefault(info.server_id, info.addr)
        if not self.fence(msg.epoch, msg.addr, effects, now):
            return
        node._leader_heard = now
        node.leader_addr = msg.addr
        node.leader_id = msg.epoch.leader
        if node.role is ServerRole.CANDIDATE:
            node.election.finish()
            node._become(
                ServerRole.BACKUP if node._admitted_seq is not None else ServerRole.JOINING,
                "heartbeat",
            )
        if node._admitted_seq is None:
            effects.append(Send(msg.addr, self.join_request()))
        else:
            effects.append(
                Send(
                    msg.addr,
                    AppendAck(node.server_id, node.epoch, node._admitted_seq, node.log.clock),
                )
            )

    def on_append(self, msg: Append, src_addr: str, effects: list[Effect], now: float) -> None:
        node = self.node
        addr = node.peers.get(msg.src, src_addr)
        if not self.fence(msg.epoch, addr, effects, now):
            return
        node._leader_heard = now
        if node._admitted_seq is None:
            return  # the leader resends once it has admitted us
        if msg.seq == node._admitted_seq + 1:
            added = node.merge_entries(msg.entries)
            if added:
                effects.append(Persist(entries=tuple(added)))
            node._admitted_seq = msg.seq
        effects.append(
            Send(addr, AppendAck(node.server_id, node.epoch, node._admitted_seq, node.log.clock))
        )

    def on_admit(self, msg: Admit, src_addr: str, effects: list[Effect], now: float) -> None:
        node = self.node
        addr = node.peers.get(msg.src, src_addr)
        if msg.epoch < node.epoch:
            node.count("stale-epoch")
            return
        if msg.epoch > node.epoch:
            self.follow(msg.epoch, addr, effects, now)
            effects.pop()  # _follow's JoinRequest: the Admit below answers it already
        node._leader_heard = now
        added = node.merge_entries(msg.entries)
        if added:
            effects.append(Persist(entries=tuple(added)))
        if not msg.done:
            effects.append(Send(addr, self.join_request()))
            return
        if node._admitted_seq is not None and msg.base_seq > node._admitted_seq:
            node._admitted_seq = msg.base_seq  # re-admitted after the leader lost track of us
        if node._admitted_seq is None:
            node._admitted_seq = msg.base_seq
            if node.role is not ServerRole.CANDIDATE:
                node._become(ServerRole.BACKUP, "admitted")
            node.log_event(
                effects,
                "admitted",
                f"server {node.server_id} is a backup of "
                f"leader {node.leader_id} (epoch {node.epoch})",
                epoch=str(node.epoch),
            )
        effects.append(
            Send(addr, AppendAck(node.server_id, node.epoch, node._admitted_seq, node.log.clock))
        )

    def on_sync_request(
        self, msg: SyncRequest, src_addr: str, effects: list[Effect], now: float
    ) -> None:
        node = self.node
        addr = node.peers.get(msg.src, src_addr)
        if msg.epoch < node.epoch:
            effects.append(Send(addr, StaleEpoch(node.server_id, node.epoch, node.leader_addr)))
            return
        if msg.epoch > node.epoch:
            # A leader-elect collecting: the round reached its end; wait for its announcement.
            node._observe_term(msg.epoch.term, effects)
            if node.election.deadline is not None:
                node.election.deadline = max(
                    node.election.deadline, now + node.config.timing.sync_timeout * 2
                )
            node._leader_heard = now
        chunk, more = node.chunk(node.log.missing_for(msg.clock))
        effects.append(
            Send(addr, SyncData(node.server_id, msg.epoch, msg.token, chunk, node.log.clock, more))
        )

    def on_sync_data(self, msg: SyncData, effects: list[Effect], now: float) -> None:
        node = self.node
        if node.leadership is not None:
            if msg.epoch == node.epoch:
                effects.extend(node.leadership.on_sync_data(msg, now))
            return
        if node.role is not ServerRole.SYNCING or node._sync_wait.get(msg.src) != msg.token:
            return
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
            del node._sync_wait[msg.src]
            if not node._sync_wait:
                effects.extend(node.candidacy.take_office(now))
