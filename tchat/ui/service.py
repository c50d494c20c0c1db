"""What the UI needs from the runtime's services: Protocols, so tests can pass fakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from tchat.core.effects import ClientEvent, Effect
from tchat.core.messages import Dot, Operation
from tchat.core.status import ClientStatus, ServerStatus


class ClientServiceLike(Protocol):
    """What the client UI needs of its service (tchat.runtime.client_service.ClientService,
    wired in by tchat.runtime.modes; the demo's fake in tests). The UI reads the session
    only through ``status()``: never the core node behind it."""

    def status(self) -> ClientStatus: ...

    async def start(self) -> None: ...

    async def stop(self) -> object: ...  # the runtime's says whether the logout was acked

    def submit(self, op: Operation) -> int: ...

    def request_history(
        self, room: str | None, peer: str | None, before: Dot | None, limit: int
    ) -> int: ...

    def add_listener(self, listener: Callable[[ClientEvent], None]) -> None: ...


@runtime_checkable
class ClusterChooserLike(Protocol):
    """A client service that can follow one of several clusters that answered (the
    runtime's ClientService; fakes without it never ask)."""

    def choose_cluster(self, prefix: str) -> str | None: ...


class ServerServiceLike(Protocol):
    """tchat.runtime.server_service.ServerService, as the dashboard uses it: the node only
    through ``status()``."""

    def status(self) -> ServerStatus: ...

    def step_down(self) -> bool: ...  # False when the node is not running

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def add_listener(self, listener: Callable[[Effect], None]) -> None: ...
