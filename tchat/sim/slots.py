"""What the world keeps per node: the node itself, its store or deliveries, its timer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tchat.core.config import ClientConfig, ServerConfig
from tchat.core.effects import DurableState

INF = float("inf")
NodeFactory = Callable[..., Any]


def server_addr(server_id: int) -> str:
    return f"10.0.{server_id // 250}.{server_id % 250 + 1}:4747"


def client_addr(number: int) -> str:
    return f"10.9.{number // 250}.{number % 250 + 1}:5000"


class ServerSlot:
    """A server as the world sees it: its node (when running) and its durable store."""

    __slots__ = (
        "server_id",
        "addr",
        "config",
        "durable",
        "durable_ids",
        "node",
        "alive",
        "incarnation",
        "timer_at",
        "spin",
        "last_tick",
        "crashes",
        "kind",
        "paused_until",
    )

    def __init__(self, server_id: int, config: ServerConfig) -> None:
        self.kind = "server"
        self.server_id = server_id
        self.addr = config.addr
        self.config = config
        self.durable = DurableState()
        self.durable_ids: set[str] = set()
        self.node: Any = None
        self.alive = False
        self.incarnation = 0
        self.timer_at = INF
        self.spin = 0
        self.last_tick = -1.0
        self.crashes = 0
        self.paused_until = 0.0  # a stop-the-world pause (GC, swapping, SIGSTOP) until then

    @property
    def label(self) -> str:
        return f"s{self.server_id}"


class ClientSlot:
    """A client as the world sees it, with everything it delivered to its user."""

    __slots__ = (
        "client_id",
        "addr",
        "config",
        "node",
        "alive",
        "incarnation",
        "timer_at",
        "spin",
        "last_tick",
        "logged_out",
        "failed",
        "renamed",
        "delivered",
        "delivered_ids",
        "delivered_origins",
        "max_total",
        "acked",
        "kind",
        "names",
        "owner",
        "forger",
        "password",
    )

    def __init__(self, client_id: str, config: ClientConfig) -> None:
        self.kind = "client"
        self.client_id = client_id
        self.addr = config.addr
        self.config = config
        self.node: Any = None
        self.alive = False
        self.incarnation = 0
        self.timer_at = INF
        self.spin = 0
        self.last_tick = -1.0
        self.logged_out = False
        self.failed = False
        self.renamed = False
        self.delivered: list[Any] = []  # Entry objects, in delivery order
        self.delivered_ids: set[str] = set()
        self.delivered_origins: set[Any] = set()
        self.max_total = 0
        self.acked: dict[int, str] = {}  # cmid -> entry id
        self.names = [config.name]
        self.owner = config.name  # the person whose key it logs in with
        self.forger = ""  # a forger's trick ("" for an honest client)
        self.password = ""  # sent with its logins (a new machine's, or a forger's guess)

    @property
    def label(self) -> str:
        return self.client_id


Slot = ServerSlot | ClientSlot


def real_server_factory() -> NodeFactory:
    from tchat.core.server import ServerNode

    return ServerNode


def real_client_factory() -> NodeFactory:
    from tchat.core.client import ClientNode

    return ClientNode
