"""``tchat bench fanout``: K clients in one room of a local 3-server cluster (or of ngircd)."""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.ledger import Workload
from tchat.bench.loadgen import LoadGroup
from tchat.bench.stats import CpuWindow, rss_bytes

logger = logging.getLogger(__name__)

CLIENTS_PER_WORKER = 200  # one load process keeps up with about this many receivers
IRC_CONNECT_PARALLEL = 8  # per load process


async def idle_cpu_util(pids: dict[str, int], seconds: float = 2.0) -> dict[str, float]:
    """Each named process's CPU share over ``seconds``, measured together: the servers'
    cost with every client connected and nobody sending (heartbeats)."""
    windows = {name: CpuWindow(pid) for name, pid in pids.items()}
    for window in windows.values():
        window.start()
    await asyncio.sleep(seconds)
    return {name: round(window.stop() / seconds, 4) for name, window in windows.items()}


def auto_workers(clients: int, requested: int | None) -> int:
    return requested or max(1, math.ceil(clients / CLIENTS_PER_WORKER))


async def fanout_tchat(
    work: Workload,
    *,
    unicast: bool = False,
    stock_asyncio: bool = False,
    workers: int | None = None,
    drain: float = 15.0,
    servers: int = 3,
    connect_parallel: int = 16,
    insecure: bool = False,
) -> dict[str, Any]:
    cluster = Cluster(servers, stock_asyncio=stock_asyncio, log_level="INFO", insecure=insecure)
    try:
        cluster.start()
        leader = await cluster.wait_stable(30)
        cfg = cluster.load_config(
            unicast=unicast,
            # Few logins at a time: each one is pushed to every member already in.
            connect_parallel=connect_parallel,
        )
        group = LoadGroup("tchat", work, auto_workers(work.clients, workers), cfg, cluster.root)
        try:
            connect_s = await group.start(connect_timeout=60 + work.clients * 0.3)
            backups = {f"backup{sid}": cluster.pid(sid) for sid in cluster.daemons if sid != leader}
            idle = (await idle_cpu_util({"leader": cluster.pid(leader)}))["leader"]
            marks = cluster.log_marks()
            result = await group.run({"leader": cluster.pid(leader), **backups}, drain=drain)
            # Spurious elections: the issue asks for none at this load.
            result["node_events_during_run"] = cluster.events_since(marks)
            result["leader_rss_mib"] = round(rss_bytes(cluster.pid(leader)) / 2**20, 1)
            result["leader_idle_cpu_util"] = idle
            result["cluster_after"] = await cluster.describe()
        finally:
            await group.close()
    finally:
        cluster.cleanup()
    return {
        "bench": "fanout",
        "system": "tchat",
        "mode": "unicast" if unicast else "multicast",
        "loop": "asyncio" if stock_asyncio else "uvloop",
        "servers": servers,
        **work.describe(),
        "load_processes": group.workers,
        "connect_s": round(connect_s, 2),
        **result,
    }


async def fanout_irc(
    work: Workload, *, workers: int | None = None, drain: float = 15.0
) -> dict[str, Any]:
    from tchat.bench.irc import Ngircd

    with Ngircd() as server, tempfile.TemporaryDirectory(prefix="tchat-bench-irc-") as tmp:
        # Few connects in flight: ngircd's listen backlog is short, and a dropped SYN is
        # retried by the kernel only after 1, 2, 4... s (one run's connect took 55 s).
        cfg = {"port": server.port, "connect_parallel": IRC_CONNECT_PARALLEL}
        group = LoadGroup("irc", work, auto_workers(work.clients, workers), cfg, Path(tmp))
        try:
            connect_s = await group.start(connect_timeout=60 + work.clients * 0.3)
            idle = (await idle_cpu_util({"leader": server.pid}))["leader"]
            result = await group.run({"leader": server.pid}, drain=drain)
            result["leader_idle_cpu_util"] = idle
            result["leader_rss_mib"] = round(rss_bytes(server.pid) / 2**20, 1)
        finally:
            await group.close()
    return {
        "bench": "fanout",
        "system": "ngircd",
        "mode": "tcp",
        **work.describe(),
        "load_processes": group.workers,
        "connect_s": round(connect_s, 2),
        **result,
    }


def run(args: Any) -> dict[str, Any]:
    work = Workload(args.clients, args.senders, args.rate, args.duration, args.size)
    if args.irc:
        return asyncio.run(fanout_irc(work, workers=args.workers, drain=args.drain))
    return asyncio.run(
        fanout_tchat(
            work,
            unicast=args.unicast,
            stock_asyncio=args.asyncio,
            workers=args.workers,
            drain=args.drain,
            connect_parallel=args.connect_parallel,
            insecure=args.insecure,
        )
    )
