"""Carries out composer lines on the client screen: slash commands and plain text.

Longer than 400 lines: one method per slash command, each short; /help and the command
table (ui/commands.py) list them in the same order, and split they would drift apart.
"""

from __future__ import annotations

import fnmatch
import logging
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

from tchat.core.messages import (
    MIN_PASSWORD,
    CreateRoom,
    InviteUser,
    JoinRoom,
    KickUser,
    LeaveRoom,
    Operation,
    RemoveKey,
    SendChat,
    SetPassword,
    SetRoomMode,
    SetTopic,
)
from tchat.core.topics import topic_problem
from tchat.ui.chat_model import Kind, peer_key, room_key
from tchat.ui.commands import (
    Command,
    Invalid,
    Plain,
    command_help,
    help_lines,
    length_problem,
    parse,
    plural,
    split_text,
)
from tchat.ui.sanitize import sanitize
from tchat.ui.search import SearchResults

if TYPE_CHECKING:
    from tchat.ui.screens.chat_surface import ChatSurface

log = logging.getLogger(__name__)
LASTLOG_MAX = 50  # lines /lastlog copies into the window
LIST_MAX = 100  # rooms /list shows; a pattern narrows the rest
LIST_TOPIC = 72  # characters of a topic a /list row shows
DROPS_SHOWN = 12  # reasons /info lists (the most frequent); the rest are summed


