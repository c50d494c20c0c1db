"""``tchat bench election``: LCR messages and time per ring size, simulated and real."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.nodelog import day_seconds, read_events, since
from tchat.bench.stats import summarize_ms
from tchat.core.config import Timing
from tchat.core.messages import LeaderSuspect
from tchat.sim.invariants import election_bound
from tchat.sim.network import NetworkFaults
from tchat.sim.world import World

logger = logging.getLogger(__name__)

SUSPECT_ADDR = "10.9.255.250:5000"  # a simulated client that reports the leader silent


def _no_clients(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the election bench runs servers only")


def _inject(world: World, slot: Any, message: LeaderSuspect) -> None:
    world.inject(slot, SUSPECT_ADDR, message)


def sim_round(n: int, all_initiate: bool, seed: int) -> dict[str, Any]:
    """Boot n simulated servers, crash the leader, make one (or every) backup start a round.

    A client's LeaderSuspect to a server that no longer hears the leader makes it start a
    round at once; the backups' own detectors are slowed so that only the chosen ones do.
    """
    timing = Timing()
    world = World(
        seed, faults=NetworkFaults(spike_p=0.0), timing=timing, client_factory=_no_clients
    )
    for sid in range(1, n + 1):
        world.add_server(sid)
    deadline = world.now + 20.0
    while world.now < deadline:
        world.run_for(0.1)
        leaders = world.leaders()
        roles = [s.node.role.name for s in world.running_servers()]
        if len(leaders) == 1 and roles.count("BACKUP") == n - 1:
            break
    else:
        raise RuntimeError(f"simulated ring of {n} did not settle")
    old = world.leaders()[0]
    old_epoch = old.node.epoch
    # Slow the backups' own failure detectors only after boot (joining servers wait
    # 2 x leader_timeout before electing), so that only the chosen servers initiate.
    slow = dataclasses.replace(timing, leader_timeout=30.0)
    for slot in world.running_servers():
        if slot is not old:
            slot.node.config = dataclasses.replace(slot.node.config, timing=slow)
    world.run_for(0.2)
    world.crash_server(old.server_id)
    world.run_for(timing.heartbeat_interval * 4)  # longer than the backups' "recently heard"
    t0 = world.now
    initiators = sorted(world.servers) if all_initiate else [min(world.servers)]
    for sid in initiators:
        slot = world.servers[sid]
        if slot.alive:
            msg = LeaderSuspect("bench", SUSPECT_ADDR, slot.node.epoch)
            world.at(t0, functools.partial(_inject, world, slot, msg))
    deadline = t0 + 30.0
    while world.now < deadline:
        world.run_for(0.01)
        leaders = world.leaders()
        if leaders and leaders[0].node.epoch > old_epoch:
            break
    else:
        raise RuntimeError(f"no new leader in the simulated ring of {n}")
    rounds = [r for r in world.checker.completed_rounds() if r.term > old_epoch.term]
    rnd = rounds[0] if rounds else None
    messages = sum(r.messages for r in world.checker.rounds.values() if r.term > old_epoch.term)
    return {
        "servers": n,
        "live": n - 1,
        "initiators": len(rnd.initiators) if rnd else None,
        "messages": messages,
        "bound": election_bound(n),
        "within_bound": messages <= election_bound(n),
        "rounds": len([r for r in world.checker.rounds.values() if r.term > old_epoch.term]),
        "sim_ms": round((world.now - t0) * 1000, 2),
        "round_ms": round(rnd.duration * 1000, 2) if rnd else None,
        "leader": world.leaders()[0].server_id,
    }


async def real_elections(n: int, trials: int) -> dict[str, Any]:
    """SIGKILL the leader of n daemons ``trials`` times; election time from their logs."""
    detect: list[float] = []
    elect: list[float] = []
    total: list[float] = []
    with Cluster(n, log_level="INFO") as cluster:
        leader = await cluster.wait_stable(60)
        for _ in range(trials):
            offsets = {sid: d.log_path.stat().st_size for sid, d in cluster.daemons.items()}
            wall = time.time()
            cluster.kill(leader)
            new = await cluster.wait_stable(30, live=n - 1)
            events = []
            for sid, d in cluster.daemons.items():
                if sid != leader:
                    events += read_events(d.log_path, sid, offsets[sid])[0]
            kill_at = day_seconds(wall)
            first: dict[str, float] = {}
            for ev in sorted(events, key=lambda e: e.at):
                first.setdefault(ev.kind, ev.at)
            if "election-started" in first and "new-leader" in first:
                if "leader-suspected" in first:
                    detect.append(since(first["leader-suspected"], kill_at))
                elect.append(since(first["new-leader"], first["election-started"]))
                total.append(since(first["new-leader"], kill_at))
            cluster.launch(leader)
            leader = await cluster.wait_stable(30, live=n)
            del new
    return {
        "servers": n,
        "trials": trials,
        "detection": summarize_ms(detect),
        "election": summarize_ms(elect),
        "kill_to_leader": summarize_ms(total),
    }


def run(args: Any) -> dict[str, Any]:
    sim = []
    for n in args.servers:
        for all_initiate in (False, True):
            row = sim_round(n, all_initiate, args.seed + n)
            row["case"] = "all-initiate" if all_initiate else "single-initiator"
            sim.append(row)
    real = [asyncio.run(real_elections(n, args.real_trials)) for n in args.real]
    return {
        "bench": "election",
        "sim": sim,
        "real": real,
        "ok": all(r["within_bound"] for r in sim),
    }
