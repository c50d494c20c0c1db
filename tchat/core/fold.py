"""The replicated state machine: users, rooms and servers folded from the log in order.

Longer than 400 lines: every entry kind's effect on the state is one match in ``apply``,
and the records it changes (users and their keys, rooms with owners, topics and
membership stretches) sit beside it; split, an entry's meaning would be read in two
places, and every replica must apply it the same way.
"""

from __future__ import annotations

import ipaddress
import zlib
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field

from tchat.core.messages import (
    MAX_KEYS,
    MAX_PEERS,
    Chat,
    Entry,
    KeyAdded,
    KeyRemoved,
    NameClaimed,
    NameReleased,
    PasswordSet,
    RoomCreated,
    RoomInvited,
    RoomJoined,
    RoomKicked,
    RoomLeft,
    RoomMode,
    RoomTopic,
    ServerJoined,
    ServerLeft,
    UserInfo,
    UserOffline,
    UserOnline,
    UserStatus,
)
from tchat.core.names import LookAlikes
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

Key = tuple[int, int, int]
# Sessions one user may have at once (terminals, a restarted client whose old session has
# not timed out yet): a login past it replaces the oldest.
MAX_SESSIONS = 8
# Names ever claimed: the bound of the account table (a claim is made only by a proven
# login, and each costs a replicated entry; past this the leader refuses new names).
MAX_ACCOUNTS = 1_000_000


def _start(stretch: tuple[Key, Key | None]) -> Key:
    return stretch[0]


# Stretches of membership kept per member and room (join, leave): the newest ones.
STRETCHES_PER_MEMBER = 64
# Pending invitations of one room at most: each costs the room's record a name.
INVITES_PER_ROOM = 100
# Rooms one user may own at most (a room made by /join past it has no owner).
OWNED_ROOMS_MAX = 100


@dataclass(slots=True)
class UserRecord:
    """An online user. ``addr`` and ``client_id`` are its first session's (what the user
    list shows); ``sessions`` all of them, client ID -> address, oldest first."""

    name: str
    addr: str
    client_id: str
    away: bool
    since: float
    identity: bytes = b""
    sessions: dict[str, str] = field(default_factory=dict)
    # client ID -> the key its login proved, for sessions whose key is not ``identity`` (an
    # account's other machines): a new leader must know each session's key (a resume is
    # checked against it, a removed key's sessions are logged out)
    other_keys: dict[str, bytes] = field(default_factory=dict)

    def key_of(self, client_id: str) -> bytes:
        return self.other_keys.get(client_id, self.identity)

    def rebase(self) -> None:
        """When no session of ``identity`` is left (its machine logged out, or its key was
        removed), the oldest session's key stands for the user."""
        if not self.sessions or any(c not in self.other_keys for c in self.sessions):
            return
        self.identity = self.other_keys[next(iter(self.sessions))]
        self.other_keys = {c: k for c, k in self.other_keys.items() if k != self.identity}

    away_reason: str = ""  # why away, as the user gave it ("" if none, or back)

    def info(self) -> UserInfo:
        status = "away" if self.away else "online"
        return UserInfo(self.name, self.addr, status, self.since, self.away_reason)


