"""Who may read what: the one rule for live delivery, replay and scrollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tchat.core.fold import INVITES_PER_ROOM, OWNED_ROOMS_MAX
from tchat.core.messages import (
    Chat,
    CreateRoom,
    Entry,
    EntryBody,
    HistoryRequest,
    InviteUser,
    KickUser,
    Operation,
    RoomCreated,
    RoomInvited,
    RoomKicked,
    RoomMode,
    SetRoomMode,
)
from tchat.core.names import name_problem, room_problem

if TYPE_CHECKING:
    from tchat.core.fold import ClusterState, RoomRecord

Decision = tuple[EntryBody | None, str]  # the entry to record, or None and why not


def may_read(state: ClusterState, user: str, entry: Entry, *, scrollback: bool = False) -> bool:
    """True if ``user`` may be given ``entry``, live or replayed (or, with ``scrollback``,
    as history asked for by a member of the room now).

    A private message: only its sender and its addressee. A room message: whoever was a
    member of the room when it was sequenced (between a join and the leave or kick that
    ended it; a member who is offline is still one: membership is the account's).
    Scrollback adds, for a public room only, what was said since the room last became
    public, to whoever is a member now (Matrix's "shared" history visibility:
    anyone may join a public room and read on). A private room's past, and the past of a
    room that was private before, stays with those who were there. Anything that is not a
    chat is never replayed.
    """
    body = entry.body
    if type(body) is not Chat:
        return False
    if body.room is None:
        return user == body.sender or user == body.to
    record = state.rooms.get(body.room)
    if record is None:
        return False
    if record.was_member(user, entry.key):
        return True
    return (
        scrollback
        and record.public_since is not None
        and record.public_since < entry.key
        and user in record.members
    )


def listed(record: RoomRecord, user: str | None) -> bool:
    """Whether the room directory shows ``record`` to ``user``: a private room's name,
    members and activity are for its owner, its members and whom it invited."""
    return (
        not record.private
        or user is not None
        and (user == record.owner or user in record.members or user in record.invited)
    )


def history_refusal(state: ClusterState, user: str, request: HistoryRequest) -> str:
    """Why ``user`` may not have the scrollback ``request`` asks for ('' if they may).
    A room's scrollback is for its members now: one who left reads no more of it."""
    if (request.room is None) == (request.peer is None):
        return "scrollback is of exactly one room or one user"
    if request.room is not None and not state.is_member(request.room, user):
        return f"you are not in room {request.room!r}"
    return ""


def owner_operation(
    state: ClusterState,
    user: str,
    op: Operation,
    join_limit: Callable[[ClusterState, str, str], Decision],
) -> Decision:
    """The entry a room-ownership operation of ``user`` records, or why it is refused.
    ``join_limit`` is the leader's check of the room and member limits (a creation joins)."""
    match op:
        case CreateRoom(room=room, private=private):
            problem = room_problem(room)
            if problem:
                return None, problem
            if room in state.rooms:
                return None, f"room {room!r} already exists: /join it"
            if state.owned.get(user, 0) >= OWNED_ROOMS_MAX:
                return None, f"you own {OWNED_ROOMS_MAX} rooms, the most a user may own"
            body, problem = join_limit(state, room, user)
            if body is None:
                return None, problem
            return RoomCreated(room, user, private), ""
    room = getattr(op, "room", "")
    record = state.rooms.get(room)
    if record is None:
        return None, f"no room named {room!r}"
    if record.owner != user:
        return None, f"only the owner of room {room!r} may do that"
    match op:
        case SetRoomMode(private=private):
            if record.private == private:
                return None, f"room {room!r} is {'private' if private else 'public'} already"
            return RoomMode(room, user, private), ""
        case InviteUser(name=name):
            problem = name_problem(name)
            if problem:
                return None, problem
            if not record.private:
                return None, f"room {room!r} is public: anyone may /join it"
            if name not in state.accounts:
                return None, f"no user named {name!r}"
            if name in record.members:
                return None, f"{name} is in room {room!r} already"
            if name in record.invited:
                return None, f"{name} is invited to room {room!r} already"
            if len(record.invited) >= INVITES_PER_ROOM:
                return None, (
                    f"room {room!r} has {INVITES_PER_ROOM} pending invitations, the most "
                    "it may have: kick one first"
                )
            return RoomInvited(room, name, user), ""
        case KickUser(name=name):
            if name == user:
                return None, "you cannot kick yourself: /leave the room"
            if not record.private:
                return None, f"room {room!r} is public: make it private first (/mode private)"
            if name not in record.members and name not in record.invited:
                return None, f"{name} is not in room {room!r}"
            return RoomKicked(room, name, user), ""
    return None, "unknown operation"
