"""Every wire message and log entry of the protocol, one frozen dataclass each.

The codec (``tchat.core.codec``) turns these into msgpack frames and back, validating
every field against the annotations declared here. Field order is wire order: append
new fields at the end and bump ``PROTOCOL_VERSION`` when changing an existing one.

Longer than 400 lines: this is the protocol's one table of records, a short frozen
dataclass per message, entry body and operation, closed by the tuples (MESSAGE_TYPES,
ENTRY_BODY_TYPES, OPERATION_TYPES) whose order is the wire's tags. Kept whole, the wire
format reads in one place and a tag's position cannot drift between files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from tchat.core.vclock import VectorClock

# 2: the lobby channel (LobbyFrame, Welcome.lobby); 3: LobbyBeat; 4: RoomFrame carries a run
# of consecutive entries (RoomFrame.entries); 5: Register.attempt; 6: a room message
# streamed back to its sender is its acknowledgement (the leader sends no Ack for it);
# 7: a Welcome's rooms may come in RoomList chunks before it (Welcome.room_count); 8: accounts
# (Register.identity and .proof, Challenge, UserOnline.identity, NameClaimed, NameReleased);
# 9: room topics (SetTopic, RoomTopic, RoomInfo.topic, RoomSummary.topic), away reasons
# (SetAway.away_reason, UserStatus.away_reason, UserInfo.away_reason), account
# passwords (Register.password, SetPassword, PasswordSet, KeyAdded) and private rooms
# (CreateRoom, SetRoomMode, InviteUser, KickUser; RoomCreated, RoomKicked, RoomMode,
# RoomInvited): a record's arity is checked, so an 8 peer could not read a 9 Register anyway
# RoomKeyGrant (a room's multicast key, over the encrypted session) is a new tag at the end
# of MESSAGE_TYPES: an older peer never gets one (only a secure leader sends it to clients).
# LobbyBeat.beat (its number in the leader's epoch, so a replayed beat is told apart) is
# also 9: nothing of 9 has shipped.
# 10: no codec frame changed, but the sealed room datagram did (tchat/crypto/rooms.py
# version 2: the room's name and sequence numbers moved inside the AEAD, key ids random).
# A 9 peer would log in and then fail every room frame silently (repairing all over TCP):
# the bump makes it refuse at the handshake instead.
PROTOCOL_VERSION = 10

MAX_NAME = 32
MAX_ROOM = 32
MAX_TEXT = 4000
MAX_ADDR = 64
MAX_REASON = 200
# A room's topic, in characters: one line in a header, and a bound on every frame that
# carries one (a Welcome names each of its rooms' topics).
MAX_TOPIC = 300
# An away reason, in code points: a status line, not a message (irssi shows it in /whois).
MAX_AWAY_REASON = 160
# Metadata of a trailing field an older entry may lack: the decoder fills in its default,
# so a log stored before the field existed still loads (a new peer still sends it).
OPTIONAL = {"optional": True}
# Servers of one cluster at most. A clock has one entry per server, so this bounds the
# clocks an entry carries, and with the limits above the largest entry (PROTOCOL.md §1).
MAX_SERVERS = 64
# Private conversations the servers keep per account (the most recent ones), and so the
# most peer names a Welcome lists: 50 names of MAX_NAME four-byte characters are 6.6 KB,
# within the frame's headroom over a Welcome's rooms (WELCOME_ROOM_BYTES).
MAX_PEERS = 50
IDENTITY_SIZE = 32  # a raw Ed25519 public key
PROOF_SIZE = 64  # an Ed25519 signature
NONCE_SIZE = 32  # a login Challenge's nonce
ROOM_KEY_SIZE = 32  # a room key (ChaCha20-Poly1305)
UNSIGNED = bytes(PROOF_SIZE)  # a Register's proof until the runtime signs it
# Account passwords (SECURITY.md "Passwords"). A password is 8..1024 bytes of UTF-8: 8 is
# NIST SP 800-63B's floor, 1024 bounds what one argon2id hash reads. The wire bounds it in
# characters (schema.py); the leader's runtime checks the bytes before it hashes anything.
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def password_problem(password: str) -> str | None:
    """Why ``password`` is not one a leader takes, or None: bounded in bytes, as argon2 reads
    it (the client asks the same before it sends one)."""
    size = len(password.encode("utf-8", "surrogatepass"))
    if size < MIN_PASSWORD:
        return f"a password has at least {MIN_PASSWORD} bytes"
    if size > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} bytes"
    return None


# A PHC string ("$argon2id$v=19$m=65536,t=3,p=1$salt$hash") is ~100 characters at our
# parameters; a longer one is no hash we made.
MAX_PHC = 256
PHC_PREFIX = "$argon2id$"
# Keys (devices) one account holds: the key it was claimed with and those added by a
# password login on another machine. Past it a password login is refused.
MAX_KEYS = 8


# --------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True, order=True)
class Dot:
    """Unique ID of a log entry: the server that sequenced it and that server's counter."""

    server: int
    counter: int

    def __str__(self) -> str:
        return f"{self.server}.{self.counter}"