@dataclass(slots=True)
class RoomRecord:
    name: str
    group: str
    # member name -> key of the RoomJoined entry (what a member may catch up on)
    members: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    messages: int = 0
    last_ts: float = 0.0
    # every stretch of membership, member -> [(join key, leave key or None)]: who was in
    # the room when a given message was sent, for catching up after a gap
    stretches: dict[str, list[tuple[Key, Key | None]]] = field(default_factory=dict)
    topic: str = ""  # the last RoomTopic in log order by a member of the room then
    topic_by: str = ""
    # Who made the room (None: made before rooms had owners, or past OWNED_ROOMS_MAX): only
    # they change its mode, invite and kick. A private room lets in only its owner and the
    # invited (a member stays one while offline: membership is the account's).
    owner: str | None = None
    private: bool = False
    # Key of the entry that made the room public, this time (None while it is private): a
    # member of a public room reads its scrollback back to there, not into a private past.
    public_since: Key | None = None
    invited: set[str] = field(default_factory=set)

    def may_join(self, name: str) -> bool:
        return not self.private or name == self.owner or name in self.invited

    def join(self, name: str, key: Key) -> None:
        if name not in self.members:
            self.members[name] = key
            stretches = self.stretches.setdefault(name, [])
            stretches.append((key, None))
            if len(stretches) > STRETCHES_PER_MEMBER:
                # Every read checks them: a user who joined and left thousands of times
                # would make each entry of a scrollback cost thousands. The oldest go (what
                # they covered is no longer readable by that user: the safe side).
                del stretches[0]

    def leave(self, name: str, key: Key) -> None:
        if self.members.pop(name, None) is not None:
            stretches = self.stretches[name]
            stretches[-1] = (stretches[-1][0], key)

    def was_member(self, name: str, key: Key) -> bool:
        stretches = self.stretches.get(name)
        if not stretches:
            return False
        # The stretches follow each other in key order without overlapping (the fold
        # applies in key order): only the last one begun before ``key`` can hold it.
        index = bisect_left(stretches, key, key=_start) - 1
        if index < 0:
            return False
        end = stretches[index][1]
        return end is None or key < end


@dataclass(frozen=True, slots=True)
class Clash:
    """A login that lost its name to an earlier one when two partitions' logs merged."""

    name: str
    client_id: str


