"""What the converged log says: each client's due deliveries, folds and orders to compare."""

from __future__ import annotations

from typing import Any

from tchat.core.desk import REPLAY_PER_CONVERSATION
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    MAX_KEYS,
    Chat,
    Entry,
    KeyAdded,
    KeyRemoved,
    NameClaimed,
    NameReleased,
    RoomJoined,
    RoomLeft,
    UserOffline,
    UserOnline,
)


def members_of(info: Any) -> Any:
    if isinstance(info, tuple) and len(info) == 2 and not isinstance(info[1], str):
        return info[1]
    return info.members


def fold_view(
    state: Any,
) -> tuple[dict[str, Any], dict[str, tuple[str, tuple[str, ...], str]]]:
    """A server's fold reduced to comparable values: users and rooms (group, members, topic)."""
    users = {name: state.users[name] for name in sorted(state.users)}
    rooms: dict[str, tuple[str, tuple[str, ...], str]] = {}
    for name in sorted(state.rooms):
        value = state.rooms[name]
        if isinstance(value, tuple):
            group, members = value
            topic = ""
        else:
            group, members, topic = value.group, value.members, value.topic
        rooms[name] = (group, tuple(sorted(members)), topic)
    return users, rooms


def log_diff(sid: int, ids: list[str], lid: int, lids: list[str]) -> str:
    mine, theirs = set(ids), set(lids)
    if mine == theirs:
        first = next(i for i, (a, b) in enumerate(zip(ids, lids, strict=False)) if a != b)
        return f"s{sid} orders its log differently from s{lid} from position {first}"
    return (
        f"s{sid} has {len(ids)} entries, leader s{lid} {len(lids)}; only s{sid}: "
        f"{sorted(mine - theirs)[:6]}, only s{lid}: {sorted(theirs - mine)[:6]}"
    )


