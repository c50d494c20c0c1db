"""What the UI needs from the runtime's services (duck-typed, so tests can pass fakes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tchat.core.effects import ClientEvent, Effect
from tchat.core.messages import Dot, Operation


class ClientServiceLike(Protocol):
    """tchat.runtime.client_service.ClientService, as the client UI uses it."""

    node: (
        Any  # ClientNode: .name .state .leader_id .leader_addr .epoch .clock .users .rooms .pending
    )

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def submit(self, op: Operation) -> int: ...

    def request_history(
        self, room: str | None, peer: str | None, before: Dot | None, limit: int
    ) -> int: ...

    def add_listener(self, listener: Callable[[ClientEvent], None]) -> None: ...


class ServerServiceLike(Protocol):
    """tchat.runtime.server_service.ServerService, as the dashboard uses it."""

    node: Any  # ServerNode: .server_id .role .epoch .leader_id .servers .live_backups .log .state

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def add_listener(self, listener: Callable[[Effect], None]) -> None: ...


def state_name(state: object) -> str:
    """An enum member's name, or the string itself."""
    return str(getattr(state, "name", state) or "?")


def rtt_ms(service: object) -> float | None:
    """The service's measured round trip to the leader, when it measures one."""
    value = getattr(service, "rtt", None)
    if value is None:
        node = getattr(service, "node", None)
        value = getattr(node, "rtt", None)
    return float(value) * 1000 if isinstance(value, int | float) else None


def delivery_mode(service: object) -> str:
    value = getattr(service, "multicast", None)
    if value is None:
        config = getattr(getattr(service, "node", None), "config", None)
        value = getattr(config, "multicast", None)
    if value is None:
        return ""
    return "multicast" if value else "unicast"
