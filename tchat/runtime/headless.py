"""``tchat --headless``: a scriptable client, commands on stdin and JSON-lines events on stdout.

Longer than 400 lines: the command parser, the event writer and the loop between them are
the one contract scripts rely on (CONTRACT.md and README's headless section);
split, a command and the event that answers it would live apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Collection
from typing import Any, TextIO

from tchat.core.away import away_reason_problem
from tchat.core.effects import (
    ChatDelivered,
    ClusterChoiceNeeded,
    ClusterPinned,
    ConnectionChanged,
    DiscoveryHint,
    Failed,
    HistoryLoaded,
    KeysListed,
    LeaderLearned,
    MembersChanged,
    OpFailed,
    Ready,
    Renamed,
    RoomEntered,
    RoomExited,
    Sent,
    TopicChanged,
    UsersChanged,
)
from tchat.core.messages import (
    Chat,
    CreateRoom,
    Entry,
    InviteUser,
    JoinRoom,
    KickUser,
    LeaveRoom,
    Operation,
    RemoveKey,
    SendChat,
    SetAway,
    SetPassword,
    SetRoomMode,
    SetTopic,
)
from tchat.crypto.identity import fingerprint as key_fingerprint
from tchat.runtime.client_service import ClientService
from tchat.runtime.options import NetOptions

logger = logging.getLogger(__name__)

QUIT_TIMEOUT = 5.0  # outstanding operations + logout, across one failover


def entry_json(entry: Entry) -> dict[str, Any]:
    body = entry.body
    assert isinstance(body, Chat)
    return {
        "id": entry.id,
        "room": body.room,
        "from": body.sender,
        "to": body.to,
        "text": body.text,
        "action": body.action,
        "clock": {str(k): v for k, v in entry.clock.items()},
        "ts": entry.ts,
    }


def operation_json(op: Operation) -> dict[str, Any]:
    """The ``op`` and arguments of an ``ok`` event, for an acknowledged non-message operation."""
    match op:
        case JoinRoom(room=room):
            return {"op": "join", "room": room}
        case LeaveRoom(room=room):
            return {"op": "leave", "room": room}
        case SetAway(away=True, away_reason=reason):
            return {"op": "away", "reason": reason}
        case SetAway():
            return {"op": "back"}
        case SetTopic(room=room, topic=topic):
            return {"op": "topic", "room": room, "topic": topic}
        case SetPassword():
            return {"op": "password"}  # never the password itself
        case RemoveKey(identity=identity):
            return {"op": "remove-device", "fingerprint": key_fingerprint(identity)}
        case CreateRoom(room=room, private=private):
            return {"op": "create", "room": room, "private": private}
        case SetRoomMode(room=room, private=private):
            return {"op": "mode", "room": room, "mode": "private" if private else "public"}
        case InviteUser(room=room, name=name):
            return {"op": "invite", "room": room, "user": name}
        case KickUser(room=room, name=name):
            return {"op": "kick", "room": room, "user": name}
    return {"op": type(op).__name__.lower()}


def event_json(event: object) -> dict[str, Any] | None:
    """The CONTRACT.md JSON object for a client event (None: not shown)."""
    match event:
        case Ready(name=name, leader_id=leader, epoch=epoch, peers=peers):
            return {
                "event": "ready",
                "user": name,
                "leader": leader,
                "epoch": str(epoch),
                "peers": list(peers),  # the account's private conversations, most recent first
            }
        case UsersChanged(users=users):
            return {
                "event": "users",
                "users": [
                    {"name": u.name, "addr": u.addr, "status": u.status, "reason": u.away_reason}
                    for u in sorted(users, key=lambda u: u.name)
                ],
            }
        case RoomEntered(info=info):
            return {
                "event": "joined",
                "room": info.room,
                "group": info.group,
                "members": list(info.members),
                "topic": info.topic,
            }
        case RoomExited(room=room, by=by) if by:
            return {"event": "left", "room": room, "kicked_by": by}
        case RoomExited(room=room):
            return {"event": "left", "room": room}
        case TopicChanged(room=room, topic=topic, by=by, ts=ts):
            if not by:  # learned on resuming: who and when are not known
                return {"event": "topic", "room": room, "topic": topic}
            return {"event": "topic", "room": room, "topic": topic, "by": by, "ts": ts}
        case MembersChanged(room=room, members=members):
            return {"event": "members", "room": room, "members": list(members)}
        case ChatDelivered(entry=entry) if isinstance(entry.body, Chat):
            return {"event": "message", **entry_json(entry)}
        case Sent(cmid=cmid, entry_id=entry_id):
            return {"event": "sent", "id": entry_id, "cmid": cmid}
        case LeaderLearned(leader_id=leader, leader_addr=addr, epoch=epoch):
            return {"event": "leader", "leader": leader, "addr": addr, "epoch": str(epoch)}
        case KeysListed(request_id=rid, keys=keys, yours=yours):
            return {
                "event": "devices",
                "request_id": rid,
                "devices": [
                    {"n": n, "fingerprint": key_fingerprint(key), "this": n - 1 == yours}
                    for n, key in enumerate(keys, 1)
                ],
            }
        case OpFailed(cmid=cmid, reason=reason):
            return {"event": "error", "message": reason, "cmid": cmid}
        case Failed(reason=reason):
            return {"event": "error", "message": reason, "fatal": True}
        case ClusterChoiceNeeded(offers=offers, text=text):
            # Headless: nobody to ask. Listed, and fatal unless --cluster names one.
            return {
                "event": "error",
                "message": text,
                "fatal": True,
                "clusters": [
                    {
                        "fingerprint": o.fingerprint,
                        "servers": list(o.servers),
                        "leader": o.leader_addr,
                    }
                    for o in offers
                ],
            }
        case ClusterPinned(fingerprint=fingerprint, text=text):
            return {
                "event": "status",
                "state": "pinned",
                "fingerprint": fingerprint,
                "detail": text,
            }
        case ConnectionChanged(state=state, detail=detail):
            return {"event": "status", "state": state, "detail": detail}
        case DiscoveryHint(waited=waited, addr=addr, broadcast=bcast, tried=tried, text=text):
            return {
                "event": "status",
                "state": "no-answer",
                "detail": text,
                "waited": waited,
                "addr": addr,
                "broadcast": bcast,
                "tried": list(tried),
            }
        case Renamed(old=old, new=new, reason=reason):
            return {"event": "renamed", "old": old, "new": new, "reason": reason}
        case HistoryLoaded(request_id=rid, entries=entries):
            return {
                "event": "history",
                "request_id": rid,
                "messages": [entry_json(e) for e in entries if isinstance(e.body, Chat)],
            }
    return None


class Command:
    """A parsed stdin line: an operation, a local action, or an error message."""

    def __init__(
        self, op: Operation | None = None, action: str = "", error: str = "", arg: Any = None
    ) -> None:
        self.op = op
        self.action = action
        self.error = error
        self.arg = arg


def parse_topic(rest: str, room: str | None, rooms: Collection[str]) -> Command:
    """``/topic [#ROOM] [TEXT | -clear | -]``: show, set or clear a room's topic (the
    named room if we are in it, else ``room``, the current one)."""
    words = rest.strip()
    first, _, after = words.partition(" ")
    if first.startswith("#") and first[1:] in rooms:
        room, words = first[1:], after.strip()
    if room is None:
        return Command(error="usage: /topic [#ROOM] [TEXT | -clear] (after /join ROOM)")
    if not words:
        return Command(action="topic", arg=room)
    topic = "" if words in ("-clear", "-") else unicodedata.normalize("NFC", words)
    return Command(SetTopic(room, topic))


def parse(line: str, last_room: str | None, rooms: Collection[str] = ()) -> Command:
    text = line.rstrip("\r\n")
    if not text.strip():
        return Command(action="noop")
    if not text.startswith("/"):
        if last_room is None:
            return Command(error="no room joined: use /join ROOM or /say ROOM TEXT")
        return Command(SendChat(room=last_room, to=None, text=text, action=False))
    head, _, rest = text.partition(" ")
    match head:
        case "/join" | "/leave":
            room = rest.strip()
            if not room or " " in room:
                return Command(error=f"usage: {head} ROOM")
            return Command(JoinRoom(room) if head == "/join" else LeaveRoom(room))
        case "/create":
            words = rest.split()
            if not words or len(words) > 2 or words[1:] not in ([], ["--private"]):
                return Command(error="usage: /create ROOM [--private]")
            return Command(CreateRoom(words[0], private=len(words) == 2))
        case "/mode":
            words = rest.split()
            if len(words) != 2 or words[1] not in ("private", "public"):
                return Command(error="usage: /mode ROOM private|public")
            return Command(SetRoomMode(words[0], private=words[1] == "private"))
        case "/invite" | "/kick":
            words = rest.split()
            if len(words) != 2:
                return Command(error=f"usage: {head} ROOM USER")
            kind = InviteUser if head == "/invite" else KickUser
            return Command(kind(words[0], words[1]))
        case "/say" | "/msg":
            target, _, body = rest.strip().partition(" ")
            if not target or not body:
                what = "ROOM" if head == "/say" else "USER"
                return Command(error=f"usage: {head} {what} TEXT")
            if head == "/say":
                return Command(SendChat(room=target, to=None, text=body, action=False))
            return Command(SendChat(room=None, to=target, text=body, action=False))
        case "/me":
            if last_room is None or not rest.strip():
                return Command(error="usage: /me TEXT (after /join ROOM)")
            return Command(SendChat(room=last_room, to=None, text=rest.strip(), action=True))
        case "/back":
            return Command(SetAway(False))
        case "/away":
            reason = rest.strip()
            problem = away_reason_problem(reason)
            if problem:
                return Command(error=f"usage: /away [REASON]: {problem}")
            return Command(SetAway(True, reason))
        case "/topic":
            return parse_topic(rest, last_room, rooms)
        case "/password":
            # The rest of the line, as typed: a password may hold spaces (stdin is no
            # command line, so ps never shows it).
            if not rest:
                return Command(error="usage: /password NEW_PASSWORD")
            return Command(SetPassword(rest))
        case "/devices":
            words = rest.split()
            if not words:
                return Command(action="devices")
            if len(words) == 2 and words[0] == "remove" and words[1].isdigit():
                return Command(action="remove-device", arg=int(words[1]))
            return Command(error="usage: /devices [remove N]")
        case "/who" | "/quit" | "/status":
            return Command(action=head[1:])
        case "/history":
            target, _, limit = rest.strip().partition(" ")
            if not target or (limit and not limit.strip().isdigit()):
                return Command(error="usage: /history ROOM|@USER [LIMIT]")
            return Command(action="history", arg=(target, int(limit or 50)))
    return Command(error=f"unknown command {head!r}")


class HeadlessClient:
    def __init__(self, options: NetOptions, name: str, out: TextIO) -> None:
        self.options = options
        self.out = out
        self.service = ClientService(options, name, self._on_event)
        self.ready = asyncio.Event()
        self.failed = False
        self.joined_order: list[str] = []  # rooms as typed with /join, most recent last
        self.outstanding: dict[int, asyncio.Future[str]] = {}
        # Non-message operations awaiting their ack: CONTRACT.md gives them `ok`, not `sent`.
        self.operations: dict[int, dict[str, Any]] = {}
        self._lines: asyncio.Queue[str | None] | None = None
        self.devices: tuple[bytes, ...] = ()  # the last /devices listing: what N refers to

    @property
    def last_room(self) -> str | None:
        return self.joined_order[-1] if self.joined_order else None

    def emit(self, obj: dict[str, Any]) -> None:
        obj.setdefault("ts", round(time.time(), 6))
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.out.flush()

    def _on_event(self, event: object) -> None:
        obj = event_json(event)
        if isinstance(event, Sent | OpFailed):
            operation = self.operations.pop(event.cmid, None)
            if operation is not None and isinstance(event, Sent):
                obj = {"event": "ok", **operation, "cmid": event.cmid}
        if isinstance(event, KeysListed):
            self.devices = event.keys
        if isinstance(event, Ready):
            self.ready.set()
        elif isinstance(event, Failed | ClusterChoiceNeeded):
            self.failed = True
            self.ready.set()
            if self._lines is not None:  # refused for good (bad name): stop reading, exit 2
                self._lines.put_nowait(None)
        elif isinstance(event, RoomExited) and event.room in self.joined_order:
            self.joined_order.remove(event.room)
        if obj is not None:
            self.emit(obj)

    def _users(self) -> dict[str, Any]:
        users = getattr(self.service.node, "users", {}) or {}
        infos = users.values() if isinstance(users, dict) else users
        return {
            "event": "users",
            "users": [
                {"name": u.name, "addr": u.addr, "status": u.status, "reason": u.away_reason}
                for u in infos
            ],
        }

    async def run(self, lines: asyncio.Queue[str | None]) -> int:
        self._lines = lines
        await self.service.start()
        self.emit(
            {
                "event": "status",
                "state": "started",
                "addr": self.service.addr,
                "connection": self.service.connection,
                "detail": self.service.multicast_detail,
            }
        )
        quitting = False
        while not quitting:
            line = await lines.get()
            if line is None:
                break
            if self.failed:
                break
            rooms = getattr(self.service.node, "rooms", None) or {}
            command = parse(line, self.last_room, rooms)
            if command.error:
                self.emit({"event": "error", "message": command.error})
                continue
            if command.action == "quit":
                quitting = True
            elif command.action == "who":
                self.emit(self._users())
            elif command.action == "status":
                node = self.service.node
                self.emit(
                    {
                        "event": "status",
                        "state": str(getattr(node, "state", "")),
                        "connection": self.service.connection,
                        "pending": len(getattr(node, "pending", {}) or {}),
                        "drops": self.service.drop_counts(),
                    }
                )
            elif command.action == "topic":
                info = rooms.get(command.arg)
                if info is None:
                    self.emit({"event": "error", "message": f"not in room {command.arg!r}"})
                else:
                    self.emit({"event": "topic", "room": info.room, "topic": info.topic})
            elif command.action == "devices":
                rid = self.service.request_keys()
                self.emit({"event": "devices_requested", "request_id": rid})
            elif command.action == "remove-device":  # N of the last listing, as an operation
                if not 1 <= command.arg <= len(self.devices):
                    self.emit({"event": "error", "message": "no such device: /devices lists them"})
                    continue
                command.op = RemoveKey(self.devices[command.arg - 1])
            if command.action == "history":
                target, limit = command.arg
                room, peer = (None, target[1:]) if target.startswith("@") else (target, None)
                rid = self.service.request_history(room, peer, None, limit)
                self.emit({"event": "history_requested", "request_id": rid})
            elif command.op is not None:
                if isinstance(command.op, SetPassword):
                    problem = self.service.set_password_problem(command.op.password)
                    if problem:
                        self.emit({"event": "error", "message": problem})
                        continue
                if isinstance(command.op, (JoinRoom, CreateRoom)):
                    room = command.op.room  # "the last joined room" is the last one typed
                    if room in self.joined_order:
                        self.joined_order.remove(room)
                    self.joined_order.append(room)
                cmid = self.service.submit(command.op)
                self.outstanding[cmid] = self.service.acked(cmid)
                if not isinstance(command.op, SendChat):
                    self.operations[cmid] = operation_json(command.op)
        return await self._quit()

    async def _quit(self) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUIT_TIMEOUT
        waiting = [f for f in self.outstanding.values() if not f.done()]
        if waiting and not self.failed:
            await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()))
            left = sum(1 for f in waiting if not f.done())
            if left:
                self.emit({"event": "error", "message": f"{left} operation(s) not acknowledged"})
        if self.failed:
            await self.service.close()
            return 2
        ok = await self.service.stop(max(0.5, deadline - loop.time()))
        self.emit({"event": "bye", "logged_out": ok})
        return 0


def _read_stdin(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], stream: TextIO
) -> None:
    """A thread: blocking reads work for pipes, files and terminals alike."""
    try:
        for line in stream:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)
    except (OSError, ValueError, RuntimeError):  # RuntimeError: the loop closed first
        logger.debug("stdin reader ends", exc_info=True)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)


async def run_headless(options: NetOptions, name: str) -> int:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    client = HeadlessClient(options, name, sys.stdout)
    reader = threading.Thread(target=_read_stdin, args=(loop, queue, sys.stdin), daemon=True)
    reader.start()
    for sig in (signal.SIGTERM, signal.SIGINT):  # like end of input: log out, then exit 0
        loop.add_signal_handler(sig, queue.put_nowait, None)
    try:
        return await client.run(queue)
    finally:
        await client.service.close()
