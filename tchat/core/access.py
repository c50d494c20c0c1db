"""Who may read what: the one rule for live delivery, replay and scrollback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tchat.core.messages import Chat, Entry, HistoryRequest

if TYPE_CHECKING:
    from tchat.core.fold import ClusterState


def may_read(state: ClusterState, user: str, entry: Entry) -> bool:
    """True if ``user`` may be given ``entry``.

    A private message: only its sender and its addressee. A room message: only whoever
    was a member of the room when it was sequenced (between a join and the leave or kick
    that ended it), public room or private. This is Matrix's "joined" history visibility
    and IRC's behaviour: a newcomer reads nothing said before they joined, and a member who
    left or was kicked reads nothing said since, so a room made private keeps its past
    from whoever is let in later. Anything that is not a chat is never replayed.
    """
    body = entry.body
    if type(body) is not Chat:
        return False
    if body.room is None:
        return user == body.sender or user == body.to
    record = state.rooms.get(body.room)
    return record is not None and record.was_member(user, entry.key)


def history_refusal(state: ClusterState, user: str, request: HistoryRequest) -> str:
    """Why ``user`` may not have the scrollback ``request`` asks for ('' if they may).
    A room's scrollback is for its members now: one who left reads no more of it."""
    if (request.room is None) == (request.peer is None):
        return "scrollback is of exactly one room or one user"
    if request.room is not None and not state.is_member(request.room, user):
        return f"you are not in room {request.room!r}"
    return ""
