"""What the client UI shows, built from node events: conversations, lines, unread counts, users.

Pure Python (no Textual): the client screen feeds it ``ClientEvent``s and renders it, so the
rules (pending until acknowledged, exactly one line per entry, unread and mention counts,
online/away/gone) are testable without a terminal.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum

from tchat.core.messages import Chat, Dot, Entry, RoomInfo, UserInfo
from tchat.core.vclock import VectorClock
from tchat.ui.sanitize import sanitize, sanitize_multiline

RECENT_CLOCKS = 40  # chat entries kept for the Clocks tab


class Kind(Enum):
    ROOM = "room"
    PRIVATE = "private"
    SYSTEM = "system"


@dataclass(slots=True)
class ChatLine:
    """One message (or notice) as shown; ``text`` and ``sender`` are already sanitised."""

    ts: float
    sender: str
    text: str
    action: bool = False
    entry_id: str | None = None
    cmid: int | None = None  # own message: the operation that carries it
    pending: bool = False  # own message the leader has not acknowledged yet
    mention: bool = False
    notice: bool = False  # local information line, not a chat message
    failed: bool = False


@dataclass(slots=True)
class Conversation:
    key: str  # "#room", "@peer" or "*status"
    kind: Kind
    name: str  # room or peer name (raw; sanitise before display)
    lines: list[ChatLine] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    unread: int = 0
    mentioned: bool = False
    members: tuple[str, ...] = ()
    group: str = ""
    joined: bool = False
    oldest: Dot | None = None  # scrollback cursor
    history_done: bool = False
    messages: int = 0
    last_activity: float = 0.0
    notify: str = ""  # "all" | "mentions" | "none"; "" = the default for its kind
    seen: ChatLine | None = None  # the last line shown before the user left this conversation

    @property
    def title(self) -> str:
        return self.key if self.kind is not Kind.SYSTEM else "status"


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    addr: str
    status: str  # "online" | "away" | "gone"
    since: float


@dataclass(frozen=True, slots=True)
class Change:
    """Which parts of the model an event touched: the screen refreshes only those."""

    conversations: frozenset[str] = frozenset()
    appended: int = 0  # lines appended to the active conversation
    prepended: int = 0  # lines inserted at the top of the active conversation
    users: bool = False
    rooms: bool = False
    new: bool = False  # a message line from the network was appended (for the bell)


STATUS_KEY = "*status"


def room_key(room: str) -> str:
    return "#" + room


def peer_key(peer: str) -> str:
    return "@" + peer


class ChatModel:
    """Conversations and users as the local user sees them."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.conversations: dict[str, Conversation] = {}
        self.active = STATUS_KEY
        self.users: dict[str, UserRow] = {}
        self.recent: deque[Entry] = deque(maxlen=RECENT_CLOCKS)
        self._pending: dict[int, tuple[str, ChatLine]] = {}
        self.highlights: list[str] = []  # /highlight words that count as mentions
        self._mention = self._mention_pattern(me)
        self.conversation(STATUS_KEY)

    # -- conversations -----------------------------------------------------------------
    def conversation(self, key: str) -> Conversation:
        conv = self.conversations.get(key)
        if conv is None:
            kind = {"#": Kind.ROOM, "@": Kind.PRIVATE}.get(key[0], Kind.SYSTEM)
            conv = Conversation(key=key, kind=kind, name=key[1:])
            self.conversations[key] = conv
        return conv

    def ordered(self) -> list[Conversation]:
        """Status first, then rooms, then private chats, each by name."""
        rank = {Kind.SYSTEM: 0, Kind.ROOM: 1, Kind.PRIVATE: 2}
        return sorted(self.conversations.values(), key=lambda c: (rank[c.kind], c.name.lower()))

    def activate(self, key: str) -> Conversation:
        conv = self.conversation(key)
        if key != self.active:
            left = self.conversation(self.active)
            left.seen = left.lines[-1] if left.lines else None
        self.active = key
        conv.unread = 0
        conv.mentioned = False
        return conv

    def read_mark(self, conv: Conversation) -> int | None:
        """Index of the last line read in ``conv``, when lines came after it."""
        if conv.seen is None or not conv.lines or conv.lines[-1] is conv.seen:
            return None
        for index in range(len(conv.lines) - 1, -1, -1):
            if conv.lines[index] is conv.seen:
                return index
        return None

    def activity(self) -> list[tuple[int, Conversation]]:
        """(1-based window number, conversation) of those with unread lines, in window order."""
        return [(n, c) for n, c in enumerate(self.ordered(), 1) if c.unread]

    def next_active(self) -> str | None:
        """Where Alt+A goes: the first conversation with a mention, else with any activity."""
        active = self.activity()
        for _n, conv in active:
            if conv.mentioned:
                return conv.key
        return active[0][1].key if active else None

    def clear(self, key: str) -> None:
        """/clear: forget the lines shown (the messages stay on the servers)."""
        conv = self.conversation(key)
        conv.lines.clear()
        conv.seen = None

    def rename_me(self, new: str) -> None:
        self.me = new
        self._mention = self._mention_pattern(new)

    def highlight(self, word: str) -> bool:
        """Count ``word`` as a mention from now on; False if it already was one."""
        if word.lower() in (w.lower() for w in self.highlights) or len(self.highlights) >= 64:
            return False
        self.highlights.append(word)
        self._mention = self._mention_pattern(self.me)
        return True

    def _mention_pattern(self, name: str) -> re.Pattern[str]:
        words = "|".join(re.escape(w) for w in (name, *self.highlights))
        return re.compile(rf"(?<![\w@])(?:{words})(?!\w)", re.IGNORECASE)

    def notify_level(self, conv: Conversation) -> str:
        if conv.notify:
            return conv.notify
        return "all" if conv.kind is Kind.PRIVATE else "mentions"

    # -- lines -------------------------------------------------------------------------
    def notice(self, text: str, ts: float, key: str | None = None) -> Change:
        conv = self.conversation(key or self.active)
        conv.lines.append(ChatLine(ts=ts, sender="*", text=sanitize(text), notice=True))
        return self._appended(conv, unread=False)

    def add_pending(self, key: str, cmid: int, text: str, action: bool, ts: float) -> Change:
        conv = self.conversation(key)
        line = ChatLine(
            ts=ts,
            sender=self.me,
            text=sanitize_multiline(text),
            action=action,
            cmid=cmid,
            pending=True,
        )
        conv.lines.append(line)
        self._pending[cmid] = (key, line)
        return self._appended(conv, unread=False)

    def mark_sent(self, cmid: int, entry_id: str) -> Change:
        found = self._pending.pop(cmid, None)
        if found is None:
            return Change()
        key, line = found
        line.pending = False
        line.entry_id = entry_id
        self.conversation(key).ids.add(entry_id)
        return Change(conversations=frozenset({key}))

    def mark_failed(self, cmid: int, reason: str, ts: float) -> Change:
        found = self._pending.pop(cmid, None)
        if found is None:
            return Change()
        key, line = found
        line.pending = False
        line.failed = True
        return self.notice(f"not sent: {reason}", ts, key)

    def key_for(self, chat: Chat) -> str:
        if chat.room is not None:
            return room_key(chat.room)
        peer = chat.to if chat.sender == self.me else chat.sender
        return peer_key(peer or "?")

    def deliver(self, entry: Entry) -> Change:
        body = entry.body
        if not isinstance(body, Chat):
            return Change()
        self.recent.append(entry)
        key = self.key_for(body)
        conv = self.conversation(key)
        if entry.id in conv.ids:
            self._update_own(entry, key)
            return Change(conversations=frozenset({key}))
        conv.ids.add(entry.id)
        conv.messages += 1
        conv.last_activity = max(conv.last_activity, entry.ts)
        if conv.oldest is None:
            conv.oldest = entry.dot
        own = body.sender == self.me
        if own and entry.origin is not None and entry.origin.cmid in self._pending:
            # Our own message came back before its Ack: the pending line becomes it.
            pkey, line = self._pending.pop(entry.origin.cmid)
            line.pending = False
            line.entry_id = entry.id
            line.ts = entry.ts
            return Change(conversations=frozenset({pkey}))
        if own and self._update_own(entry, key):
            return Change(conversations=frozenset({key}))
        mention = not own and bool(self._mention.search(body.text))
        conv.lines.append(self._line(entry, body, mention))
        change = self._appended(conv, unread=not own, mention=mention)
        return replace(change, new=True)

    def _update_own(self, entry: Entry, key: str) -> bool:
        for line in reversed(self.conversation(key).lines[-200:]):
            if line.entry_id == entry.id:
                line.ts = entry.ts
                return True
        return False

    def _line(self, entry: Entry, body: Chat, mention: bool) -> ChatLine:
        return ChatLine(
            ts=entry.ts,
            sender=sanitize(body.sender),
            text=sanitize_multiline(body.text),
            action=body.action,
            entry_id=entry.id,
            mention=mention,
        )

    def _appended(self, conv: Conversation, unread: bool, mention: bool = False) -> Change:
        if conv.key == self.active:
            return Change(conversations=frozenset({conv.key}), appended=1)
        if unread:
            conv.unread += 1
            conv.mentioned = conv.mentioned or mention or conv.kind is Kind.PRIVATE
        return Change(conversations=frozenset({conv.key}))

    def history(self, key: str, entries: tuple[Entry, ...], limit: int) -> Change:
        """Older entries of ``key`` (any order): inserted above what is shown."""
        conv = self.conversation(key)
        fresh = sorted(
            (e for e in entries if isinstance(e.body, Chat) and e.id not in conv.ids),
            key=lambda e: e.key,
        )
        if len(entries) < limit:
            conv.history_done = True
        if not fresh:
            conv.history_done = True
            return Change(conversations=frozenset({key}))
        lines = []
        for entry in fresh:
            assert isinstance(entry.body, Chat)
            conv.ids.add(entry.id)
            lines.append(self._line(entry, entry.body, False))
        conv.lines[0:0] = lines
        conv.messages += len(lines)
        conv.oldest = min(fresh, key=lambda e: e.key).dot
        prepended = len(lines) if key == self.active else 0
        return Change(conversations=frozenset({key}), prepended=prepended)

    # -- rooms -------------------------------------------------------------------------
    def room_entered(self, info: RoomInfo) -> Change:
        conv = self.conversation(room_key(info.room))
        conv.joined = True
        conv.group = info.group
        conv.members = tuple(info.members)
        return Change(conversations=frozenset({conv.key}), rooms=True)

    def room_exited(self, room: str) -> Change:
        conv = self.conversation(room_key(room))
        conv.joined = False
        conv.members = tuple(m for m in conv.members if m != self.me)
        return Change(conversations=frozenset({conv.key}), rooms=True)

    def members_changed(self, room: str, members: tuple[str, ...]) -> Change:
        conv = self.conversation(room_key(room))
        conv.members = tuple(members)
        return Change(conversations=frozenset({conv.key}), rooms=True)

    def rooms(self) -> list[Conversation]:
        return [c for c in self.ordered() if c.kind is Kind.ROOM]

    # -- users -------------------------------------------------------------------------
    def users_changed(self, users: tuple[UserInfo, ...], now: float) -> tuple[list[str], list[str]]:
        """Replace the user list; returns (arrived, left) names. Left users stay as gone."""
        seen = {u.name for u in users}
        arrived = [u.name for u in users if self.users.get(u.name, _GONE).status == "gone"]
        left = sorted(n for n, row in self.users.items() if n not in seen and row.status != "gone")
        for name in left:
            old = self.users[name]
            self.users[name] = UserRow(name, old.addr, "gone", now)
        for user in users:
            status = "away" if user.status == "away" else "online"
            known = self.users.get(user.name)
            since = user.since if known is None or known.status != status else known.since
            self.users[user.name] = UserRow(user.name, user.addr, status, since)
        return sorted(arrived), left

    def online_names(self) -> list[str]:
        return sorted(n for n, row in self.users.items() if row.status != "gone")


_GONE = UserRow("", "", "gone", 0.0)


def happened_before(a: Entry, b: Entry) -> bool:
    """True when ``b``'s sender had delivered ``a`` when it sent ``b``."""
    body = b.body
    clock = body.sender_clock if isinstance(body, Chat) else b.clock
    return clock.get(a.dot.server) >= a.dot.counter and a.dot != b.dot


def causal_relation(a: Entry, b: Entry) -> str:
    """ "->" (a before b), "<-" (b before a) or "||" (concurrent)."""
    if happened_before(a, b):
        return "->"
    if happened_before(b, a):
        return "<-"
    return "||"


def clock_text(clock: VectorClock) -> str:
    return "{" + ", ".join(f"{k}:{v}" for k, v in clock.items()) + "}"
