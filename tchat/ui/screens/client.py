"""The client's main screen: tabs Chat, Rooms, Members, Elections, Clocks over one node.

Longer than 400 lines: the screen routes the node's events to five tabs, and one event
often changes several at once (a join: the chat, the Rooms and Members tabs, the topic).
The tabs' widgets are in ui/widgets, the chat's model in chat_model.py and the commands in
commands.py; what is here is the routing between them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import tzinfo

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Footer,
    Input,
    Label,
    OptionList,
    TabbedContent,
    TabPane,
    TextArea,
)

from tchat.core import effects as ev
from tchat.core.messages import RoomSummary
from tchat.crypto.identity import fingerprint as key_fingerprint
from tchat.ui.attention import ConnectionWatch
from tchat.ui.chat_model import STATUS_KEY, Change, ChatModel, Kind, room_key
from tchat.ui.commands import complete, length_problem, plural
from tchat.ui.node_messages import NodeEvent, StatusTick
from tchat.ui.presence import Presence
from tchat.ui.sanitize import sanitize
from tchat.ui.screens.chat_commands import CommandRunner
from tchat.ui.screens.chat_navigation import Navigator
from tchat.ui.screens.cluster_prompt import ClusterPrompt
from tchat.ui.search import SearchResults
from tchat.ui.service import ClientServiceLike, ClusterChooserLike
from tchat.ui.timeline import ElectionTimeline, TimelineEntry
from tchat.ui.widgets.clock_view import ClockView
from tchat.ui.widgets.composer import Composer
from tchat.ui.widgets.conversation_list import ConversationList
from tchat.ui.widgets.directory import MemberList, RoomsTable, UsersTable
from tchat.ui.widgets.message_view import MessageView
from tchat.ui.widgets.rooms_pane import RoomsPane
from tchat.ui.widgets.status_bar import Status, StatusBar
from tchat.ui.widgets.timeline_view import TimelineView

log = logging.getLogger(__name__)
HISTORY_PAGE = 100
DIRECTORY_EVERY = 5  # seconds between room-directory refreshes while the Rooms tab shows


class RefreshLists(Message):
    """Side lists are stale; one queued refresh stands for many events."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RefreshLists)


