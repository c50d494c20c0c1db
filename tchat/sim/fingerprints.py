"""The simulator's fingerprint record: fixed seeds whose final state a pure refactor keeps.

A refactor of the core that changes no behaviour leaves every seed's final state, and so its
fingerprint, exactly as it was. The record (``tests/data/sim_fingerprints.json``) holds the
fingerprints of seeds 1-500 with the default workload and 200 seeds with ``--chaos --ops 30``;
``tests/test_sim_fingerprints.py`` compares against it. A change that is meant to change
behaviour (a new message, another timer) changes fingerprints too: then regenerate it,

    python -m tchat.sim.fingerprints --write tests/data/sim_fingerprints.json [--jobs N]

and say so in the commit. ``--check FILE`` compares every case and lists those that differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tchat.sim.runner import run_seed
from tchat.sim.workload import WorkloadConfig

FORMAT = 1
PLAIN_SEEDS = range(1, 501)
CHAOS_SEEDS = range(1, 201)
CHAOS_GAP = (0.05, 0.3)  # tchat sim --chaos
CHAOS_OPS = 30.0  # tchat sim --ops 30


@dataclass(frozen=True, slots=True)
class Case:
    """One recorded run: a seed under a named workload."""

    workload: str  # "plain" or "chaos-ops30"
    seed: int

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.seed}"

    def config(self) -> WorkloadConfig:
        if self.workload == "plain":
            return WorkloadConfig()
        if self.workload == "chaos-ops30":
            return WorkloadConfig(fault_gap=CHAOS_GAP, ops_per_client=CHAOS_OPS)
        raise ValueError(f"unknown workload {self.workload!r}")

    def replay_command(self) -> str:
        extra = " --chaos --ops 30" if self.workload == "chaos-ops30" else ""
        return f"tchat sim --seed {self.seed}{extra}"


def all_cases() -> list[Case]:
    return [Case("plain", s) for s in PLAIN_SEEDS] + [Case("chaos-ops30", s) for s in CHAOS_SEEDS]


def fingerprint(case: Case) -> str:
    """The case's fingerprint; a run that broke an invariant says which, so it never matches
    a clean run's record by accident."""
    result = run_seed(case.seed, case.config(), trace_lines=0)
    return result.fingerprint if result.ok else f"{result.fingerprint} VIOLATION {result.invariant}"


def _fingerprints(cases: list[Case], jobs: int) -> dict[str, str]:
    if jobs <= 1:
        return {case.key: fingerprint(case) for case in cases}
    with ProcessPoolExecutor(jobs) as pool:
        return {
            case.key: fp
            for case, fp in zip(cases, pool.map(fingerprint, cases, chunksize=8), strict=True)
        }


def load(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown fingerprint record format {data.get('format')!r}")
    return {str(k): str(v) for k, v in data["cases"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tchat.sim.fingerprints", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", type=Path, metavar="FILE", help="record every case's fingerprint")
    what.add_argument("--check", type=Path, metavar="FILE", help="compare every case with FILE")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= 64:
        parser.error("--jobs must be 1..64")
    cases = all_cases()
    found = _fingerprints(cases, args.jobs)
    if args.write is not None:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        record = {"format": FORMAT, "cases": found}
        args.write.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
        bad = [k for k, v in found.items() if "VIOLATION" in v]
        print(f"wrote {len(found)} fingerprints to {args.write}; {len(bad)} with violations")
        return 1 if bad else 0
    expected = load(args.check)
    differ = [c for c in cases if expected.get(c.key) != found[c.key]]
    for case in differ:
        print(
            f"{case.key}: {expected.get(case.key)} != {found[case.key]}  ({case.replay_command()})"
        )
    print(f"{len(cases) - len(differ)}/{len(cases)} fingerprints as recorded")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
