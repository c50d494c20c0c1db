"""Bench clients of tchat: real ClientService nodes (core ClientNode on the runtime), one room."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tchat.bench.ledger import Ledger
from tchat.core.effects import ChatDelivered, Failed, Ready, RoomEntered, Sent
from tchat.core.messages import Chat, JoinRoom, SendChat
from tchat.runtime.client_service import ClientService
from tchat.runtime.options import NetOptions

logger = logging.getLogger(__name__)

ROOM = "bench"


LOGOUT_WAIT = 2.0  # seconds a closing client waits for its logout to be acknowledged


class TchatClient:
    """One user: registers, joins the bench room, reports receipts and acks to the ledger."""

    def __init__(self, options: NetOptions, index: int, owner: TchatDriver, room: str) -> None:
        self.index = index
        self.owner = owner  # its ``ledger`` is swapped between runs
        self.room = room
        self.service = ClientService(options, f"u{index}", self._on_event)
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.entered: asyncio.Future[None] = loop.create_future()
        self.texts: dict[int, str] = {}  # cmid -> text, until acknowledged

    def _on_event(self, event: Any) -> None:
        if isinstance(event, ChatDelivered):
            body = event.entry.body
            if isinstance(body, Chat) and body.room == self.room:
                self.owner.ledger.receipt(self.index, body.text)
        elif isinstance(event, Sent):
            text = self.texts.pop(event.cmid, None)
            if text is not None:
                self.owner.ledger.ack(text)
        elif isinstance(event, Ready):
            if not self.ready.done():
                self.ready.set_result(None)
        elif isinstance(event, RoomEntered):
            if event.info.room == self.room and not self.entered.done():
                self.entered.set_result(None)
        elif isinstance(event, Failed) and not self.ready.done():
            self.ready.set_exception(RuntimeError(f"u{self.index}: {event.reason}"))

    async def open(self) -> None:
        await self.service.start()
        await self.ready
        if self.room:  # an empty room name: stay idle, in no room
            self.service.submit(JoinRoom(self.room))
            await self.entered

    def say(self, text: str) -> None:
        cmid = self.service.submit(SendChat(room=self.room, to=None, text=text, action=False))
        self.texts[cmid] = text

    async def close(self) -> None:
        # Log out (bounded): a client that just vanished would be timed out by the
        # servers seconds later, logged as node events after the measured window.
        await self.service.stop(LOGOUT_WAIT)


class TchatDriver:
    def __init__(self, cfg: dict[str, Any], ledger: Ledger) -> None:
        self.options = NetOptions(
            host=str(cfg.get("host", "127.0.0.1")),
            discovery_port=int(cfg["discovery_port"]),
            broadcast="127.255.255.255",
            mode="client",
            multicast=not cfg.get("unicast", False),
            lobby=bool(cfg.get("lobby", True)),
            multicast_base=cfg["multicast_base"],
            multicast_port=int(cfg["multicast_port"]),
            log_level="WARNING",
            insecure=bool(cfg.get("insecure", False)),
            cluster=cfg.get("cluster"),
        )
        self.ledger = ledger
        self.room = str(cfg.get("room", ROOM))
        self.clients: dict[int, TchatClient] = {}

    async def open(self, index: int) -> None:
        client = TchatClient(self.options, index, self, self.room)
        self.clients[index] = client
        await client.open()

    def say(self, index: int, text: str) -> None:
        self.clients[index].say(text)

    def stuck(self) -> list[str]:
        """Clients not yet in the room, with their node's state: for error reports."""
        out = []
        for i, c in sorted(self.clients.items()):
            if not c.entered.done():
                node = c.service.node
                state = getattr(getattr(node, "state", None), "name", "?")
                out.append(f"u{i}:{state}:ready={c.ready.done()}:{c.service.name}")
        return out[:10]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
