"""A server's answers to anyone who asks: Discover and StatusRequest (sans-IO)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tchat.core import codec
from tchat.core.messages import (
    STATUS_MEMBERS,
    STATUS_ROOMS,
    STATUS_USERS,
    DiscoverReply,
    RoomInfo,
    StatusReply,
)

if TYPE_CHECKING:
    from tchat.core.server_context import ServerView


def discover_reply(node: ServerView, nonce: int) -> DiscoverReply:
    """Who we are, whom we follow, and the servers we know: the answer to a Discover."""
    return DiscoverReply(
        node.server_id,
        node.config.addr,
        node.leader_id,
        node.leader_addr,
        node.epoch,
        node.servers,
        nonce,
    )


def status_reply(node: ServerView, nonce: int, full: bool = False) -> StatusReply:
    """What a StatusRequest asks: our view of the cluster, within one frame.

    Only ``full`` (a request signed with the cluster key) gets users, rooms and their
    counts: who is online, from which address, and who is in which room is nobody
    else's business. Servers' addresses stay: a client needs them to connect.
    """
    live = tuple(sorted(node.live_backups | {node.server_id}))
    who = (
        node.server_id,
        node.config.addr,
        node.role.value,
        node.epoch,
        node.leader_id,
        node.leader_addr,
        node.servers,
        live,
    )
    if not full:
        return StatusReply(*who, (), (), 0, nonce, 0, 0, full=False)
    state = node.state
    names = sorted(state.rooms)[:STATUS_ROOMS]
    rooms = tuple(
        RoomInfo(
            room,
            state.rooms[room].group,
            tuple(sorted(state.rooms[room].members)[:STATUS_MEMBERS]),
            state.rooms[room].messages,
        )
        for room in names
    )
    users = tuple(state.users[name].info() for name in sorted(state.users)[:STATUS_USERS])
    # A reply is one frame: each list keeps what fits a third of the budget, the last
    # third is for the server list (the counts below say how many there are in all).
    # Long names and addresses made 300 users ~120 KB.
    rooms = rooms[: codec.take(rooms, codec.packed_size, codec.FRAME_BUDGET // 3)]
    users = users[: codec.take(users, codec.packed_size, codec.FRAME_BUDGET // 3)]
    return StatusReply(*who, users, rooms, len(node.log), nonce, len(state.users), len(state.rooms))
