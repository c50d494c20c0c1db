"""`tchat sim`: run many seeds of the deterministic simulator in parallel and report."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Iterator

from tchat.sim.runner import SeedResult, run_seed
from tchat.sim.workload import DEFAULT_DURATION, WorkloadConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tchat sim", description="Deterministic simulation of a tchat cluster under faults."
    )
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (default 20)")
    parser.add_argument("--seed", type=int, help="run exactly this seed (replay)")
    parser.add_argument("--base-seed", type=int, help="first of --seeds consecutive seeds")
    parser.add_argument("--servers", type=int, default=3, help="servers per run (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="clients per run (default 4)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        help="simulated seconds of faults before the quiescent phase",
    )
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="a fault every 0.05-0.3 simulated s instead of every 0.3-1.2 s",
    )
    parser.add_argument(
        "--ops",
        type=float,
        default=WorkloadConfig().ops_per_client,
        help="operations per client per simulated second (default 2; 20-50 makes the "
        "leader batch room messages into runs)",
    )
    parser.add_argument(
        "--bursts",
        action="store_true",
        help="bursts of 20-60 maximum-size room messages, and maximum-size private "
        "messages to users who logged out and come back",
    )
    parser.add_argument(
        "--forgers",
        type=int,
        default=0,
        metavar="N",
        help="N forged logins per run: a taken name with the forger's key, a replayed "
        "proof, a victim's client ID (none is ever admitted)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="a line per seed")
    parser.add_argument(
        "--trace",
        type=int,
        default=30,
        metavar="LINES",
        help="trace lines shown with a violation (default 30)",
    )
    return parser


def _run(job: tuple[int, WorkloadConfig, int]) -> SeedResult:
    seed, config, trace_lines = job
    return run_seed(seed, config, trace_lines)


def _results(
    seeds: list[int], config: WorkloadConfig, jobs: int, trace_lines: int
) -> Iterator[SeedResult]:
    work = [(seed, config, trace_lines) for seed in seeds]
    if jobs <= 1 or len(seeds) == 1:
        yield from map(_run, work)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ctx.Pool(jobs) as pool:
        yield from pool.imap(_run, work, chunksize=max(1, min(16, len(seeds) // (jobs * 8))))


def _print_violation(result: SeedResult) -> None:
    print(f"VIOLATION seed {result.seed}: {result.invariant}: {result.detail}")
    for line in result.trace:
        print(f"    {line}")
    print(f"  replay: {result.replay_command()}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = WorkloadConfig(
        servers=args.servers,
        clients=args.clients,
        duration=args.duration,
        fault_gap=(0.05, 0.3) if args.chaos else (0.3, 1.2),
        ops_per_client=args.ops,
        bursts=args.bursts,
        forgers=args.forgers,
    )
    if args.servers < 1 or args.clients < 0:
        print("tchat sim: need at least one server and no negative client count")
        return 2
    if not 0 < args.ops <= 1000:
        print("tchat sim: --ops must be above 0 and at most 1000")
        return 2
    if args.seed is not None:
        seeds = [args.seed]
    else:
        base = args.base_seed
        if base is None:
            base = random.SystemRandom().randrange(1, 2**31)
        print(f"base seed {base}")
        seeds = list(range(base, base + args.seeds))
    started = time.perf_counter()
    violations = 0
    elections = 0
    max_msgs = 0
    bound_ok = True
    sim_time = 0.0
    largest = (0, "")  # the largest frame any node built, and its type
    single = args.seed is not None
    for result in _results(seeds, config, args.jobs, args.trace):
        sim_time += result.sim_time
        frame = (result.stats.get("largest_frame", 0), result.stats.get("largest_frame_type", ""))
        largest = max(largest, frame)
        elections += len(result.rounds)
        for rnd in result.rounds:
            max_msgs = max(max_msgs, rnd.messages)
            if rnd.clean and rnd.messages > rnd.bound:
                bound_ok = False
        if args.verbose or single:
            status = "ok" if result.ok else f"VIOLATION {result.invariant}"
            conv = (
                f" converged {result.converged_after:.2f}s"
                if result.converged_after is not None
                else ""
            )
            print(
                f"seed {result.seed} {status} fingerprint {result.fingerprint}{conv} "
                f"({result.steps} steps, {result.wall_time:.2f}s wall)"
            )
            if single:
                for rnd in result.rounds:
                    print(
                        f"  election term {rnd.term}: {rnd.messages} msgs (bound {rnd.bound}"
                        f"{'' if rnd.clean else ', lossy'}) in {rnd.duration * 1000:.1f} ms"
                    )
        if not result.ok:
            violations += 1
            _print_violation(result)
        sys.stdout.flush()
    wall = time.perf_counter() - started
    rate = sim_time / wall if wall > 0 else 0.0
    print(
        f"{len(seeds)} seeds, {violations} violations, {elections} elections, "
        f"max election msgs {max_msgs} ({'bound ok' if bound_ok else 'BOUND EXCEEDED'}), "
        f"{sim_time:.1f} simulated s in {wall:.1f} wall s ({rate:.0f} sim-s/wall-s), "
        f"largest frame {largest[0]} B ({largest[1] or 'none'})"
    )
    return 1 if violations or not bound_ok else 0
