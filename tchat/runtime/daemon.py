"""``tchat --daemon``: a headless server node; logs to stderr, stops gracefully on signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from tchat.runtime.gcpolicy import GcPolicy
from tchat.runtime.limits import open_files_budget, raise_open_files_limit
from tchat.runtime.options import NetOptions
from tchat.runtime.server_service import ServerService

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 3.0
DROP_SUMMARY_INTERVAL = 10.0


def lift_open_files(options: NetOptions) -> None:
    """A server holds a descriptor per client: take what the hard limit allows, and say so."""
    soft = raise_open_files_limit()
    logger.info(
        "open-file limit %d: at most %d inbound connections, %s per host",
        soft,
        open_files_budget(options.max_connections),
        options.max_connections_per_host or "no limit",
    )


async def run_daemon(options: NetOptions) -> int:
    lift_open_files(options)
    service = ServerService(options)
    try:
        await service.start()
    except Exception as exc:
        logger.exception("daemon failed to start")
        await service.close()
        print(f"tchat: daemon failed to start: {exc}", file=sys.stderr)
        return 1
    assert service.driver is not None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # After the handlers: whoever waits for this line may SIGTERM us at once (a test did,
    # and the daemon died of the signal instead of stopping gracefully).
    print(
        f"tchat daemon id={service.server_id} addr={service.addr} data={service.data_dir}",
        file=sys.stderr,
        flush=True,
    )
    summary = loop.create_task(_drop_summaries(service))
    watchdog = loop.create_task(_stall_watchdog())
    collector = loop.create_task(GcPolicy().run())
    stopped_by_node = asyncio.shield(service.driver.stopped)
    waiter = loop.create_task(stop.wait())
    await asyncio.wait([waiter, stopped_by_node], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    waiter.cancel()
    summary.cancel()
    watchdog.cancel()
    collector.cancel()
    if service.driver.failure:
        logger.critical("daemon exits: %s", service.driver.failure)
        await service.close()
        return 1
    logger.info("stopping: handing over")
    started = loop.time()
    await service.stop(STOP_TIMEOUT)
    logger.info(
        "stopped in %.0f ms; dropped frames: %s",
        (loop.time() - started) * 1000,
        service.drops or "none",
    )
    return 0


async def _stall_watchdog(period: float = 0.05, threshold: float = 0.1) -> None:
    """Log when the event loop was held up: a stalled leader misses its heartbeats."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(period)
        lag = loop.time() - before - period
        if lag > threshold:
            logger.warning(
                "event loop stalled for %.0f ms (CPU starved or a slow commit?)", lag * 1000
            )


async def _drop_summaries(service: ServerService) -> None:
    """Every few seconds, one line with the drop counters when they changed."""
    last: dict[str, int] = {}
    while True:
        await asyncio.sleep(DROP_SUMMARY_INTERVAL)
        now = service.drops
        if now != last:
            logger.info("dropped frames so far: %s", now)
            last = now