class ClusterState:
    """Deterministic fold of the log. Same entries in the same order -> same state.

    Conflicts that only a merge can produce are resolved here, identically everywhere:
    a name claimed by two keys belongs to the claim first in log order, and a login under
    another key than the name's loses (it is recorded in ``clashes`` so the leader can
    tell that client); two rooms hashed to the same multicast group get the next free one
    in log order.

    ``apply`` returns whether clients see a change: a second session of an online user
    (or the end of one while another lives) changes no user list, so the leader's stream
    publishes nothing for it.
    """

    def __init__(self, multicast_base: str, multicast_count: int, multicast_port: int) -> None:
        self._base = int(ipaddress.IPv4Address(multicast_base))
        self._count = multicast_count
        self._port = multicast_port
        # The lobby (user-list changes, every client) has the address right after the rooms'.
        self.lobby_group = f"{ipaddress.IPv4Address(self._base + self._count)}:{self._port}"
        self.servers: dict[int, str] = {}
        self.users: dict[str, UserRecord] = {}
        self.accounts: set[str] = set()
        self.claims: dict[str, bytes] = {}  # name -> the identity key it was claimed with
        # name -> the keys a password login added (other machines), oldest first; with the
        # claim's key at most MAX_KEYS
        self.added_keys: dict[str, list[bytes]] = {}
        self.passwords: dict[str, str] = {}  # name -> its argon2id PHC string
        self.session_names: dict[str, str] = {}  # client ID of an online session -> its name
        self.offline_cursor: dict[str, VectorClock] = {}
        self.rooms: dict[str, RoomRecord] = {}
        self.rooms_of: dict[str, set[str]] = {}
        # account -> the peers of its private conversations, least recent first (an
        # OrderedDict: a move to the end and a drop of the first are O(1), where a plain
        # dict's pop and first key scan the holes pops leave), at most MAX_PEERS: what a
        # login's Welcome lists, so a quiet conversation reopens too. Only claimed names
        # have a list, so there are at most as many as accounts.
        self.peers_of: dict[str, OrderedDict[str, None]] = {}
        self._groups_used: set[int] = set()
        self.clashes: list[Clash] = []
        # Sessions a login past MAX_SESSIONS replaced (the leader tells and drops them).
        self.replaced: list[Clash] = []
        self._infos: dict[str, UserInfo] = {}  # users as the wire shows them, kept up to date
        self._user_infos: tuple[UserInfo, ...] | None = None  # user_infos(), until a change
        self.closed_sessions: set[str] = set()  # client IDs that logged out: never again
        # name -> key of its first login (the earliest, clashed or not): nothing before it
        # in the log concerns the name, so a login's catch-up starts there, not at entry 1.
        self.first_online: dict[str, Key] = {}
        # Every account's and room's name by skeleton: a new name must not look like one.
        self.user_look_alikes = LookAlikes()
        self.room_look_alikes = LookAlikes()
        self.owned: dict[str, int] = {}  # user -> how many rooms they own

    # -- folding -------------------------------------------------------------
    def apply(self, entry: Entry) -> bool:
        """Apply one entry at the end of the order. False if clients see no change (the
        fold ignored it, or it changed only the sessions of a user online already)."""
        body = entry.body
        if type(body) is Chat:  # the commonest entry by far: no match over every kind
            if body.to is not None:
                if body.to != body.sender:  # a note to oneself opens no conversation
                    self._met(body.sender, body.to)
                    self._met(body.to, body.sender)
                return True
            record = self.rooms.get(body.room) if body.room is not None else None
            if record is not None:
                record.messages += 1
                record.last_ts = entry.ts
            return True
        if isinstance(body, (UserOnline, UserOffline, UserStatus)):
            self._user_infos = None
        match body:
            case ServerJoined(server_id=server_id, addr=addr):
                self.servers[server_id] = addr
            case ServerLeft(server_id=server_id):
                self.servers.pop(server_id, None)
            case NameClaimed(name=name, identity=identity):
                if name in self.claims:
                    return False  # the first claim in log order keeps it
                self.claims[name] = identity
            case NameReleased(name=name):
                if self.claims.pop(name, None) is None:
                    return False
                # The next owner gets neither the old one's devices nor its password.
                self.added_keys.pop(name, None)
                self.passwords.pop(name, None)
                # The next owner reads nothing of the old one's: catch-up starts here.
                self.first_online[name] = entry.key
                self.offline_cursor.pop(name, None)
                # Nor inherits its rooms or invitations (membership is the account's, and
                # outlives sessions): the leader sequenced a RoomLeft for each room just
                # before, so clients saw them go; a merge may not have, so the fold is sure.
                for room in sorted(self.rooms_of.pop(name, set())):
                    self.rooms[room].leave(name, entry.key)
                for record in self.rooms.values():
                    record.invited.discard(name)
                    if record.owner == name:
                        # Nor its rooms' ownership: a private room without an owner lets in
                        # its members and whom it invited, and nobody new.
                        record.owner = None
                # Nor its private conversations; and nobody's conversation with the old
                # owner reopens as one with the next (an operator's rare act: a pass over
                # the lists, each at most MAX_PEERS, is fine).
                self.peers_of.pop(name, None)
                for peers in self.peers_of.values():
                    peers.pop(name, None)
            case UserOnline(name=name, addr=addr, client_id=client_id, identity=identity):
                if self.first_online.setdefault(name, entry.key) == entry.key:
                    self.user_look_alikes.add(name)
                self.claims.setdefault(name, identity)
                current = self.users.get(name)
                # Sessions of one account may prove different keys of it (two machines).
                if (
                    not self.holds_key(name, identity)
                    or self.session_names.get(client_id, name) != name
                ):
                    self.clashes.append(Clash(name, client_id))
                    return False
                if current is not None:
                    # Another session of the same account: the user was online already.
                    if client_id in current.sessions:
                        return False  # a copy of this session's login
                    current.sessions[client_id] = addr
                    if identity != current.identity:
                        current.other_keys[client_id] = identity
                    self.session_names[client_id] = name
                    if len(current.sessions) > MAX_SESSIONS:
                        oldest = next(iter(current.sessions))
                        del current.sessions[oldest]
                        current.other_keys.pop(oldest, None)
                        current.rebase()
                        del self.session_names[oldest]
                        self.replaced.append(Clash(name, oldest))
                    return False
                user = self.users[name] = UserRecord(
                    name, addr, client_id, False, entry.ts, identity, {client_id: addr}
                )
                self._infos[name] = user.info()
                self.session_names[client_id] = name
                self.accounts.add(name)
            case UserOffline(name=name, client_id=client_id, cursor=cursor, reason=reason):
                if reason == "logout":
                    self.closed_sessions.add(client_id)
                current = self.users.get(name)
                if current is None or client_id not in current.sessions:
                    return False
                del current.sessions[client_id]
                current.other_keys.pop(client_id, None)
                del self.session_names[client_id]
                if current.sessions:
                    # Another session lives: the user stays online, and the catch-up
                    # point stays where it was. This session's cursor says what it saw,
                    # not what a terminal whose login is in the log but whose Welcome is
                    # still to come saw: starting that one's replay here lost it what
                    # came between its login and this logout.
                    current.rebase()
                    return False
                self.offline_cursor[name] = self.offline_cursor.get(name, EMPTY_CLOCK).merge(cursor)
                del self.users[name]
                del self._infos[name]
                # Going offline is not leaving: rooms belong to the account, as on an IRC
                # bouncer. The user stays a member (and may read what is said meanwhile:
                # the login's replay brings it) until /leave or /kick.
            case UserStatus(name=name, away=away, away_reason=reason):
                current = self.users.get(name)
                if current is None:
                    return False
                current.away = away
                current.away_reason = reason if away else ""
                current.since = entry.ts
                self._infos[name] = current.info()
            case RoomJoined(room=room, name=name):  # RoomCreated too
                if name not in self.users:
                    return False
                record = self.rooms.get(room)
                if record is None:
                    private = isinstance(body, RoomCreated) and body.private
                    record = self.rooms[room] = self._create(room, name, private)
                    record.public_since = None if private else entry.key
                    self.room_look_alikes.add(room)
                elif not record.may_join(name):
                    # Only a merge gets here (the leader refuses such a join): the room was
                    # made private, or created private, on the other side. The log order
                    # decides, the same everywhere: the earlier creation keeps the room.
                    return False
                record.invited.discard(name)  # an invitation lets one in once
                record.join(name, entry.key)
                self.rooms_of.setdefault(name, set()).add(room)
            case RoomMode(room=room, by=by, private=private):
                record = self.rooms.get(room)
                if record is None or record.owner != by:
                    return False
                if private:
                    record.public_since = None
                elif record.private:
                    record.public_since = entry.key
                    record.invited.clear()
                record.private = private
            case RoomInvited(room=room, name=name, by=by):
                record = self.rooms.get(room)
                if (
                    record is None
                    or record.owner != by
                    or not record.private
                    or name in record.members
                    or len(record.invited) >= INVITES_PER_ROOM
                ):
                    return False
                record.invited.add(name)
            case RoomKicked(room=room, name=name, by=by):
                record = self.rooms.get(room)
                if record is None or record.owner != by or name == by:
                    return False
                record.invited.discard(name)
                if name in record.members:
                    record.leave(name, entry.key)
                    self.rooms_of.get(name, set()).discard(room)
            case RoomLeft(room=room, name=name):
                record = self.rooms.get(room)
                if record is None or name not in record.members:
                    return False
                record.leave(name, entry.key)
                self.rooms_of.get(name, set()).discard(room)
            case RoomTopic(room=room, topic=topic, by=by):
                # Judged at its place in the log: after a merge, a topic set by someone who
                # had left by then (in the merged order) is ignored the same everywhere.
                record = self.rooms.get(room)
                if record is None or by not in record.members:
                    return False
                record.topic = topic
                record.topic_by = by
            case PasswordSet(name=name, phc=phc):
                if name not in self.claims:
                    return False  # released since: the password went with the name
                self.passwords[name] = phc
                return False
            case KeyAdded(name=name, identity=identity):
                if name not in self.claims or self.holds_key(name, identity):
                    return False
                added = self.added_keys.setdefault(name, [])
                if len(added) + 1 >= MAX_KEYS:
                    return False  # full (two partitions each added one): the first ones stay
                added.append(identity)
                return False
            case KeyRemoved(name=name, identity=identity):
                added = self.added_keys.get(name, [])
                if identity in added:
                    added.remove(identity)
                elif self.claims.get(name) == identity and added:
                    # The claim's key goes: the oldest added key stands for the account.
                    self.claims[name] = added.pop(0)
                else:
                    return False  # unknown, or the account's last key: never keyless
                if not added:
                    self.added_keys.pop(name, None)
                return False
            case Chat(room=str() as chat_room) if chat_room in self.rooms:
                self.rooms[chat_room].messages += 1
                self.rooms[chat_room].last_ts = entry.ts
        return True

    def _met(self, name: str, peer: str) -> None:
        """``name`` and ``peer`` spoke privately just now: ``peer`` goes to the end of
        ``name``'s list, which drops its least recent peer past MAX_PEERS."""
        peers = self.peers_of.get(name)
        if peers is None:
            if name not in self.claims:
                return
            peers = self.peers_of[name] = OrderedDict()
        if peer in peers:
            peers.move_to_end(peer)
            return
        peers[peer] = None
        if len(peers) > MAX_PEERS:
            peers.popitem(last=False)

    def _create(self, room: str, name: str, private: bool) -> RoomRecord:
        record = RoomRecord(room, self._allocate_group(room), private=private)
        if self.owned.get(name, 0) < OWNED_ROOMS_MAX:
            record.owner = name
            self.owned[name] = self.owned.get(name, 0) + 1
        return record

    def _allocate_group(self, room: str) -> str:
        start = zlib.crc32(room.encode()) % self._count
        for step in range(self._count):
            index = (start + step) % self._count
            if index not in self._groups_used:
                self._groups_used.add(index)
                return f"{ipaddress.IPv4Address(self._base + index)}:{self._port}"
        # Every group taken: share one (members then filter by room name).
        return f"{ipaddress.IPv4Address(self._base + start)}:{self._port}"

    # -- reading -------------------------------------------------------------
    def holds_key(self, name: str, identity: bytes) -> bool:
        """Whether ``identity`` is a key of the account ``name`` (its claim's or an added one)."""
        return self.claims.get(name) == identity or identity in self.added_keys.get(name, ())

    def key_count(self, name: str) -> int:
        return (name in self.claims) + len(self.added_keys.get(name, ()))

    def keys_of(self, name: str) -> tuple[bytes, ...]:
        """The account's keys, the claim's first (empty for a free name)."""
        claim = self.claims.get(name)
        return () if claim is None else (claim, *self.added_keys.get(name, ()))

    def user_infos(self) -> tuple[UserInfo, ...]:
        """Every online user, in login order. Every login's Welcome carries the list: it is
        kept up to date entry by entry and copied once per change, not built per login."""
        if self._user_infos is None:
            self._user_infos = tuple(self._infos.values())
        return self._user_infos

    def peers(self, name: str) -> tuple[str, ...]:
        """The peers of ``name``'s private conversations, most recent first."""
        peers = self.peers_of.get(name)
        return () if peers is None else tuple(reversed(peers))

    def members(self, room: str) -> list[str]:
        record = self.rooms.get(room)
        return sorted(record.members) if record else []

    def topic(self, room: str) -> str:
        record = self.rooms.get(room)
        return record.topic if record else ""

    def is_member(self, room: str, name: str) -> bool:
        record = self.rooms.get(room)
        return record is not None and name in record.members

    def snapshot(self) -> tuple[object, ...]:
        """A canonical, comparable summary (used by convergence checks)."""
        return (
            tuple(sorted(self.servers.items())),
            tuple(
                (u.name, tuple(u.sessions), u.away, u.away_reason)
                for u in sorted(self.users.values(), key=lambda u: u.name)
            ),
            tuple(sorted(self.claims.items())),
            tuple(sorted((n, tuple(keys)) for n, keys in self.added_keys.items())),
            tuple(sorted(self.passwords.items())),
            tuple(
                (
                    name,
                    record.group,
                    tuple(sorted(record.members)),
                    record.owner,
                    record.private,
                    record.public_since,
                    tuple(sorted(record.invited)),
                    record.topic,
                )
                for name, record in sorted(self.rooms.items())
            ),
            tuple(sorted((name, tuple(peers)) for name, peers in self.peers_of.items() if peers)),
        )
