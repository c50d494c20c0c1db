"""Room topics: what a topic may hold (the leader's rule, the client's early check) and who
may set one."""

from __future__ import annotations

import unicodedata

from tchat.core.fold import ClusterState
from tchat.core.messages import MAX_TOPIC
from tchat.core.names import BIDI, INVISIBLE, MAX_MARKS, describe

# A topic may join emoji into one (ZERO WIDTH JOINER) and ask for their colour form
# (VARIATION SELECTOR-16); every other invisible character is refused as in names.
_TOPIC_JOINERS = frozenset([0x200D, 0xFE0F])
_REFUSED = {
    "Cc": "a control character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def topic_problem(topic: str) -> str | None:
    """Why ``topic`` may not be a room's topic ("" clears one): a line of visible text in
    NFC, at most MAX_TOPIC characters, with no control, bidi or invisible characters (a
    header shows it to every member: it must not reorder, hide or break the screen)."""
    if len(topic) > MAX_TOPIC:
        return f"topic is longer than {MAX_TOPIC} characters"
    if topic and not topic.strip():
        return "topic is blank: /topic -clear clears it"
    if topic.isascii():
        for char in topic:
            if not " " <= char <= "~":
                return f"topic contains a control character, {describe(char)}"
        return None
    if unicodedata.normalize("NFC", topic) != topic:
        return "topic is not in its normal form (NFC)"
    marks = 0
    for char in topic:
        code = ord(char)
        category = unicodedata.category(char)
        if code in BIDI:
            return f"topic contains a bidi control, {describe(char)}: it reorders what is shown"
        if code in INVISIBLE and code not in _TOPIC_JOINERS:
            return f"topic contains an invisible character, {describe(char)}"
        if category in _REFUSED:
            return f"topic contains {_REFUSED[category]}, {describe(char)}"
        marks = marks + 1 if category[0] == "M" else 0
        if marks > MAX_MARKS:
            return f"topic has more than {MAX_MARKS} combining marks in a row"
    return None


def may_set_topic(state: ClusterState, room: str, name: str) -> str | None:
    """Why ``name`` may not set ``room``'s topic, or None when it may: any member of a public
    room (IRC's channels without +t), only the owner of a private one (as its invitations
    and kicks). The one place the leader asks."""
    if not state.is_member(room, name):
        return f"you are not in room {room!r}: /join it first"
    record = state.rooms.get(room)
    if record is not None and record.private and record.owner not in (None, name):
        return f"only the owner of private room {room!r} sets its topic"
    return None
