"""``tchat bench memory``: the leader's RSS per idle connected client."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.fanout import idle_cpu_util
from tchat.bench.ledger import Workload
from tchat.bench.loadgen import LoadGroup
from tchat.bench.stats import rss_bytes, summarize_ms

logger = logging.getLogger(__name__)

CLIENTS_PER_PROCESS = 2500
IDLE_S = 5.0  # seconds measured with every client connected and idle


async def memory(
    clients: int, workers: int | None, connect_parallel: int = 4, insecure: bool = False
) -> dict[str, Any]:
    workers = workers or max(1, math.ceil(clients / CLIENTS_PER_PROCESS))
    cluster = Cluster(3, log_level="INFO", raise_nofile=True, insecure=insecure)
    try:
        cluster.start()
        leader = await cluster.wait_stable(30)
        pid = cluster.pid(leader)
        await asyncio.sleep(1.0)
        before = rss_bytes(pid)
        marks = cluster.log_marks()
        cfg = cluster.load_config(
            # Multicast clients, as on a LAN: each login reaches them in a lobby frame sent
            # once to the lobby group (over sessions it would be one send per client).
            unicast=False,
            # ...but they do not follow it: in one process, 10,000 clients applying 10,000
            # logins each is 10^8 updates the 2 cores cannot make. The leader keeps the same
            # session for them; only the lobby datagrams have no listener here.
            lobby=False,
            spread_hosts=True,  # 127.0.0.2, .3...: a port range per load process
            room="",  # no room: registered and idle
            connect_parallel=connect_parallel,
        )
        group = LoadGroup("tchat", Workload(clients, 0, 0.0, 0.0, 0), workers, cfg, cluster.root)
        try:
            connect_s = await group.start(connect_timeout=120 + clients * 0.1)
            logins = summarize_ms(v / 1000 for v in group.login_ms)
            servers = {
                ("leader" if sid == leader else f"backup{sid}"): cluster.pid(sid)
                for sid in sorted(cluster.daemons)
            }
            idle_cpu = await idle_cpu_util(servers, IDLE_S)  # idle: heartbeats only
            after = rss_bytes(pid)
            load_rss = await group.rss()
            status = await cluster.status(0.5)
            users = max((r.user_count for r in status), default=0)
            events = cluster.events_since(marks)
            final_leader = next((r.leader_id for r in status if r.role.lower() == "leader"), 0)
        finally:
            await group.close()
    finally:
        cluster.cleanup()
    per_client = (after - before) / clients
    return {
        "bench": "memory",
        "clients": clients,
        "client_processes": workers,
        "sessions": "plaintext (--insecure)" if insecure else "noise",
        "connect_s": round(connect_s, 1),
        # start to Ready per client (discovery, handshake, Register, Welcome), under the
        # load of ``connect_parallel`` logins in flight per load process
        "login_ms": logins,
        "users_seen_by_status": users,
        "leader_rss_before_mib": round(before / 2**20, 1),
        "leader_rss_after_mib": round(after / 2**20, 1),
        "leader_rss_per_client_kib": round(per_client / 1024, 2),
        "client_process_rss_mib": [round(r / 2**20, 1) for r in load_rss],
        "idle_cpu_util": idle_cpu,  # each server's CPU share with every client idle
        "leader_kept": final_leader == leader,  # no failover while they logged in
        "node_events": events,
        "ok": per_client <= 16 * 1024 and users == clients and final_leader == leader,
    }


def run(args: Any) -> dict[str, Any]:
    return asyncio.run(
        memory(args.clients, args.workers, args.connect_parallel, getattr(args, "insecure", False))
    )
