"""``tchat bench login``: how long logging in takes, one client at a time, Noise vs plaintext.

Each login is a fresh client (its own transport, as a user's tchat): from ``start()`` to
Ready, i.e. discovery, the TCP connect, the Noise handshake (certificate checked, pin
looked up), Register and Welcome. One at a time, so the figure is the protocol's and the
leader's, not a queue's. The same run measures an ``--insecure`` cluster for comparison.

The clients stay logged in (the leader serves 200 users by the end), and all of them live
in this one process, where each user's would have its own: between logins (untimed) what
the earlier ones hold is frozen out of the garbage collector (``gc.freeze``, as a daemon's
GcPolicy does), or a full collection over 200 clients' state (37 ms measured) lands in
some login's time, which no user's single-client process would pay.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.stats import summarize_ms
from tchat.core.effects import Failed, Ready
from tchat.runtime.client_service import ClientService

logger = logging.getLogger(__name__)

READY_TIMEOUT = 10.0


async def logins(count: int, insecure: bool) -> dict[str, Any]:
    cluster = Cluster(3, log_level="WARNING", insecure=insecure)
    times: list[float] = []
    services: list[ClientService] = []
    try:
        cluster.start()
        await cluster.wait_stable(30)
        # No multicast probe and no lobby: what is timed is the login, not the extras.
        options = cluster.net_options(multicast=False, lobby=False)
        for i in range(count):
            ready = asyncio.Event()

            def on_event(event: object, ready: asyncio.Event = ready) -> None:
                if isinstance(event, Ready | Failed):
                    ready.set()

            service = ClientService(options, f"login{i}", on_event)
            services.append(service)
            began = time.perf_counter()
            await service.start()
            await asyncio.wait_for(ready.wait(), READY_TIMEOUT)
            times.append(time.perf_counter() - began)
            gc.freeze()
    finally:
        gc.unfreeze()
        for service in services:
            await service.close()
        cluster.cleanup()
    return {"sessions": "plaintext (--insecure)" if insecure else "noise", **summarize_ms(times)}


def run(args: Any) -> dict[str, Any]:
    noise = asyncio.run(logins(args.logins, False))
    plain = asyncio.run(logins(args.logins, True))
    return {"bench": "login", "logins": args.logins, "noise": noise, "insecure": plain}
