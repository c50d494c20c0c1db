"""Configuration of core nodes: frozen dataclasses passed in, never globals."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_SERVER_ID = 2**53 - 1  # every protocol int is below 2**53 (schema.MAX_INT)


@dataclass(frozen=True, slots=True)
class Timing:
    """Every timer of the protocol, in seconds."""

    heartbeat_interval: float = 0.05  # leader -> servers
    leader_timeout: float = 0.25  # a backup suspects a silent leader
    backup_timeout: float = 0.25  # the leader drops a silent backup from its view
    hop_timeout: float = 0.06  # LCR: wait for a hop's ack before skipping the neighbour
    election_timeout: float = 0.6  # plus one hop_timeout per server: then a fresh round
    sync_timeout: float = 0.3  # a leader-elect gives up on a silent server's sync
    retransmit_interval: float = 0.1  # unacknowledged Append batches are resent
    client_heartbeat_interval: float = 0.5  # leader -> clients
    client_timeout: float = 3.0  # the leader logs out a silent client
    client_leader_timeout: float = 1.5  # a client suspects a silent leader
    client_retry_interval: float = 0.25  # client resends register / discover / submits
    # A leader holds a client's message whose clock covers entries it lacks (seen on the
    # other side of a partition) until it has pulled them, at most this long; after that
    # it orders the message without them (their holders are gone).
    causal_wait: float = 2.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    server_id: int
    addr: str
    timing: Timing = field(default_factory=Timing)
    multicast_base: str = "239.255.42.0"  # first group address of the room range
    multicast_count: int = 1024  # groups in the range
    multicast_port: int = 47471
    batch_max: int = 256  # entries per Append
    sync_chunk_bytes: int = 24_000  # payload budget of one SyncData / Replay frame
    wall_offset: float = 0.0  # added to ``now`` for entry timestamps (wall clock)
    # A user's rooms and a room's members bound what one login costs: its Welcome lists
    # every room it is in, and each room message is fanned out to every member.
    max_rooms_per_user: int = 100
    max_room_members: int = 1000
    # Log entries kept in memory (the tail in key order); older ones are read from the
    # log archive (the SQLite store) when catch-up, replay or scrollback needs them.
    hot_entries: int = 20_000
    # Entries between the copies of the fold kept below the window (a merge that lands
    # below it re-folds from the copy before it: at most this many entries read back).
    fold_snapshot_every: int = 100_000

    def __post_init__(self) -> None:
        # Every server frame carries this ID; a peer's decoder refuses one out of range.
        if not 0 < self.server_id <= MAX_SERVER_ID:
            raise ValueError(f"server ID {self.server_id} is not in [1, 2**53)")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    name: str
    client_id: str
    addr: str
    timing: Timing = field(default_factory=Timing)
    multicast: bool = True  # False: ask for rooms over the session
    # False: do not follow the user list (none at login, no lobby frames after). For bots
    # and load generators: 10,000 clients in a few processes cannot each apply 10,000 logins.
    lobby: bool = True
    wall_offset: float = 0.0
    # The raw public key of the user's identity: its Registers name it, and the runtime
    # (or the simulator) signs each for the session it goes out on.
    identity: bytes = b""