def dropped_line(drops: tuple[tuple[str, int], ...]) -> str:
    """/info's line of what this client refused, by reason: forged, replayed or unopenable
    frames are a sign of trouble on the LAN that a user should be able to see."""
    if not drops:
        return "dropped: nothing"
    ranked = sorted(drops, key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{sanitize(reason)} {n}" for reason, n in ranked[:DROPS_SHOWN])
    rest = sum(n for _, n in ranked[DROPS_SHOWN:])
    more = f", {rest} more of {len(ranked) - DROPS_SHOWN} other reasons" if rest else ""
    return f"dropped: {shown}{more}"


class CommandRunner:
    """One method per command; errors become notices that explain themselves."""

    def __init__(self, screen: ChatSurface) -> None:
        self.screen = screen

    def run(self, line: str) -> None:
        if not line.strip():
            return
        parsed = parse(line)
        match parsed:
            case Invalid(message=message):
                self.screen.say(message)
            case Plain(text=text):
                self.send_chat(self.screen.model.active, text)
            case Command(name=name):
                getattr(self, f"do_{name}")(parsed)

    def do_join(self, cmd: Command) -> None:
        self.join(cmd.args[0])

    def do_leave(self, cmd: Command) -> None:
        screen = self.screen
        if cmd.args:
            self.leave(cmd.args[0])
            return
        conv = screen.model.conversation(screen.model.active)
        if conv.kind is not Kind.ROOM:
            screen.say("usage: /leave ROOM (this conversation is not a room)")
            return
        self.leave(conv.name)

    def do_create(self, cmd: Command) -> None:
        room = cmd.args[0]
        private = cmd.args[1:] == ("--private",)
        self.screen.join_wanted.add(room)
        self.submit(CreateRoom(room, private), f"create {'private ' if private else ''}#{room}")

    def do_mode(self, cmd: Command) -> None:
        room = self._owned_room(cmd.args[1:])
        if room is not None:
            mode = cmd.args[0].lower()
            self.submit(SetRoomMode(room, mode == "private"), f"make #{room} {mode}")

    def do_invite(self, cmd: Command) -> None:
        room = self._owned_room(cmd.args[1:])
        if room is not None:
            self.submit(InviteUser(room, cmd.args[0]), f"invite {cmd.args[0]} to #{room}")

    def do_kick(self, cmd: Command) -> None:
        room = self._owned_room(cmd.args[1:])
        if room is not None:
            self.submit(KickUser(room, cmd.args[0]), f"kick {cmd.args[0]} from #{room}")

    def _owned_room(self, named: tuple[str, ...]) -> str | None:
        """The room a /mode, /invite or /kick is about: named, or the current one (the
        leader decides whether we own it and says why not)."""
        if named:
            return named[0]
        conv = self.screen.model.conversation(self.screen.model.active)
        if conv.kind is not Kind.ROOM:
            self.screen.say("name the room (this conversation is not a room)")
            return None
        return conv.name

    def do_msg(self, cmd: Command) -> None:
        screen = self.screen
        peer = cmd.args[0]
        if peer == screen.model.me:
            screen.say("that is you")
            return
        if peer not in screen.model.online_names():
            screen.say(f"{peer} is not online (/who lists who is)")
            return
        key = peer_key(peer)
        screen.open_conversation(key)
        if cmd.rest:
            self.send_chat(key, cmd.rest)

    def do_who(self, _cmd: Command) -> None:
        model = self.screen.model
        online = [row for row in model.users.values() if row.status != "gone"]
        names = ", ".join(
            f"{sanitize(row.name)}{' (away)' if row.status == 'away' else ''}"
            for row in sorted(online, key=lambda r: r.name.lower())
        )
        self.screen.say(f"{len(online)} online: {names or 'nobody'}")

    def do_info(self, _cmd: Command) -> None:
        screen = self.screen
        status = screen.service.status()
        leader = f"{status.leader_id} at {status.leader_addr}" if status.leader_id else "none yet"
        screen.say(
            f"leader {leader}, epoch {status.epoch or '-'}, "
            f"rooms by {status.delivery or 'unknown'}, state {status.state.lower()}"
        )
        # The runtime's service knows the pinned cluster key; a UI fake may not.
        fingerprint = getattr(screen.service, "fingerprint", "")
        screen.say(f"cluster key {fingerprint or 'not pinned yet (or --insecure)'}")
        screen.say(dropped_line(status.drops))

    def do_me(self, cmd: Command) -> None:
        self.send_chat(self.screen.model.active, cmd.rest, action=True)

    def do_away(self, cmd: Command) -> None:
        # irssi's /away: with a reason, away (or a new reason); alone, back if away.
        presence = self.screen.presence
        away = bool(cmd.rest) or not presence.away
        presence.manual(away, cmd.rest, self.screen.wall())

    def do_back(self, _cmd: Command) -> None:
        self.screen.presence.manual(False, "", self.screen.wall())

    def do_whois(self, cmd: Command) -> None:
        screen = self.screen
        name = cmd.args[0]
        row = screen.model.users.get(name)
        if row is None:
            screen.say(f"no user {sanitize(name)} seen (/who lists who is online)")
            return
        since = datetime.fromtimestamp(row.since, screen.tz).strftime("%H:%M") if row.since else "-"
        state = {"away": "away", "gone": "offline"}.get(row.status, "online")
        reason = f": {sanitize(row.reason)}" if row.reason else ""
        screen.say(f"{sanitize(name)} at {sanitize(row.addr)}, {state} since {since}{reason}")

    def do_password(self, _cmd: Command) -> None:
        """Asked in a masked prompt, never typed on the command line: the composer keeps a
        history and the scrollback shows what was typed."""
        screen = self.screen
        check = getattr(screen.service, "set_password_problem", None)
        problem = check("x" * MIN_PASSWORD) if check is not None else None
        if problem:  # --insecure: no password leaves this machine in plaintext
            screen.say(problem)
            return
        from tchat.ui.screens.password_prompt import PasswordPrompt

        def chosen(password: str | None) -> None:
            if not password:
                screen.say("password unchanged")
                return
            if self.submit(SetPassword(password), "password set") is not None:
                screen.say("password sent over the encrypted session: the leader hashes it")

        screen.app.push_screen(PasswordPrompt(), chosen)

    def do_devices(self, cmd: Command) -> None:
        screen = self.screen
        if not cmd.args:
            request = getattr(screen.service, "request_keys", None)
            if request is None:
                screen.say("this session cannot list devices")
                return
            request()
            return
        number = int(cmd.args[1])
        devices = screen.devices
        if not 1 <= number <= len(devices):
            screen.say("no such device: /devices lists them")
            return
        self.submit(RemoveKey(devices[number - 1]), f"removing device {number}")

    def do_search(self, cmd: Command) -> None:
        screen = self.screen
        screen.found = SearchResults.find(screen.model, cmd.rest)
        screen.navigator.show_match(0)

    def do_lastlog(self, cmd: Command) -> None:
        screen = self.screen
        needle = cmd.rest.lower()
        conv = screen.model.conversation(screen.model.active)
        hits = [line for line in conv.lines if not line.notice and needle in line.text.lower()]
        screen.say(f"lastlog {cmd.rest!r}: {len(hits)} line{'s' if len(hits) != 1 else ''}")
        for line in hits[-LASTLOG_MAX:]:
            stamp = datetime.fromtimestamp(line.ts, screen.tz).strftime("%H:%M")
            screen.say(f"  {stamp} <{line.sender}> {line.text}")
        if len(hits) > LASTLOG_MAX:
            screen.say(f"  (the last {LASTLOG_MAX} shown; /search steps through all)")

    def do_names(self, _cmd: Command) -> None:
        screen = self.screen
        conv = screen.model.conversation(screen.model.active)
        if conv.kind is Kind.ROOM:
            names = sorted(conv.members, key=str.lower)
            where = conv.key
        elif conv.kind is Kind.PRIVATE:
            names = sorted({screen.model.me, conv.name}, key=str.lower)
            where = conv.key
        else:
            names = screen.model.online_names()
            where = "online"
        count = len(names)
        screen.say(f"{where}: {count} member{'' if count == 1 else 's'}: {', '.join(names)}")

    def do_topic(self, cmd: Command) -> None:
        """``/topic [#ROOM] [TEXT | -clear | -]``: show, set or clear a room's topic."""
        screen = self.screen
        model = screen.model
        text = cmd.rest.strip()
        conv = model.conversation(model.active)
        first, _, after = text.partition(" ")
        named = model.conversations.get(room_key(first[1:])) if first.startswith("#") else None
        if named is not None and named.joined:  # "#1 priority" stays a topic elsewhere
            conv, text = named, after.strip()
        if conv.kind is not Kind.ROOM:
            screen.say("usage: /topic [#ROOM] [TEXT | -clear] (this conversation is not a room)")
            return
        if not text:
            if conv.topic:
                screen.say(f"topic of {conv.key}: {conv.topic}")
            else:
                screen.say(f"{conv.key} has no topic (/topic TEXT sets one)")
            return
        if not conv.joined:
            screen.say(f"you are not in {conv.key}: /join {conv.name}")
            return
        topic = "" if text in ("-clear", "-") else unicodedata.normalize("NFC", text)
        problem = topic_problem(topic)
        if problem:
            screen.say(problem)
            return
        self.submit(SetTopic(conv.name, topic), f"topic of {conv.key}")

    def do_list(self, cmd: Command) -> None:
        """Ask the cluster for its rooms; the answer is shown by ``show_list``."""
        screen = self.screen
        screen.list_wanted = cmd.args[0].lstrip("#") if cmd.args else ""
        if not screen.request_directory():  # no directory (the demo): the rooms we know
            self.show_list()

    def show_list(self) -> None:
        """The /list table: every room matching the pattern, busiest first."""
        screen = self.screen
        pattern, screen.list_wanted = (screen.list_wanted or "").lower(), None
        rows: dict[str, tuple[int, str]] = {
            name: (summary.member_count, summary.topic)
            for name, summary in screen.directory.items()
        }
        for conv in screen.model.rooms():
            if conv.joined or conv.name not in rows:  # our own rooms: the freshest news
                rows[conv.name] = (len(conv.members), conv.topic)

        def matches(name: str, topic: str) -> bool:
            if not pattern:
                return True
            if any(c in pattern for c in "*?["):
                return fnmatch.fnmatchcase(name.lower(), pattern)
            return pattern in name.lower() or pattern in topic.lower()

        found = sorted(
            ((name, count, topic) for name, (count, topic) in rows.items() if matches(name, topic)),
            key=lambda row: (-row[1], row[0].lower()),
        )
        where = f" matching {pattern!r}" if pattern else ""
        screen.say(f"/list: {plural(len(found), 'room')}{where}")
        width = min(max((len(sanitize(n)) for n, _, _ in found[:LIST_MAX]), default=4) + 1, 33)
        for name, count, topic in found[:LIST_MAX]:
            shown = sanitize(topic)
            if len(shown) > LIST_TOPIC:
                shown = shown[: LIST_TOPIC - 1] + "…"
            label = ("#" + sanitize(name)).ljust(width)
            screen.say(f"  {label}  {plural(count, 'member'):>11}  {shown}")
        if len(found) > LIST_MAX:
            screen.say(f"  … {len(found) - LIST_MAX} more: /list PATTERN narrows (#dev*, ops)")

    def do_clear(self, _cmd: Command) -> None:
        screen = self.screen
        screen.model.clear(screen.model.active)
        screen.messages.clear_lines()

    def do_resend(self, _cmd: Command) -> None:
        """A refused message stays, marked, until the user says: again, as typed, in order."""
        screen = self.screen
        key = screen.model.active
        conv = screen.model.conversation(key)
        if not any(line.failed for line in conv.lines[len(conv.lines) - conv.outbox :]):
            screen.say("no refused message here to resend")
            return
        if conv.kind is Kind.ROOM and not conv.joined:
            screen.say(f"you are not in #{conv.name}: /join {conv.name}, then /resend")
            return
        failed, change = screen.model.take_failed(key)
        screen.apply(change)
        for line in failed:
            self.send_chat(key, line.draft, line.action)

    def do_dismiss(self, _cmd: Command) -> None:
        screen = self.screen
        failed, change = screen.model.take_failed(screen.model.active)
        screen.apply(change)
        count = len(failed)
        screen.say(f"dropped {count} refused message{'' if count == 1 else 's'}")

    def do_highlight(self, cmd: Command) -> None:
        model = self.screen.model
        if not cmd.args:
            words = ", ".join(model.highlights) or "none"
            self.screen.say(f"highlighted words (besides your name): {words}")
            return
        if model.highlight(cmd.args[0]):
            self.screen.say(f"{cmd.args[0]!r} now rings and marks like your name")
        else:
            self.screen.say(f"{cmd.args[0]!r} is already highlighted (or the list is full)")

    def do_notify(self, cmd: Command) -> None:
        screen = self.screen
        conv = screen.model.conversation(screen.model.active)
        if cmd.args[:1] == ("desktop",):
            screen.desktop_notify = cmd.args[1]
            remember = getattr(screen.app, "remember", None)
            if remember is not None:
                remember("desktop_notify", cmd.args[1])
            screen.say(f"desktop notifications: {cmd.args[1]} (saved)")
            return
        if cmd.args:
            conv.notify = cmd.args[0]
        level = screen.model.notify_level(conv)
        screen.say(
            f"{conv.title} rings on: {level}; desktop notifications: {screen.desktop_notify}"
        )

    def do_theme(self, cmd: Command) -> None:
        screen = self.screen
        name = cmd.args[0]
        if name not in screen.themes():
            screen.say(f"no theme {name!r}; themes: {', '.join(screen.themes())}")
            return
        choose = getattr(screen.app, "choose_theme", None)
        if choose is not None:
            choose(name)
        else:
            screen.app.theme = name
        screen.say(f"theme {name}")

    def do_help(self, cmd: Command) -> None:
        if cmd.args:
            self.screen.say(command_help(cmd.args[0]))
            return
        for line in help_lines():
            self.screen.say(line)
        self.screen.say(
            "keys: F1-F5 tabs, Alt+1..9 or Ctrl+N/Ctrl+P chats, Alt+A next with activity, "
            "PgUp/PgDn scroll (Home/End at the line's edge: top/bottom), "
            "Alt+Enter or Ctrl+J newline, Tab completes, Up/Down history, Ctrl+Q quits"
        )

    def do_quit(self, _cmd: Command) -> None:
        app = self.screen.app
        app.call_later(app.action_quit)

    # -- carrying out intents ---------------------------------------------------------
    def submit(self, op: Operation, what: str = "") -> int | None:
        try:
            cmid = self.screen.service.submit(op)
        except Exception as exc:  # the runtime refuses (closed, not serving): say so
            log.warning("submit failed: %s", exc)
            self.screen.say(f"{what or 'operation'} not sent: {exc}")
            return None
        if what:
            self.screen.ops[cmid] = what
        return cmid

    def send_chat(self, key: str, text: str, action: bool = False) -> None:
        conv = self.screen.model.conversation(key)
        if conv.kind is Kind.SYSTEM:
            self.screen.say("this is the status window: /join a room or /msg someone first")
            return
        if conv.kind is Kind.ROOM and not conv.joined:
            self.screen.say(f"you are not in #{conv.name}: /join {conv.name}")
            return
        problem = length_problem(text)
        if problem:
            self.screen.say(problem)
            return
        room = conv.name if conv.kind is Kind.ROOM else None
        to = conv.name if conv.kind is Kind.PRIVATE else None
        if to is not None:
            self.screen.presence.private_to(to)
        for part in split_text(text):  # over MAX_TEXT: several messages, in order
            cmid = self.submit(SendChat(room=room, to=to, text=part, action=action))
            if cmid is None:
                return
            self.screen.apply(
                self.screen.model.add_pending(key, cmid, part, action, self.screen.wall())
            )

    def join(self, room: str) -> None:
        key = room_key(room)
        if self.screen.model.conversation(key).joined:
            self.screen.open_conversation(key)
            return
        self.screen.join_wanted.add(room)
        self.submit(JoinRoom(room), f"join #{room}")

    def leave(self, room: str) -> None:
        if not self.screen.model.conversation(room_key(room)).joined:
            self.screen.say(f"you are not in #{room}")
            return
        self.submit(LeaveRoom(room), f"leave #{room}")