@dataclass(frozen=True, slots=True, order=True)
class Epoch:
    """A leader's term. Ordered by (term, leader), so two partitions never share one."""

    term: int
    leader: int

    def __str__(self) -> str:
        return f"{self.term}:{self.leader}"


NO_EPOCH = Epoch(0, 0)


@dataclass(frozen=True, slots=True)
class Origin:
    """Who asked for an entry: used to deduplicate resent client operations."""

    client_id: str
    cmid: int


@dataclass(frozen=True, slots=True)
class ServerInfo:
    server_id: int
    addr: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    addr: str
    status: str  # "online" | "away"
    since: float
    away_reason: str = ""  # why away ("" when online, or away with no reason given)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """A room as a member sees it when joining or resuming."""

    room: str
    group: str  # multicast "ip:port"
    members: tuple[str, ...]
    head: int  # gsn of the room's last frame in this epoch: the member's chain start
    topic: str = ""  # the room's topic ("" for none)


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """A room in the directory: a public one for anyone, a private one for its people."""

    room: str
    group: str
    member_count: int
    members: tuple[str, ...]  # the first ROOM_SUMMARY_MEMBERS, sorted
    messages: int
    last_ts: float  # the last message's time, 0 if none
    topic: str = ""  # the room's topic ("" for none)


ROOM_SUMMARY_MEMBERS = 50
ROOMS_PER_REPLY = 100
# The lobby: the channel every client is in, carrying user-list changes (DESIGN's "system
# room"). Its name has a space, which no room name may have, so it never clashes with one.
LOBBY = " lobby"


@dataclass(frozen=True, slots=True)
class Touch:
    """A member (or a room) that got frames through another channel since a frame's ``prev``."""

    name: str
    gsn: int


# --------------------------------------------------------------------------- entry bodies
class EntryBody:
    """Base of what a log entry records."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ServerJoined(EntryBody):
    server_id: int
    addr: str


@dataclass(frozen=True, slots=True)
class ServerLeft(EntryBody):
    server_id: int


@dataclass(frozen=True, slots=True)
class UserOnline(EntryBody):
    """A session of ``name`` logged in; ``identity`` is the key its login proved."""

    name: str
    addr: str
    client_id: str
    identity: bytes = bytes(IDENTITY_SIZE)


@dataclass(frozen=True, slots=True)
class UserOffline(EntryBody):
    name: str
    client_id: str
    reason: str
    cursor: VectorClock  # what the session had been sent: where its next login resumes


@dataclass(frozen=True, slots=True)
class UserStatus(EntryBody):
    name: str
    away: bool
    away_reason: str = field(default="", metadata=OPTIONAL)  # absent before version 9


@dataclass(frozen=True, slots=True)
class RoomJoined(EntryBody):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class RoomLeft(EntryBody):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class RoomCreated(RoomJoined):
    """``name`` creates ``room``, owns it and is its first member (a RoomJoined, so every
    reader of joins treats it as one). A room made by a plain RoomJoined is public."""

    private: bool


@dataclass(frozen=True, slots=True)
class RoomKicked(RoomLeft):
    """The room's owner ``by`` removed ``name`` (a RoomLeft, so every reader of leaves
    treats it as one); it also withdraws the member's invitation."""

    by: str


