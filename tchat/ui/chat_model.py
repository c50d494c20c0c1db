"""What the client UI shows, built from node events: conversations, lines, unread counts, users.

Pure Python (no Textual): the client screen feeds it ``ClientEvent``s and renders it, so the
rules (pending until acknowledged, exactly one line per entry, unread and mention counts,
online/away/gone) are testable without a terminal.

One order for everyone: a conversation shows the committed order, our unsettled messages
below it (tchat.ui.outbox); ours take their committed place when it is known, so bob's line
typed during an outage ends where the leader put it, as for everyone else.

Longer than 400 lines: every rule that decides what a line looks like and where it goes
(delivery, settling, unread and mention counts, presence) reads and writes the same
conversation records; the line moves themselves already live in tchat.ui.outbox.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum

from tchat.core.messages import Chat, Dot, Entry, RoomInfo, UserInfo
from tchat.ui import outbox
from tchat.ui.sanitize import sanitize, sanitize_multiline

RECENT_CLOCKS = 40  # chat entries kept for the Clocks tab
# Own messages acknowledged whose committed copy has not come yet. Past this many (a copy that
# never comes: we left the room first) the oldest just stays where its Ack put it.
UNPLACED_MAX = 1024
REASON_MAX = 200  # characters of a refusal's reason kept on the failed line


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
    failed: bool = False  # the leader refused it: stays, marked, until /resend or /dismiss
    reason: str = ""  # why it failed (sanitised)
    draft: str = ""  # own message not yet committed: the text as typed, for /resend


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
    topic: str = ""  # a room's topic as the server sent it (sanitise before display)
    joined: bool = False
    oldest: Dot | None = None  # scrollback cursor
    history_done: bool = False
    messages: int = 0
    last_activity: float = 0.0
    notify: str = ""  # "all" | "mentions" | "none"; "" = the default for its kind
    seen: ChatLine | None = None  # the last line shown before the user left this conversation
    outbox: int = 0  # the last ``outbox`` lines are own messages pending or failed

    @property
    def title(self) -> str:
        return self.key if self.kind is not Kind.SYSTEM else "status"


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    addr: str
    status: str  # "online" | "away" | "gone"
    since: float
    reason: str = ""  # why away, as its user said (raw: sanitise to show)


@dataclass(frozen=True, slots=True)
class Change:
    """Which parts of the model an event touched: the screen refreshes only those."""

    conversations: frozenset[str] = frozenset()
    appended: int = 0  # lines added to the active conversation (at the end or at ``spliced``)
    prepended: int = 0  # lines inserted at the top of the active conversation
    users: bool = False
    rooms: bool = False
    new: bool = False  # a message line from the network was appended (for the bell)
    # Lines of the active conversation from this index on were inserted, moved or removed
    # (above the outbox): the view lays them out again. None: at most appended at the end.
    spliced: int | None = None


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
        self._unplaced: dict[str, tuple[str, ChatLine]] = {}  # entry id -> Acked own line
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
            left.seen = outbox.last_committed(left)
        self.active = key
        conv.unread = 0
        conv.mentioned = False
        return conv

    def read_mark(self, conv: Conversation) -> int | None:
        """Index of the last line read in ``conv``, when lines came after it."""
        if conv.seen is None or outbox.last_committed(conv) in (None, conv.seen):
            return None
        for index in range(len(conv.lines) - conv.outbox - 1, -1, -1):
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
        # What is not committed yet stays: it would come back from nowhere, or never.
        del conv.lines[: len(conv.lines) - conv.outbox]
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
        index = outbox.commit(conv, ChatLine(ts=ts, sender="*", text=sanitize(text), notice=True))
        return self._appended(conv, index, unread=False)

    def add_pending(self, key: str, cmid: int, text: str, action: bool, ts: float) -> Change:
        conv = self.conversation(key)
        line = ChatLine(
            ts=ts,
            sender=self.me,
            text=sanitize_multiline(text),
            action=action,
            cmid=cmid,
            pending=True,
            draft=text,
        )
        conv.lines.append(line)
        conv.outbox += 1
        self._pending[cmid] = (key, line)
        return self._appended(conv, len(conv.lines) - 1, unread=False)

    def mark_sent(self, cmid: int, entry_id: str) -> Change:
        """The leader stored ``cmid``: out of the outbox, where the committed order ends now.

        Its committed copy may still be on its way behind entries committed before it (the
        Ack comes over TCP, room copies by multicast): ``deliver`` moves it once more then.
        """
        found = self._pending.pop(cmid, None)
        if found is None:
            return Change()
        key, line = found
        conv = self.conversation(key)
        line.pending = False
        line.entry_id = entry_id
        line.draft = ""
        conv.ids.add(entry_id)
        moved = outbox.settle(conv, line)
        self._unplaced[entry_id] = (key, line)
        if len(self._unplaced) > UNPLACED_MAX:
            del self._unplaced[next(iter(self._unplaced))]
        return self._touched(conv, moved)

    def mark_failed(self, cmid: int, reason: str, ts: float) -> Change:
        """Refused: the line stays in the outbox, marked with the reason, until dismissed."""
        found = self._pending.pop(cmid, None)
        if found is None:
            return Change()
        key, line = found
        line.pending = False
        line.failed = True
        line.reason = sanitize(reason)[:REASON_MAX]
        conv = self.conversation(key)
        start = len(conv.lines) - conv.outbox
        index = next((i for i in range(start, len(conv.lines)) if conv.lines[i] is line), start)
        change = self._touched(conv, index)  # the reason makes it longer
        if key != self.active:  # where the user looks, too
            other = self.notice(f"not sent to {key}: {reason}", ts)
            change = replace(other, conversations=other.conversations | change.conversations)
        return change

    def take_failed(self, key: str) -> tuple[list[ChatLine], Change]:
        """Remove ``key``'s failed lines (for /resend or /dismiss), oldest first."""
        conv = self.conversation(key)
        failed, start = outbox.take_failed(conv)
        return failed, self._touched(conv, start)

    def _touched(self, conv: Conversation, moved: int | None) -> Change:
        spliced = moved if conv.key == self.active else None
        return Change(conversations=frozenset({conv.key}), spliced=spliced)

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
            placed = self._unplaced.pop(entry.id, None)
            if placed is None:  # already shown (from history)
                return Change(conversations=frozenset({key}))
            line = placed[1]
            line.ts = entry.ts
            return self._touched(conv, outbox.place(conv, line))
        conv.ids.add(entry.id)
        conv.messages += 1
        conv.last_activity = max(conv.last_activity, entry.ts)
        if conv.oldest is None:
            conv.oldest = entry.dot
        own = body.sender == self.me
        cmid = entry.origin.cmid if own and entry.origin is not None else None
        pending = self._pending.get(cmid) if cmid is not None else None
        # Another terminal of ours numbers its operations too: the text must match as well.
        if cmid is not None and pending and pending[0] == key and pending[1].draft == body.text:
            # Our own message came back (before or without its Ack): the pending line is it.
            del self._pending[cmid]
            line = pending[1]
            line.pending = False
            line.entry_id = entry.id
            line.ts = entry.ts
            line.draft = ""
            return self._touched(conv, outbox.settle(conv, line))
        mention = not own and bool(self._mention.search(body.text))
        index = outbox.commit(conv, self._line(entry, body, mention))
        change = self._appended(conv, index, unread=not own, mention=mention)
        return replace(change, new=True)

    def _line(self, entry: Entry, body: Chat, mention: bool) -> ChatLine:
        return ChatLine(
            ts=entry.ts,
            sender=sanitize(body.sender),
            text=sanitize_multiline(body.text),
            action=body.action,
            entry_id=entry.id,
            mention=mention,
        )

    def _appended(
        self, conv: Conversation, index: int, unread: bool, mention: bool = False
    ) -> Change:
        """A line went in at ``index`` (the end, or above the outbox)."""
        if conv.key == self.active:
            spliced = index if index < len(conv.lines) - 1 else None
            return Change(conversations=frozenset({conv.key}), appended=1, spliced=spliced)
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

    def peers_reopened(self, peers: tuple[str, ...]) -> Change:
        """The account's private conversations the servers keep (a login's Welcome): each
        shows in the list, below the rooms, a quiet one too. Nothing is unread for it: what
        was said meanwhile comes in the replay, and counts there."""
        keys = {self.conversation(peer_key(peer)).key for peer in peers if peer != self.me}
        return Change(conversations=frozenset(keys))

    # -- rooms -------------------------------------------------------------------------
    def room_entered(self, info: RoomInfo) -> Change:
        conv = self.conversation(room_key(info.room))
        conv.joined = True
        conv.group = info.group
        conv.members = tuple(info.members)
        conv.topic = info.topic
        return Change(conversations=frozenset({conv.key}), rooms=True)

    def topic_changed(self, room: str, topic: str, by: str, ts: float) -> Change:
        """``by`` set the room's topic: kept for its header, and a line in the room."""
        conv = self.conversation(room_key(room))
        conv.topic = topic
        if not by:  # changed while we were away: who did is not known
            said = f"the topic is now: {topic}" if topic else "the topic was cleared"
        else:
            said = f"{by} set the topic: {topic}" if topic else f"{by} cleared the topic"
        return self.notice(said, ts, conv.key)

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
            reason = user.away_reason if status == "away" else ""
            self.users[user.name] = UserRow(user.name, user.addr, status, since, reason)
        return sorted(arrived), left

    def online_names(self) -> list[str]:
        return sorted(n for n, row in self.users.items() if row.status != "gone")


_GONE = UserRow("", "", "gone", 0.0)
