"""The replicated state machine: users, rooms and servers folded from the log in order."""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field

from tchat.core.messages import (
    Chat,
    Entry,
    NameClaimed,
    NameReleased,
    RoomJoined,
    RoomLeft,
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

    def join(self, name: str, key: Key) -> None:
        if name not in self.members:
            self.members[name] = key
            self.stretches.setdefault(name, []).append((key, None))

    def leave(self, name: str, key: Key) -> None:
        if self.members.pop(name, None) is not None:
            stretches = self.stretches[name]
            stretches[-1] = (stretches[-1][0], key)

    def was_member(self, name: str, key: Key) -> bool:
        return any(
            start < key and (end is None or key < end)
            for start, end in self.stretches.get(name, ())
        )


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
        self.claims: dict[str, bytes] = {}  # name -> the identity key it belongs to
        self.session_names: dict[str, str] = {}  # client ID of an online session -> its name
        self.offline_cursor: dict[str, VectorClock] = {}
        self.rooms: dict[str, RoomRecord] = {}
        self.rooms_of: dict[str, set[str]] = {}
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

    # -- folding -------------------------------------------------------------
    def apply(self, entry: Entry) -> bool:
        """Apply one entry at the end of the order. False if clients see no change (the
        fold ignored it, or it changed only the sessions of a user online already)."""
        body = entry.body
        if type(body) is Chat:  # the commonest entry by far: no match over every kind
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
                # The next owner reads nothing of the old one's: catch-up starts here.
                self.first_online[name] = entry.key
                self.offline_cursor.pop(name, None)
            case UserOnline(name=name, addr=addr, client_id=client_id, identity=identity):
                if self.first_online.setdefault(name, entry.key) == entry.key:
                    self.user_look_alikes.add(name)
                claim = self.claims.setdefault(name, identity)
                current = self.users.get(name)
                if (
                    claim != identity
                    or (current is not None and current.identity != identity)
                    or self.session_names.get(client_id, name) != name
                ):
                    self.clashes.append(Clash(name, client_id))
                    return False
                if current is not None:
                    # Another session of the same account: the user was online already.
                    if client_id in current.sessions:
                        return False  # a copy of this session's login
                    current.sessions[client_id] = addr
                    self.session_names[client_id] = name
                    if len(current.sessions) > MAX_SESSIONS:
                        oldest = next(iter(current.sessions))
                        del current.sessions[oldest]
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
                del self.session_names[client_id]
                self.offline_cursor[name] = self.offline_cursor.get(name, EMPTY_CLOCK).merge(cursor)
                if current.sessions:
                    return False  # another session lives: the user stays online
                del self.users[name]
                del self._infos[name]
                for room in sorted(self.rooms_of.pop(name, set())):
                    self.rooms[room].leave(name, entry.key)
            case UserStatus(name=name, away=away, away_reason=reason):
                current = self.users.get(name)
                if current is None:
                    return False
                current.away = away
                current.away_reason = reason if away else ""
                current.since = entry.ts
                self._infos[name] = current.info()
            case RoomJoined(room=room, name=name):
                if name not in self.users:
                    return False
                record = self.rooms.get(room)
                if record is None:
                    record = self.rooms[room] = RoomRecord(room, self._allocate_group(room))
                    self.room_look_alikes.add(room)
                record.join(name, entry.key)
                self.rooms_of.setdefault(name, set()).add(room)
            case RoomLeft(room=room, name=name):
                record = self.rooms.get(room)
                if record is None or name not in record.members:
                    return False
                record.leave(name, entry.key)
                self.rooms_of.get(name, set()).discard(room)
            case Chat(room=str() as chat_room) if chat_room in self.rooms:
                self.rooms[chat_room].messages += 1
                self.rooms[chat_room].last_ts = entry.ts
        return True

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
    def user_infos(self) -> tuple[UserInfo, ...]:
        """Every online user, in login order. Every login's Welcome carries the list: it is
        kept up to date entry by entry and copied once per change, not built per login."""
        if self._user_infos is None:
            self._user_infos = tuple(self._infos.values())
        return self._user_infos

    def members(self, room: str) -> list[str]:
        record = self.rooms.get(room)
        return sorted(record.members) if record else []

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
            tuple(
                (name, record.group, tuple(sorted(record.members)))
                for name, record in sorted(self.rooms.items())
            ),
        )