def expected_deliveries(entries: list[Entry], clients: set[str]) -> dict[str, list[str]]:
    """Chat entries each of ``clients`` must have delivered, by replaying the log in key order.

    A room message goes to the room's members at that point of the log, a private one to
    its addressee and its sender; names map to sessions through UserOnline / UserOffline.
    Membership is the account's: going offline does not end it (only a leave, a kick or
    an operator's release of the name does). A message to a name that had logged out
    before it was sent (a private one to it, or one in a room it is a member of) is due to
    the name's next session, if that login happened after the message (its welcome
    replays it), unless the conversation missed more than a replay keeps.
    Only membership that holds in every causal view counts: the login and the join happened
    before the message, and the leave or logout that ends it (if any) happened after it. A
    join or leave made concurrently on the other side of a partition can fall on either side
    of the message in the merged order, and the client may have delivered later entries
    already: neither "must deliver" nor "must not" is right for it, so it is not checked.
    A kick the merged fold ignores (a merge made someone else the room's owner) ends nothing
    there, but in a message's own causal view it may have stood: the leader streamed by that
    view and the member's cursor covers the message, so it is due only where both agree.
    """
    ignored = _ignored_room_changes(entries)
    ends = _membership_ends(entries, ignored)
    # name -> its sessions (client_id -> UserOnline entry), while the user is online: a user
    # may have several (terminals of one key); a login under another key than the name's
    # claim lost a clash and is ignored.
    session: dict[str, dict[str, Entry]] = {}
    claims: dict[str, list[bytes]] = {}  # name -> its keys, the claim's first
    # A private message to a name that is offline waits for the name's next login, whose
    # welcome replays it: name -> its last UserOffline, name -> the messages waiting.
    went_offline: dict[str, Entry] = {}
    mailbox: dict[str, list[Entry]] = {}
    members: dict[str, dict[str, Entry]] = {}  # room -> name -> RoomJoined entry
    # (room, name) -> a kick of that member the merged fold ignores: see _member_in_past
    voided: dict[tuple[str, str], Entry] = {}
    expected: dict[str, list[str]] = {}
    origins: set[tuple[str, int]] = set()
    for e in entries:
        body = e.body
        if e.origin is not None:
            # One op sequenced on both sides of a partition: only its first copy counts here
            # (the copy itself is reported as an exactly-once violation).
            op = (e.origin.client_id, e.origin.cmid)
            if op in origins:
                continue
            origins.add(op)
        if isinstance(body, NameClaimed | KeyAdded | KeyRemoved | NameReleased):
            _account(claims, body)
            if isinstance(body, NameReleased):
                went_offline.pop(body.name, None)
                mailbox.pop(body.name, None)
                for names in members.values():
                    names.pop(body.name, None)
                for key in [k for k in voided if k[1] == body.name]:
                    del voided[key]
        elif isinstance(body, UserOnline):
            if body.identity not in claims.setdefault(body.name, [body.identity]):
                continue  # another key's login lost the name in a merge
            sessions = session.get(body.name)
            if sessions is None:
                session[body.name] = {body.client_id: e}
                due = [m for m in mailbox.pop(body.name, ()) if m.clock < e.clock]
                replayed = [m.id for m in _within_replay(due, body.name)]
                if body.client_id in clients and replayed:
                    # Only mail that happened before this login is surely in its replay.
                    expected.setdefault(body.client_id, []).extend(replayed)
            else:
                sessions.setdefault(body.client_id, e)  # another terminal
        elif isinstance(body, UserOffline):
            sessions = session.get(body.name)
            ended = sessions is not None and sessions.pop(body.client_id, None) is not None
            if ended and not sessions:  # the user's last session: the user is offline
                del session[body.name]
                went_offline[body.name] = e
        elif e.id in ignored:
            if isinstance(body, RoomLeft) and body.name in members.get(body.room, {}):
                voided[(body.room, body.name)] = e
            continue
        elif isinstance(body, RoomJoined):
            if body.name in session:
                members.setdefault(body.room, {}).setdefault(body.name, e)
        elif isinstance(body, RoomLeft):
            members.get(body.room, {}).pop(body.name, None)
            voided.pop((body.room, body.name), None)
        elif isinstance(body, Chat):
            if body.room is not None:
                room = members.get(body.room, {})
                recipients = sorted(
                    n
                    for n, joined in room.items()
                    if _spans(joined, e, ends)
                    and _member_in_past(entries, e, body.room, n, voided.get((body.room, n)))
                )
                absent = recipients
            else:
                recipients = sorted({body.sender, body.to or ""})
                absent = [body.to or ""]
            for name in absent:
                offline = went_offline.get(name)
                # Only mail sent after the logout is surely not something it saw already.
                if name not in session and offline is not None and offline.clock < e.clock:
                    mailbox.setdefault(name, []).append(e)
            for name in recipients:
                for client_id, login in session.get(name, {}).items():
                    if client_id in clients and _spans(login, e, ends):
                        expected.setdefault(client_id, []).append(e.id)
    return expected


def _member_in_past(
    entries: list[Entry], e: Entry, room: str, name: str, kick: Entry | None
) -> bool:
    """Whether ``name`` is a member of ``room`` in the fold of ``e``'s causal past, in log
    order: the view its leader streamed it by. Only asked after a ``kick`` the merged fold
    ignores (rare: each side of a partition made the room), so the fold per message is
    affordable; without one, or a kick not in ``e``'s past, the merged fold's answer holds."""
    if kick is None or not kick.clock < e.clock:
        return True
    state = ClusterState("239.255.0.0", 16, 1)
    origins: set[tuple[str, int]] = set()
    for past in entries:
        if not past.clock < e.clock:
            continue
        if past.origin is not None:
            op = (past.origin.client_id, past.origin.cmid)
            if op in origins:
                continue  # the fold skips a later copy of an operation
            origins.add(op)
        state.apply(past)
    record = state.rooms.get(room)
    return record is not None and name in record.members


def _account(claims: dict[str, list[bytes]], body: object) -> None:
    """An account's keys as the fold keeps them: the claim's first, then added ones, at
    most MAX_KEYS; a released name has none."""
    match body:
        case NameClaimed(name=name, identity=identity):
            claims.setdefault(name, [identity])
        case KeyAdded(name=name, identity=identity):
            keys = claims.get(name)
            if keys is not None and identity not in keys and len(keys) < MAX_KEYS:
                keys.append(identity)
        case KeyRemoved(name=name, identity=identity):
            keys = claims.get(name)
            if keys is not None and identity in keys and len(keys) > 1:
                keys.remove(identity)  # the claim's key going: the next stands for it
        case NameReleased(name=name):
            claims.pop(name, None)


