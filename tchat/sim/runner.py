"""Run one seed: build the world, drive the workload, check every invariant, report."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from tchat.sim.invariants import Problem, Violation
from tchat.sim.workload import DEFAULT_DURATION, Workload, WorkloadConfig, random_faults
from tchat.sim.world import World

TRACE_KEEP = 4000  # trace entries kept, so a focused trace finds the nodes' own lines
CHECK_EVERY = 0.25  # simulated seconds between convergence checks in the quiescent phase
STABLE_FOR = 1.0  # once converged, keep running this long and check it still holds
QUIET_STEP = 0.05  # then, while the leader replicates entries it has just sequenced, wait
QUIET_TRIES = 20  # this often at most (1 s: replication takes milliseconds)


@dataclass(slots=True)
class RoundReport:
    term: int
    messages: int
    duration: float
    bound: int
    clean: bool


@dataclass(slots=True)
class SeedResult:
    """What one seed did: picklable, so worker processes can send it back."""

    seed: int
    servers: int
    clients: int
    duration: float
    fingerprint: str = ""
    invariant: str = ""
    detail: str = ""
    trace: list[str] = field(default_factory=list)
    rounds: list[RoundReport] = field(default_factory=list)
    sim_time: float = 0.0
    wall_time: float = 0.0
    steps: int = 0
    converged_after: float | None = None  # simulated seconds after faults stopped
    stats: dict[str, Any] = field(default_factory=dict)
    chaos: bool = False  # faults every 0.05-0.3 s (tchat sim --chaos)
    ops: float = 2.0  # operations per client per simulated second (tchat sim --ops)
    bursts: bool = False  # maximum-size message bursts (tchat sim --bursts)
    forgers: int = 0  # forged logins per run (tchat sim --forgers)

    @property
    def ok(self) -> bool:
        return not self.invariant

    def replay_command(self) -> str:
        cmd = f"tchat sim --seed {self.seed} --servers {self.servers} --clients {self.clients}"
        if self.duration != DEFAULT_DURATION:
            cmd += f" --duration {self.duration:g}"
        if self.chaos:
            cmd += " --chaos"
        if self.ops != WorkloadConfig().ops_per_client:
            cmd += f" --ops {self.ops:g}"
        if self.bursts:
            cmd += " --bursts"
        if self.forgers:
            cmd += f" --forgers {self.forgers}"
        return cmd


def build(seed: int, config: WorkloadConfig, trace_len: int = 60) -> tuple[World, Workload]:
    """The world and workload of one seed, installed but not yet run."""
    rng = random.Random(seed ^ 0x5EED5EED)
    faults = random_faults(rng) if config.faults else None
    if faults is not None and config.bursts:
        faults.coalesce = True  # a burst written at once arrives at once (see NetworkFaults)
    world = World(seed, faults=faults, trace_len=max(trace_len, 1))
    workload = Workload(world, rng, config)
    workload.install()
    return world, workload


def settle(world: World, start: float, bound: float) -> float:
    """Run until the world has converged (returns how long it took) or raise a Violation."""
    problems: list[Problem] = []
    while world.now < start + bound:
        world.run_for(CHECK_EVERY)
        problems = world.checker.convergence()
        if not problems:
            break
    if problems:
        invariant, detail = problems[0]
        more = f" (+{len(problems) - 1} more: {sorted({p[0] for p in problems[1:]})})"
        raise Violation(
            invariant,
            f"not converged {bound:g}s after faults stopped: {detail}"
            + (more if len(problems) > 1 else ""),
        )
    took = world.now - start
    world.run_for(STABLE_FOR)
    for _ in range(QUIET_TRIES):
        # An entry the leader sequenced this very instant (a dead client's session timing
        # out) is still on its way to the backups: that is replication, not divergence.
        if not _replicating(world):
            break
        world.run_for(QUIET_STEP)
    problems = world.checker.convergence()
    problems += world.checker.same_order()
    problems += world.checker.check_election_bounds()
    if problems:
        invariant, detail = problems[0]
        raise Violation(invariant, f"after convergence: {detail}")
    return took


def _replicating(world: World) -> bool:
    """Whether a running leader has entries its backups have not stored yet."""
    for slot in world.leaders():
        leadership = getattr(slot.node, "leadership", None)
        if leadership is not None and leadership.pending:
            return True
    return False


def run_seed(seed: int, config: WorkloadConfig | None = None, trace_lines: int = 30) -> SeedResult:
    """Run one seed to the end (or its first violation, with the last ``trace_lines``)."""
    config = config or WorkloadConfig()
    result = SeedResult(seed, config.servers, config.clients, config.duration)
    result.chaos = config.fault_gap != WorkloadConfig().fault_gap
    result.ops = config.ops_per_client
    result.bursts = config.bursts
    result.forgers = config.forgers
    started = time.perf_counter()
    world, _ = build(seed, config, trace_len=max(trace_lines, TRACE_KEEP))
    try:
        world.run_until(config.duration)
        result.converged_after = settle(world, config.duration, config.settle)
    except Violation as violation:
        result.invariant = violation.invariant
        result.detail = violation.detail
        # A convergence failure names the nodes at fault: show their recent traffic.
        result.trace = world.format_trace(trace_lines, focus=violation.detail)
    result.wall_time = time.perf_counter() - started
    result.sim_time = world.now
    result.steps = world.steps
    result.rounds = [
        RoundReport(r.term, r.messages, r.duration, r.bound, r.clean)
        for r in world.checker.completed_rounds()
    ]
    result.stats = {
        "sent": world.net.sent,
        "dropped": world.net.dropped,
        "duplicated": world.net.duplicated,
        "acked": len(world.checker.acked),
        "frames_encoded": world.wire.stats.encoded,
        "frames_decoded": world.wire.stats.decoded,
        "largest_frame": world.wire.stats.largest,
        "largest_frame_type": world.wire.stats.largest_type,
    }
    try:
        result.fingerprint = world.fingerprint()
    except Exception as exc:  # a broken node must not hide the violation that broke it
        result.fingerprint = f"unavailable ({type(exc).__name__})"
    return result
