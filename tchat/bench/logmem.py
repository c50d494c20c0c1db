"""``tchat bench logmem``: the leader's RSS as the log grows to N committed messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.ledger import Workload
from tchat.bench.loadgen import LoadGroup

logger = logging.getLogger(__name__)

ROUND_BASE = 1_000_000  # message indices of round i start at i * ROUND_BASE
SAMPLE_S = 0.5  # seconds between RSS samples while messages flow
BOUND_MIB = 200.0  # the target: the leader's RSS after 1,000,000 committed messages


def vm_rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes (from /proc/<pid>/status); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _sample(pid: int, into: list[tuple[float, int]], stop: asyncio.Event) -> None:
    began = time.monotonic()
    while not stop.is_set():
        into.append((round(time.monotonic() - began, 1), vm_rss(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def logmem(
    messages: int, rate: float, senders: int, size: int, rounds: int, workers: int
) -> dict[str, Any]:
    senders = max(1, senders)
    rounds = max(1, min(rounds, messages))
    per_round = math.ceil(messages / rounds)
    # A round sends senders * rate_each * duration messages: pace it at ``rate`` in all.
    rate_each = rate / senders
    duration = per_round / rate
    work = Workload(senders, senders, rate_each, duration, size)
    cluster = Cluster(3, log_level="INFO")
    samples: list[tuple[float, int]] = []
    checkpoints: list[dict[str, Any]] = []
    committed = sent = lost = duplicated = 0
    try:
        cluster.start()
        leader = await cluster.wait_stable(30)
        pid = cluster.pid(leader)
        await asyncio.sleep(1.0)  # settled: imports done, first heartbeats out
        before = vm_rss(pid)
        marks = cluster.log_marks()
        group = LoadGroup("tchat", work, workers, cluster.load_config(), cluster.root)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(pid, samples, stop))
        try:
            await group.start(connect_timeout=60)
            for i in range(rounds):
                res = await group.run({"leader": pid}, drain=30.0, base=(i + 1) * ROUND_BASE)
                committed += res["acked"]
                sent += res["sent"]
                lost += res["lost"]
                duplicated += res["duplicated"]
                checkpoints.append(
                    {
                        "committed": committed,
                        "rss_mib": round(vm_rss(pid) / 2**20, 1),
                        "commit_p99_ms": res["commit_latency"]["p99_ms"],
                        "leader_cpu_us_per_message": res.get("leader_cpu_us_per_message"),
                    }
                )
                logger.info("logmem: %d committed, leader RSS %s", committed, checkpoints[-1])
            after = vm_rss(pid)
            status = await cluster.status(0.5)
            final_leader = next((r.leader_id for r in status if r.role.lower() == "leader"), 0)
            events = cluster.events_since(marks)
        finally:
            stop.set()
            await sampler
            await group.close()
    finally:
        cluster.cleanup()
    peak = max((rss for _, rss in samples), default=after)
    per_message = (after - before) / committed if committed else None
    # Past a warm-up the RSS of a bounded log is flat: the growth over the second half of
    # the run, per message, says whether it still grows with the log.
    half = [c for c in checkpoints if c["committed"] >= committed / 2]
    tail_growth = None
    if len(half) >= 2 and half[-1]["committed"] > half[0]["committed"]:
        tail_growth = round(
            (half[-1]["rss_mib"] - half[0]["rss_mib"])
            * 2**20
            / (half[-1]["committed"] - half[0]["committed"]),
            1,
        )
    return {
        "bench": "logmem",
        "messages_offered": rounds * per_round,
        "committed": committed,
        "sent": sent,
        "lost": lost,
        "duplicated": duplicated,
        "rate": rate,
        "senders": senders,
        "size": size,
        "leader_rss_before_mib": round(before / 2**20, 1),
        "leader_rss_after_mib": round(after / 2**20, 1),
        "leader_rss_peak_mib": round(peak / 2**20, 1),
        "leader_rss_bytes_per_message": round(per_message, 1) if per_message else None,
        "leader_rss_bytes_per_message_second_half": tail_growth,
        "checkpoints": checkpoints,
        "rss_samples_mib": [
            (t, round(r / 2**20, 1)) for t, r in samples[:: max(1, len(samples) // 60)]
        ],
        "leader_kept": final_leader == leader,
        "node_events": events,
        "bound_mib": BOUND_MIB,
        "ok": committed == sent
        and lost == 0
        and final_leader == leader
        and (committed < 1_000_000 or after <= BOUND_MIB * 2**20),
    }


def run(args: Any) -> dict[str, Any]:
    return asyncio.run(
        logmem(args.messages, args.rate, args.senders, args.size, args.rounds, args.workers)
    )