def _within_replay(mail: list[Entry], name: str) -> list[Entry]:
    """``mail`` less the conversations that missed more than half of what a login's replay
    keeps (REPLAY_PER_CONVERSATION): the servers may count more of those than this model
    does (concurrent entries), and keep only the newest."""
    counts: dict[str, int] = {}

    def conversation(e: Entry) -> str:
        body = e.body
        assert isinstance(body, Chat)
        if body.room is not None:
            return "#" + body.room
        return "@" + ((body.to if body.sender == name else body.sender) or "")

    for e in mail:
        key = conversation(e)
        counts[key] = counts.get(key, 0) + 1
    return [e for e in mail if counts[conversation(e)] <= REPLAY_PER_CONVERSATION // 2]


def _ignored_room_changes(entries: list[Entry]) -> set[str]:
    """Ids of the joins, leaves and kicks the fold ignores: a join that a merge put after
    the room became private (or was created private on the other side), a kick by someone
    the merged log does not make the owner. The fold's own rule, so the fold's own code."""
    state = ClusterState("239.255.0.0", 16, 1)
    ignored: set[str] = set()
    origins: set[tuple[str, int]] = set()
    for e in entries:
        if e.origin is not None:
            op = (e.origin.client_id, e.origin.cmid)
            if op in origins:
                continue  # the servers' fold skips a later copy of an operation too
            origins.add(op)
        if not state.apply(e) and isinstance(e.body, (RoomJoined, RoomLeft)):
            ignored.add(e.id)
    return ignored


def _membership_ends(entries: list[Entry], ignored: set[str]) -> dict[str, Entry]:
    """For each UserOnline / RoomJoined entry id, the entry that ends it (if any): a
    session's logout ends its login; a leave, a kick or the name's release ends a join."""
    ends: dict[str, Entry] = {}
    claims: dict[str, list[bytes]] = {}  # name -> its keys, the claim's first
    open_logins: dict[str, dict[str, Entry]] = {}  # name -> client_id -> UserOnline
    open_joins: dict[tuple[str, str], Entry] = {}  # (room, name) -> RoomJoined
    for e in entries:
        body = e.body
        if isinstance(body, NameClaimed | KeyAdded | KeyRemoved | NameReleased):
            _account(claims, body)
            if isinstance(body, NameReleased):
                for key in [k for k in open_joins if k[1] == body.name]:
                    ends[open_joins.pop(key).id] = e
        elif isinstance(body, UserOnline):
            if body.identity in claims.setdefault(body.name, [body.identity]):
                open_logins.setdefault(body.name, {}).setdefault(body.client_id, e)
        elif isinstance(body, UserOffline):
            logins = open_logins.get(body.name, {})
            login = logins.pop(body.client_id, None)
            if login is not None:
                ends[login.id] = e
                if not logins:
                    del open_logins[body.name]  # offline, still in its rooms
        elif e.id in ignored:
            continue
        elif isinstance(body, RoomJoined):
            if body.name in open_logins:
                open_joins.setdefault((body.room, body.name), e)
        elif isinstance(body, RoomLeft):
            join = open_joins.pop((body.room, body.name), None)
            if join is not None:
                ends[join.id] = e
    return ends


def _spans(start: Entry, e: Entry, ends: dict[str, Entry]) -> bool:
    """``start`` (a login or join) happened before ``e`` and its end, if any, after it."""
    if not start.clock < e.clock:
        return False
    end = ends.get(start.id)
    return end is None or e.clock < end.clock


def order_conflict(sa: list[Entry], sb: list[Entry]) -> tuple[str, str] | None:
    """Two entries both clients delivered in opposite orders without being concurrent."""
    pos_b = {e.id: i for i, e in enumerate(sb)}
    common = [e for e in sa if e.id in pos_b]
    positions = [pos_b[e.id] for e in common]
    if positions == sorted(positions):
        return None
    for i, x in enumerate(common):
        for y in common[i + 1 :]:
            if pos_b[y.id] < pos_b[x.id] and not x.clock.concurrent(y.clock):
                return x.id, y.id
    return None