@dataclass(frozen=True, slots=True)
class RoomMode(EntryBody):
    """The owner ``by`` makes ``room`` private (members by invitation only) or public."""

    room: str
    by: str
    private: bool


@dataclass(frozen=True, slots=True)
class RoomInvited(EntryBody):
    """The owner ``by`` lets ``name`` join private ``room`` (once: joining uses it up)."""

    room: str
    name: str
    by: str


@dataclass(frozen=True, slots=True)
class Chat(EntryBody):
    sender: str
    room: str | None
    to: str | None
    text: str
    action: bool  # "/me" message
    sender_clock: VectorClock  # what the sender had delivered when it sent


@dataclass(frozen=True, slots=True)
class NameClaimed(EntryBody):
    """``name`` is the account of ``identity`` from now on: first come, first served."""

    name: str
    identity: bytes


@dataclass(frozen=True, slots=True)
class NameReleased(EntryBody):
    """An operator freed ``name``: the next login of any key claims it afresh."""

    name: str


# The reason of the UserOffline entries a release writes: the owner's client stops on it
# rather than log in again (its key would claim the name straight back).
RELEASED_REASON = "name released"


def released_notice(name: str) -> str:
    """What the owner's client says when an operator released its name."""
    return (
        f"an operator released the name {name} (tchat admin release-name):"
        " this key no longer owns it"
    )


@dataclass(frozen=True, slots=True)
class RoomTopic(EntryBody):
    """``by`` set ``room``'s topic (``topic`` "" clears it); the latest in log order counts."""

    room: str
    topic: str
    by: str


@dataclass(frozen=True, slots=True)
class PasswordSet(EntryBody):
    """``name``'s password is the one ``phc`` (an argon2id PHC string, made by the leader's
    runtime) verifies, from now on: set or changed by a session that proved a key of it."""

    name: str
    phc: str


@dataclass(frozen=True, slots=True)
class KeyAdded(EntryBody):
    """``identity`` is a key of the account ``name`` from now on: a login on another
    machine proved the account's password and this key on one session."""

    name: str
    identity: bytes


@dataclass(frozen=True, slots=True)
class KeyRemoved(EntryBody):
    """``identity`` is no key of ``name`` any more (``/devices remove``, from a session of
    another of its keys): its sessions end, and a login with it is another key's."""

    name: str
    identity: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One element of the replicated, grow-only log."""

    dot: Dot
    clock: VectorClock
    ts: float
    origin: Origin | None
    body: EntryBody

    @property
    def key(self) -> tuple[int, int, int]:
        """Deterministic total order extending happened-before (clock sum first)."""
        return (self.clock.total, self.dot.server, self.dot.counter)

    @property
    def id(self) -> str:
        return str(self.dot)


# --------------------------------------------------------------------------- messages
class Message:
    """Base of every wire message."""

    __slots__ = ()
    from_server: ClassVar[bool] = False  # signed with the cluster key when one is set


# discovery ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Discover(Message):
    addr: str
    role: str  # "client" | "server"
    nonce: int
    server_id: int  # the asking server's ID; 0 for a client


@dataclass(frozen=True, slots=True)
class DiscoverReply(Message):
    server_id: int
    addr: str
    leader_id: int  # 0 when no leader is known
    leader_addr: str
    epoch: Epoch
    servers: tuple[ServerInfo, ...]
    nonce: int
    from_server: ClassVar[bool] = True


# server <-> server -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JoinRequest(Message):
    src: int
    addr: str
    epoch: Epoch
    clock: VectorClock
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class SyncRequest(Message):
    """Send me the entries my clock lacks. ``token`` matches the reply to the round."""

    src: int
    epoch: Epoch
    token: int
    clock: VectorClock
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class SyncData(Message):
    src: int
    epoch: Epoch
    token: int
    entries: tuple[Entry, ...]
    clock: VectorClock  # the sender's whole log
    more: bool
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Append(Message):
    """Leader -> backup: batch ``seq`` of this epoch (batches before it must be stored)."""

    src: int
    epoch: Epoch
    seq: int
    entries: tuple[Entry, ...]
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class AppendAck(Message):
    """Backup -> leader: every batch up to ``seq`` is durably stored. Also a heartbeat reply.

    ``clock`` is the backup's whole log (causally closed), so the leader knows exactly
    which entries it holds.
    """

    src: int
    epoch: Epoch
    seq: int
    clock: VectorClock
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Admit(Message):
    """Leader -> (re)joining backup: the entries it lacks; then batches after ``base_seq``."""

    src: int
    epoch: Epoch
    base_seq: int
    entries: tuple[Entry, ...]
    done: bool
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    src: int
    addr: str
    epoch: Epoch
    seq: int  # last batch sent in this epoch: lets a backup notice a lost tail
    servers: tuple[ServerInfo, ...]
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Election(Message):
    """LCR token: the largest server ID seen so far in round ``term``."""

    src: int
    term: int
    candidate: int
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class ElectionAck(Message):
    src: int
    term: int
    candidate: int
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class NewLeader(Message):
    """Announced by a freshly elected leader to every server and client."""

    src: int
    addr: str
    epoch: Epoch
    servers: tuple[ServerInfo, ...]
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class StepDown(Message):
    """A stopping leader hands over: elect a successor now, without waiting for a timeout."""

    src: int
    epoch: Epoch
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Leaving(Message):
    """A stopping backup: drop me from the view now."""

    src: int
    epoch: Epoch
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class StaleEpoch(Message):
    """Your frame's epoch is older than the one I follow."""

    src: int
    epoch: Epoch
    leader_addr: str
    from_server: ClassVar[bool] = True