class ClientScreen(Screen[None]):
    class LoginRefused(Message):
        """The leader refused our name for good: the app asks for another."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (90, "-wide")]
    BINDINGS = [
        Binding("f1", "tab('chat')", "Chat"),
        Binding("f2", "tab('rooms')", "Rooms"),
        Binding("f3", "tab('members')", "Members"),
        Binding("f4", "tab('elections')", "Elections"),
        Binding("f5", "tab('clocks')", "Clocks"),
        Binding("ctrl+n", "cycle(1)", "Next chat", show=False),
        Binding("ctrl+p", "cycle(-1)", "Prev chat", show=False),
        Binding("escape", "clear_search", "Clear search", show=False),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    def __init__(
        self,
        service: ClientServiceLike,
        me: str,
        *,
        wall: Callable[[], float],
        tz: tzinfo | None = None,
        themes: Callable[[], list[str]] = list,
        auto_away: float = 0.0,  # seconds; 0: never (the CLI's default is 15 min)
    ) -> None:
        super().__init__()
        self.service = service
        self.model = ChatModel(me)
        self.timeline = ElectionTimeline()
        self.wall = wall
        self.tz = tz
        self.themes = themes
        self.commands = CommandRunner(self)
        self.presence = Presence(self, self.commands.submit, auto_away, wall())
        self.navigator = Navigator(self)
        self.devices: tuple[bytes, ...] = ()  # the last /devices listing: what N refers to
        self.ops: dict[int, str] = {}  # cmid -> what a non-chat operation was, for errors
        self.history_requests: dict[int, str] = {}  # request id -> conversation key
        self.join_wanted: set[str] = set()  # rooms to open once entered
        self._lists_dirty = True
        self._tables_dirty = True
        self._activity = False
        self._clocks_dirty = True
        self.search_status = ""  # shown in the topic line until Esc or another conversation
        self.found: SearchResults | None = None  # the last /search, stepped with Alt+N/Alt+P
        self.directory: dict[str, RoomSummary] = {}  # every room of the cluster, by name
        self.list_wanted: str | None = None  # a /list pattern awaiting the directory
        self._directory_age = DIRECTORY_EVERY  # ticks since the directory was asked for
        self.connection = ConnectionWatch()
        self.desktop_notify = "off"  # "osc9" | "osc777": also a terminal desktop notification

    # -- layout -----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with TabbedContent(id="tabs", initial="chat"):
            with TabPane("Chat", id="chat"):
                with Horizontal(id="chat-body"):
                    yield ConversationList(id="conversations")
                    with Vertical(id="conversation"):
                        yield Label(id="topic")
                        yield MessageView(id="messages", tz=self.tz)
                    yield MemberList(id="member-list")
                yield Composer(
                    completer=self._complete,
                    checker=self._refuse,
                    id="composer",
                    placeholder="message, or /help",
                )
            with TabPane("Rooms", id="rooms"):
                yield RoomsPane(id="rooms-pane", tz=self.tz)
            with TabPane("Members", id="members"):
                yield UsersTable(id="users-table", tz=self.tz)
            with TabPane("Elections", id="elections"):
                yield TimelineView(id="timeline", tz=self.tz)
            with TabPane("Clocks", id="clocks"):
                yield ClockView(id="clock-view")
        yield Footer()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "rooms":
            self._directory_age = 0
            self._ask_directory()

    def on_mount(self) -> None:
        self.open_conversation(STATUS_KEY)
        self.model.notice(
            f"welcome, {self.model.me}: /join a room, /msg someone, /help", self.wall(), STATUS_KEY
        )
        self.messages.appended(1)
        self.query_one(Composer).focus()
        self.set_interval(1.0, self._tick)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())
        self._refresh_all()

    @property
    def messages(self) -> MessageView:
        return self.query_one("#messages", MessageView)

    # -- node events ------------------------------------------------------------------
    def on_node_event(self, message: NodeEvent) -> None:
        event = message.event
        wall = message.received if message.received is not None else self.wall()
        change = Change()
        match event:
            case ev.ChatDelivered(entry=entry):
                change = self.model.deliver(entry)
                self._clocks_dirty = True
                self.navigator.alert(change)
            case ev.ConnectionChanged(state=state, detail=detail):
                self.navigator.outage_line(self.connection.changed(state, detail, wall), wall)
            case ev.DiscoveryHint(text=text):
                # Sitting at "discovering" says nothing: say what was tried, where it shows.
                change = self.model.notice(text, wall, STATUS_KEY)
                if self.model.active != STATUS_KEY:
                    change = self.model.notice(text, wall)  # and where the user looks
            case ev.Sent(cmid=cmid, entry_id=entry_id):
                self.ops.pop(cmid, None)
                change = self.model.mark_sent(cmid, entry_id)
            case ev.OpFailed(cmid=cmid, reason=reason):
                what = self.ops.pop(cmid, None)
                change = self.model.mark_failed(cmid, reason, wall)
                if what is not None:
                    change = self.model.notice(f"{what} failed: {reason}", wall)
            case ev.Ready(name=name, peers=peers):
                if name != self.model.me:
                    self.model.rename_me(name)
                reopened = self.model.peers_reopened(peers)
                connected = self.model.notice(f"connected as {name}", wall, STATUS_KEY)
                change = self.merge(reopened, connected)
                self.navigator.outage_line(self.connection.changed("serving", "", wall), wall)
            case ev.UsersChanged(users=users):
                arrived, left = self.model.users_changed(users, wall)
                self.presence.observe()
                self._timeline(self.timeline.users(arrived, left, wall))
                change = Change(users=True)
            case ev.RoomEntered(info=info):
                change = self.model.room_entered(info)
                key = room_key(info.room)
                self.model.notice(f"joined {key} (multicast group {info.group})", wall, key)
                if info.topic:
                    self.model.notice(f"topic: {info.topic}", wall, key)
                if self.model.conversation(key).messages == 0:
                    self.load_history(key)  # the room's recent past, for context
                if info.room in self.join_wanted:
                    self.join_wanted.discard(info.room)
                    self.open_conversation(key)
            case ev.TopicChanged(room=room, topic=topic, by=by, ts=ts):
                change = self.model.topic_changed(room, topic, by, ts or wall)
                change = self.merge(change, Change(rooms=True))
            case ev.RoomExited(room=room, by=by):
                change = self.model.room_exited(room)
                text = f"{by} removed you from #{room}" if by else f"left #{room}"
                self.model.notice(text, wall, room_key(room))
            case ev.MembersChanged(room=room, members=members):
                key = room_key(room)
                before = set(self.model.conversation(key).members)
                change = self.model.members_changed(room, members)
                for name in sorted(set(members) - before):
                    change = self.merge(change, self.model.notice(f"{name} joined", wall, key))
                for name in sorted(before - set(members)):
                    change = self.merge(change, self.model.notice(f"{name} left", wall, key))
            case ev.Renamed(old=old, new=new, reason=reason):
                if old == self.model.me:
                    self.model.rename_me(new)
                change = self.model.notice(f"{old} is now {new}: {reason}", wall, STATUS_KEY)
            case ev.RoomDirectory(rooms=rooms):
                self.directory = {summary.room: summary for summary in rooms}
                self._refresh_rooms()
                if self.list_wanted is not None:
                    self.commands.show_list()
            case ev.KeysListed(keys=keys, yours=yours):
                self.devices = keys
                for n, device in enumerate(keys, 1):
                    mark = " (this one)" if n - 1 == yours else ""
                    shown = f"device {n}: {key_fingerprint(device)}{mark}"
                    change = self.model.notice(shown, wall)
                if keys:
                    change = self.model.notice("/devices remove N removes one", wall)
            case ev.HistoryLoaded(request_id=rid, entries=entries):
                wanted = self.history_requests.pop(rid, None)
                if wanted is not None:
                    change = self.model.history(wanted, entries, HISTORY_PAGE)
            case ev.ClusterChoiceNeeded(offers=offers, text=text):
                change = self.model.notice(text, wall, STATUS_KEY)
                if isinstance(self.service, ClusterChooserLike):
                    self.app.push_screen(
                        ClusterPrompt(offers, self.service.choose_cluster), self._cluster_chosen
                    )
            case ev.ClusterPinned(text=text):
                change = self.model.notice(text, wall, STATUS_KEY)
            case ev.Failed(reason=reason):
                change = self.model.notice(f"cannot log in: {reason}", wall, STATUS_KEY)
                self.post_message(self.LoginRefused(reason))
            case ev.ClockAdvanced():
                self._clocks_dirty = True
        self._timeline(self.timeline.observe(event, wall))
        self._apply(change)
        self.post_message(StatusTick())

    def _cluster_chosen(self, fingerprint: str | None) -> None:
        if fingerprint:
            self._apply(self.model.notice(f"pinned cluster {fingerprint}", self.wall(), STATUS_KEY))

    @staticmethod
    def merge(a: Change, b: Change) -> Change:
        starts = [s for s in (a.spliced, b.spliced) if s is not None]
        return Change(
            conversations=a.conversations | b.conversations,
            appended=a.appended + b.appended,
            prepended=a.prepended + b.prepended,
            users=a.users or b.users,
            rooms=a.rooms or b.rooms,
            new=a.new or b.new,
            spliced=min(starts) if starts else None,
        )

    def _apply(self, change: Change) -> None:
        view = self.messages
        if change.prepended:
            view.prepended(change.prepended)
        if change.spliced is not None:
            # Lines moved under the view (ours took its committed place): the read marker
            # follows the line it marks, not an index (found again only when one shows).
            if view.read_mark is not None:
                view.read_mark = self.model.read_mark(self.model.conversation(self.model.active))
            view.spliced(change.spliced, change.appended)
        elif change.appended:
            view.appended(change.appended)
        elif self.model.active in change.conversations:
            view.changed()
        if change.users or change.rooms:
            self._tables_dirty = True  # membership changes show at once
        elif change.conversations:
            self._activity = True  # message counts in the Rooms tab: at most once a second
        if change.conversations or change.users or change.rooms:
            self._lists_dirty = True
            self.post_message(RefreshLists())

    def _timeline(self, entries: list[TimelineEntry]) -> None:
        if entries:
            self.query_one(TimelineView).show(self.timeline.entries)

    def on_status_tick(self, _message: StatusTick) -> None:
        status = self.service.status()
        if status.state == "STARTING":  # the service is still starting
            self.query_one(StatusBar).status = Status(state="STARTING", user=self.model.me)
            return
        serving = status.serving
        # Out of SERVING the last leader and round trip are history: don't show them as news.
        known = bool(status.leader_id) and serving
        self.query_one(StatusBar).status = Status(
            state=self.connection.status(self.wall()) or status.state,
            user=self.model.me,
            leader=f"{status.leader_id}@{status.leader_addr}" if known else "",
            epoch=status.epoch if known else "",
            rtt_ms=status.rtt_ms if serving else None,
            delivery=status.delivery,
            pending=status.pending,
            activity=tuple((n, c.mentioned) for n, c in self.model.activity()),
        )

    def _tick(self) -> None:
        self.navigator.outage_line(self.connection.tick(self.wall()), self.wall())
        self.presence.tick(self.wall())
        self.post_message(StatusTick())
        self._directory_age += 1
        if self._directory_age >= DIRECTORY_EVERY:
            self._directory_age = 0
            self._ask_directory()
        if self._activity:
            self._activity = False
            self._refresh_tables()
        if self._clocks_dirty:
            self._refresh_clocks()

    def on_refresh_lists(self, _message: RefreshLists) -> None:
        if self._lists_dirty:
            self._refresh_all()

    # -- refreshing the side views ----------------------------------------------------
    def _refresh_all(self) -> None:
        self._lists_dirty = False
        self.query_one(ConversationList).show(self.model.ordered(), self.model.active)
        self._refresh_members()
        self.refresh_topic()
        if self._tables_dirty:
            self._refresh_tables()
        if self._clocks_dirty:
            self._refresh_clocks()

    def _refresh_tables(self) -> None:
        self._tables_dirty = False
        self._refresh_rooms()
        self._refresh_users()

    def refresh_topic(self) -> None:
        extra = self.search_status
        conv = self.model.conversation(self.model.active)
        label = Text(no_wrap=True, overflow="ellipsis", end="")
        label.append(conv.title if conv.kind is Kind.SYSTEM else sanitize(conv.key), "bold")
        if extra:
            label.append("  " + extra)
        elif conv.kind is Kind.ROOM:
            label.append(f"  {plural(len(conv.members), 'member')}")
            if conv.topic:  # before the group: what people read first, the address last
                label.append("  " + sanitize(conv.topic), "italic")
            label.append(f"  {conv.group}")
            if not conv.joined:
                label.append("  (not joined: /join " + sanitize(conv.name) + ")")
        self.query_one("#topic", Label).update(label)

    def _refresh_members(self) -> None:
        conv = self.model.conversation(self.model.active)
        if conv.kind is Kind.ROOM:
            names = sorted(conv.members, key=str.lower)
        elif conv.kind is Kind.PRIVATE:
            names = sorted({self.model.me, conv.name}, key=str.lower)
        else:
            names = self.model.online_names()
        self.query_one(MemberList).show(names, self.model.users)

    def _refresh_rooms(self) -> None:
        self.query_one(RoomsTable).show(self.model.rooms(), self.directory)

    def _ask_directory(self) -> None:
        """Refresh the cluster's room directory while the Rooms tab shows."""
        if self.query_one("#tabs", TabbedContent).active == "rooms":
            self.request_directory()

    def request_directory(self) -> bool:
        """Ask for the room directory: False if the service has none (it lists only our
        rooms) or cannot ask now (not connected yet: the next tick or /list asks again)."""
        request = getattr(self.service, "request_rooms", None)
        if request is None:
            return False
        try:
            request()
        except Exception:
            return False
        return True

    def _refresh_users(self) -> None:
        self.query_one(UsersTable).show(self.model.users)

    def _refresh_clocks(self) -> None:
        self._clocks_dirty = False
        view = self.query_one(ClockView)
        status = self.service.status()
        view.clock = status.clock if status.state != "STARTING" else view.clock
        view.entries = list(self.model.recent)
        view.refresh()

    def _restyle(self) -> None:
        """Theme switched: redraw what was rendered with the old colours."""
        self.messages.changed()
        self.query_one(TimelineView).show(self.timeline.entries)
        self._refresh_all()

    def open_conversation(self, key: str) -> None:
        conv = self.model.activate(key)
        self.search_status = ""
        self.messages.show(conv.lines, self.model.me, self.model.read_mark(conv))
        self._lists_dirty = True
        self.post_message(RefreshLists())
        self.post_message(StatusTick())  # the activity list changed
        if conv.messages == 0:
            self.load_history(key)

    def load_history(self, key: str) -> None:
        conv = self.model.conversation(key)
        if conv.kind is Kind.SYSTEM or conv.history_done or key in self.history_requests.values():
            return
        room = conv.name if conv.kind is Kind.ROOM else None
        peer = conv.name if conv.kind is Kind.PRIVATE else None
        try:
            rid = self.service.request_history(room, peer, conv.oldest, HISTORY_PAGE)
        except Exception as exc:  # not started yet, or closed: scrollback can wait
            log.info("history request for %s not sent: %s", key, exc)
            return
        self.history_requests[rid] = key

    def on_message_view_need_history(self, _message: MessageView.NeedHistory) -> None:
        self.load_history(self.model.active)

    @on(OptionList.OptionSelected, "#conversations")
    def _picked(self, message: OptionList.OptionSelected) -> None:
        if message.option.id and message.option.id != self.model.active:
            self.open_conversation(message.option.id)
        self.query_one(Composer).focus()

    def action_cycle(self, step: int) -> None:
        keys = [c.key for c in self.model.ordered()]
        index = keys.index(self.model.active) if self.model.active in keys else 0
        self.open_conversation(keys[(index + step) % len(keys)])

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "chat":
            self.query_one(Composer).focus()
        if tab == "rooms":  # the keys in the footer act on the table at once
            self.query_one(RoomsTable).focus()
        if tab == "clocks":
            self._refresh_clocks()

    def action_clear_search(self) -> None:
        if self.messages.highlight:
            self.messages.search("")
        self.search_status = ""
        self.found = None
        self.refresh_topic()

    # -- sending ----------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        """For the command runner: show what a local action changed."""
        self._apply(change)

    def say(self, text: str) -> None:
        """A local notice in the current conversation."""
        self._apply(self.model.notice(text, self.wall()))

    def _refuse(self, line: str) -> str | None:
        """Checked at Enter, before the composer lets go of the text."""
        problem = length_problem(line)
        if problem:
            self.say(problem)
        return problem

    def _stray(self) -> Composer | None:
        """The composer, when input reached another widget of the Chat tab instead."""
        composer = self.query_one(Composer)
        if composer.has_focus or isinstance(self.focused, Input):
            return None
        return composer if self.query_one("#tabs", TabbedContent).active == "chat" else None

    def on_key(self, event: events.Key) -> None:
        """Typing with the focus elsewhere on the Chat tab goes to the composer."""
        composer = self._stray() if event.is_printable and event.character else None
        if composer is not None and event.character:
            event.stop()
            composer.focus()
            composer.insert(event.character)

    async def on_paste(self, event: events.Paste) -> None:
        composer = self._stray()
        if composer is not None:
            event.stop()
            composer.focus()
            await composer.paste(event.text)

    @on(TextArea.Changed, "#composer")
    def _typed(self, _message: TextArea.Changed) -> None:
        self.presence.typed(self.wall())  # ends an auto-away, restarts the idle clock

    def on_composer_submitted(self, message: Composer.Submitted) -> None:
        # The composer already cleared itself and kept the line in its history, at Enter.
        # What you send (or a command's answer) shows at the bottom: stop reading back first.
        self.messages.action_scroll_end()
        self.commands.run(message.value)

    def on_composer_navigate(self, message: Composer.Navigate) -> None:
        self.navigator.navigate(message)

    def _complete(self, value: str, cursor: int) -> list[str]:
        rooms = [c.name for c in self.model.rooms()]
        return complete(value, cursor, self.model.online_names(), rooms, self.themes())

    # -- rooms tab --------------------------------------------------------------------
    def on_rooms_pane_command(self, message: RoomsPane.Command) -> None:
        self.commands.run(message.line)

    def on_rooms_pane_open(self, message: RoomsPane.Open) -> None:
        # Enter on a room: open it if we are in it, else join it (opened once entered).
        self.commands.join(message.key[1:])
        self.action_tab("chat")

    def on_rooms_pane_refresh(self, _message: RoomsPane.Refresh) -> None:
        self.request_directory()
