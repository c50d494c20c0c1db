"""Server roles, their legal transitions, and the discovery cadence."""

from __future__ import annotations

from enum import Enum


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