# client -> server --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Register(Message):
    """Log in (``cursor`` None) or resume a session after failover or a gap."""

    name: str
    client_id: str
    addr: str
    cursor: VectorClock | None
    multicast: bool  # the client can receive multicast
    lobby: bool  # False: it does not follow the user list (gets none, nor its changes)
    # Counts the client's Registers: a late copy of one already taken is stale.
    attempt: int = 0
    # The login's key (raw Ed25519 public key) and its signature over this session's
    # channel binding and the name (tchat.crypto.identity.sign_binding). The server's
    # runtime verifies it before the core sees the Register, so the core takes
    # ``identity`` as proven for this session.
    identity: bytes = bytes(IDENTITY_SIZE)
    proof: bytes = UNSIGNED
    # The account's password, from a machine whose key is not (yet) one of the account's:
    # only over an encrypted session. The leader's runtime checks it and takes it off before
    # the core sees the Register (the core learns only the verified fact, ``PasswordLogin``).
    password: str = ""


class Operation:
    """Base of what a client asks the leader to write."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendChat(Operation):
    room: str | None
    to: str | None
    text: str
    action: bool


@dataclass(frozen=True, slots=True)
class JoinRoom(Operation):
    room: str


@dataclass(frozen=True, slots=True)
class LeaveRoom(Operation):
    room: str


@dataclass(frozen=True, slots=True)
class CreateRoom(Operation):
    """Create a room that does not exist yet, owned by the sender (``/create``)."""

    room: str
    private: bool


@dataclass(frozen=True, slots=True)
class SetRoomMode(Operation):
    room: str
    private: bool


@dataclass(frozen=True, slots=True)
class InviteUser(Operation):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class KickUser(Operation):
    room: str
    name: str


@dataclass(frozen=True, slots=True)
class SetAway(Operation):
    away: bool
    away_reason: str = ""  # "" when back; the codec caps it at MAX_AWAY_REASON code points


@dataclass(frozen=True, slots=True)
class Logout(Operation):
    pass


@dataclass(frozen=True, slots=True)
class SetTopic(Operation):
    """Set the topic of a room the sender is in ("" clears it)."""

    room: str
    topic: str


@dataclass(frozen=True, slots=True)
class SetPassword(Operation):
    """Set or change the account's password (``/password``). The leader's runtime turns it
    into a ``PasswordHashed`` before the core sees it: the core never holds a password."""

    password: str


@dataclass(frozen=True, slots=True)
class RemoveKey(Operation):
    """Remove a key (a device) from the account: never the one this session proved."""

    identity: bytes


@dataclass(frozen=True, slots=True)
class PasswordHashed(Operation):
    """Runtime -> core only, never on the wire (not in OPERATION_TYPES, so no peer can send
    it): the argon2id hash the leader's runtime made of a ``SetPassword``'s password."""

    phc: str


@dataclass(frozen=True, slots=True)
class PasswordLogin:
    """Runtime -> core only, never on the wire: the leader's runtime verified ``register``'s
    password against the account's hash ``phc`` (and its key proof, as for every Register);
    ``register`` no longer carries the password."""

    register: Register
    phc: str


@dataclass(frozen=True, slots=True)
class Submit(Message):
    """A client operation, resent with the same ``cmid`` until acknowledged."""

    client_id: str
    cmid: int
    op: Operation
    clock: VectorClock  # what the client had delivered
    ts: float


@dataclass(frozen=True, slots=True)
class ClientBeat(Message):
    """Client -> leader: still here, and the gsn of the last frame it delivered. The leader
    answers with a ClientHeartbeat (the heads of its channels) when that is behind them
    (a lost frame, or a lost heartbeat), or when ``probe``: the client heard no leader beat
    for a while (lost multicast LobbyBeats) and asks over its session."""

    client_id: str
    epoch: Epoch
    last: int = 0  # the client's hold-back position (0: nothing yet; gsns start at 1)
    probe: bool = False


@dataclass(frozen=True, slots=True)
class LeaderSuspect(Message):
    """A client hears nothing from the leader: please check, and elect if it is gone."""

    client_id: str
    addr: str
    epoch: Epoch


@dataclass(frozen=True, slots=True)
class HistoryRequest(Message):
    """Scrollback: up to ``limit`` chat entries of a room or private chat before ``before``."""

    client_id: str
    request_id: int
    room: str | None
    peer: str | None
    before: Dot | None
    limit: int


# server -> client --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Challenge(Message):
    """First frame of a server on every accepted connection: the session's channel
    binding, which a login proof signs (so a proof is good for this session only)."""

    nonce: bytes
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class RoomKeyGrant(Message):
    """Leader -> a multicast member, over its encrypted session only: the key that seals
    ``room``'s multicast frames from now on (one key per message). Runtime business: the
    core never sees it (the key bytes are random, and the core is deterministic)."""

    epoch: Epoch  # the leader's: a newer epoch's keys replace every older one
    room: str
    key_id: int  # u32 (checked by the runtime), random: it orders nothing (rooms.py)
    key: bytes = field(repr=False)  # ROOM_KEY_SIZE bytes: never in a log line
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Rejected(Message):
    reason: str
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class NotLeader(Message):
    leader_id: int
    leader_addr: str
    epoch: Epoch
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Replay(Message):
    """Catch-up chat entries a resuming client missed, in log order, before ``Welcome``."""

    epoch: Epoch
    token: int  # the Welcome this belongs to
    entries: tuple[Entry, ...]
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class UserList(Message):
    """The whole user list, in chunks, before ``Welcome``. Chunks of one snapshot are
    the same frames for every Welcome that uses it (encoded once by the leader)."""

    epoch: Epoch
    snapshot: int  # the user list this chunk belongs to (Welcome.snapshot)
    users: tuple[UserInfo, ...]
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """Registered (or resumed): the session's stream starts after ``gsn``."""

    epoch: Epoch
    leader_id: int
    leader_addr: str
    name: str
    gsn: int
    rooms: tuple[RoomInfo, ...]
    lobby: RoomInfo  # the lobby channel (user-list changes): its group and chain start
    servers: tuple[ServerInfo, ...]
    token: int  # ties the Replay chunks sent just before to this Welcome
    user_count: int
    replay_count: int
    snapshot: int  # the UserList chunks (sent just before) this Welcome's user list is
    attempt: int = 0  # the Register.attempt it answers (the client drops older ones)
    # Rooms sent in RoomList chunks just before (``rooms`` is then empty): a client in very
    # many rooms would not fit one frame.
    room_count: int = 0
    # The account's private conversations, most recent first (at most MAX_PEERS): a client
    # reopens them at login, a quiet one too (the replay brings only what was said).
    peers: tuple[str, ...] = ()
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class RoomList(Message):
    """A chunk of a Welcome's rooms, sent before it when they would not fit in it."""

    epoch: Epoch
    token: int  # the Welcome this belongs to
    rooms: tuple[RoomInfo, ...]
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Ack(Message):
    epoch: Epoch
    cmid: int
    entry_id: str
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class OpError(Message):
    """The operation ``cmid`` was refused (unknown user, bad room name...)."""

    epoch: Epoch
    cmid: int
    reason: str
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class SessionFrame(Message):
    """One entry of this client's own stream (private messages, users, memberships)."""

    epoch: Epoch
    gsn: int
    prev: int  # gsn of this session's previous frame
    other: int  # latest gsn this client got through room channels in (prev, gsn)
    entry: Entry
    room: RoomInfo | None  # set when the entry makes this client join a room
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class RoomFrame(Message):
    """Room messages committed back to back, multicast once to the room's group (or sent
    over the session): one datagram, one decode and one hold-back step for the run.

    The entries hold the consecutive gsns ``gsn - len(entries) + 1 .. gsn``; nothing of any
    other channel lies between them, so the ordering fields cover (prev, first entry)."""

    epoch: Epoch
    gsn: int  # gsn of the last entry
    prev: int  # gsn of the room's previous frame
    room: str
    other_all: int  # latest gsn in (prev, first) that every member got through its session
    touched: tuple[Touch, ...]  # members with session entries in (prev, first), the latest
    rooms_touched: tuple[Touch, ...]  # rooms sharing members with frames in (prev, first)
    entries: tuple[Entry, ...]  # Chat entries of this room, in commit order (at least one)
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LobbyFrame(Message):
    """User-list entries (logins, logouts, away) for every client, batched: one multicast
    datagram to the lobby group (or the same frame over the sessions of unicast clients).

    The entries hold the consecutive gsns ``gsn - len(entries) + 1 .. gsn``; nothing of any
    other channel lies between them. An empty frame only carries ordering (see stream.py)."""

    epoch: Epoch
    gsn: int  # gsn of the last entry (of the frame itself when it has none)
    prev: int  # gsn of the lobby's previous frame
    touched: tuple[Touch, ...]  # clients with session frames in (prev, first entry), latest
    rooms_touched: tuple[Touch, ...]  # rooms with frames in (prev, first entry), latest
    entries: tuple[Entry, ...]
    room: ClassVar[str] = LOBBY  # the channel's name in hold-back queues and heartbeats
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class ClientHeartbeat(Message):
    """Leader -> client: the heads of the client's channels, so lost tails are noticed."""

    epoch: Epoch
    leader_id: int
    gsn: int
    session_head: int
    room_heads: tuple[Touch, ...]  # (room, gsn of its last frame)
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LobbyBeat(Message):
    """Leader -> the lobby group, one multicast datagram per client heartbeat interval: the
    leader is alive, and the lobby's head (so a lost last lobby frame is noticed). Clients
    that hear it get a ClientHeartbeat over their session only when one of their own
    channels moved (or they probe), not one per client per interval."""

    epoch: Epoch
    leader_id: int
    gsn: int
    lobby_head: int  # gsn of the lobby's last frame
    # 1, 2, 3... within the leader's epoch: the beat carries no time, so without it one
    # captured beat replayed after the leader died would pass for its next (issue 15)
    beat: int
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LeaderAlive(Message):
    """Reply to LeaderSuspect when this server still hears the leader."""

    src: int
    leader_id: int
    leader_addr: str
    epoch: Epoch
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Resync(Message):
    """The leader's log changed under the stream (a merge): resume with your cursor."""

    epoch: Epoch
    reason: str
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class NameClash(Message):
    """After a partition healed, this client's name was also taken on the other side."""

    epoch: Epoch
    name: str
    reason: str
    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class HistoryReply(Message):
    epoch: Epoch
    request_id: int
    entries: tuple[Entry, ...]
    from_server: ClassVar[bool] = True


# status ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StatusRequest(Message):
    """``tchat status``: any server answers with its view of the cluster."""

    addr: str
    nonce: int


@dataclass(frozen=True, slots=True)
class ClusterStatusRequest(StatusRequest):
    """``tchat status`` by someone who holds the cluster secret: the full view, users and
    rooms too. Signed like a server's frame, so a server with a key takes it only signed
    with that key; an anonymous StatusRequest gets only what a client needs."""

    from_server: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class StatusReply(Message):
    """A server's view of the cluster. To an anonymous StatusRequest (``full`` False) it
    carries only what a client needs to find the cluster: no users, no rooms, no counts."""

    server_id: int
    addr: str
    role: str
    epoch: Epoch
    leader_id: int
    leader_addr: str
    servers: tuple[ServerInfo, ...]
    live: tuple[int, ...]  # server IDs the answering server believes alive
    users: tuple[UserInfo, ...]  # the first STATUS_USERS by name
    rooms: tuple[RoomInfo, ...]  # the first STATUS_ROOMS by name, STATUS_MEMBERS members each
    log_size: int
    nonce: int
    user_count: int  # all of them: a reply is one datagram, the lists may be cut short
    room_count: int
    full: bool = True  # False: the answer to an anonymous request (lists and counts empty)
    from_server: ClassVar[bool] = True


# A StatusReply is one datagram: these bound its lists, and the server keeps of them what
# fits the frame budget (long names and addresses would pass the cap at these counts).
STATUS_USERS = 300
STATUS_ROOMS = 100
STATUS_MEMBERS = 50


# room directory ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RoomsRequest(Message):
    """Every room of the cluster, for the Rooms tab."""

    client_id: str
    request_id: int


@dataclass(frozen=True, slots=True)
class RoomsReply(Message):
    """One chunk of the room directory; ``done`` on the last."""

    epoch: Epoch
    request_id: int
    rooms: tuple[RoomSummary, ...]
    done: bool
    from_server: ClassVar[bool] = True


# account keys ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeysRequest(Message):
    """``/devices``: the keys of the asking session's account."""

    client_id: str
    request_id: int


@dataclass(frozen=True, slots=True)
class KeysReply(Message):
    """The account's keys (at most MAX_KEYS: one frame), the claim's first; ``yours`` is
    the position of the key the asking session proved."""

    epoch: Epoch
    request_id: int
    keys: tuple[bytes, ...]
    yours: int
    from_server: ClassVar[bool] = True


# The wire tag of each type is its position here: append, never reorder.
MESSAGE_TYPES: tuple[type[Message], ...] = (
    Discover,
    DiscoverReply,
    JoinRequest,
    SyncRequest,
    SyncData,
    Append,
    AppendAck,
    Heartbeat,
    Election,
    ElectionAck,
    NewLeader,
    StepDown,
    Leaving,
    StaleEpoch,
    Register,
    Submit,
    ClientBeat,
    LeaderSuspect,
    HistoryRequest,
    Rejected,
    NotLeader,
    Replay,
    UserList,
    Welcome,
    Ack,
    OpError,
    SessionFrame,
    RoomFrame,
    ClientHeartbeat,
    LeaderAlive,
    NameClash,
    HistoryReply,
    StatusRequest,
    StatusReply,
    Admit,
    Resync,
    RoomsRequest,
    RoomsReply,
    LobbyFrame,
    LobbyBeat,
    RoomList,
    ClusterStatusRequest,
    Challenge,
    KeysRequest,
    KeysReply,
    RoomKeyGrant,
)

ENTRY_BODY_TYPES: tuple[type[EntryBody], ...] = (
    ServerJoined,
    ServerLeft,
    UserOnline,
    UserOffline,
    UserStatus,
    RoomJoined,
    RoomLeft,
    Chat,
    NameClaimed,
    NameReleased,
    RoomTopic,
    PasswordSet,
    KeyAdded,
    KeyRemoved,
    RoomCreated,
    RoomKicked,
    RoomMode,
    RoomInvited,
)

OPERATION_TYPES: tuple[type[Operation], ...] = (
    SendChat,
    JoinRoom,
    LeaveRoom,
    SetAway,
    Logout,
    SetTopic,
    SetPassword,
    RemoveKey,
    CreateRoom,
    SetRoomMode,
    InviteUser,
    KickUser,
)
