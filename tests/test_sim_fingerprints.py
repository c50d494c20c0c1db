"""The simulator's final states match the fingerprint record: a refactor changed no behaviour.

CI checks a fixed sample of 100 recorded cases; ``TCHAT_ALL_FINGERPRINTS=1`` checks all 700.
A change meant to alter behaviour regenerates the record (see tchat/sim/fingerprints.py).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tchat.sim.fingerprints import Case, all_cases, fingerprint, load

RECORD = Path(__file__).resolve().parent / "data" / "sim_fingerprints.json"
REGENERATE = "python -m tchat.sim.fingerprints --write tests/data/sim_fingerprints.json"
SAMPLE = 100


def _cases() -> list[Case]:
    cases = all_cases()
    if os.environ.get("TCHAT_ALL_FINGERPRINTS"):
        return cases
    # A fixed sample, so a failure reproduces; both workloads are in it.
    return sorted(random.Random(14).sample(cases, SAMPLE), key=lambda c: (c.workload, c.seed))


def test_the_record_covers_every_case() -> None:
    recorded = load(RECORD)
    assert set(recorded) == {case.key for case in all_cases()}
    assert not [key for key, fp in recorded.items() if "VIOLATION" in fp]


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case.key)
def test_fingerprint_as_recorded(case: Case) -> None:
    expected = load(RECORD)[case.key]
    found = fingerprint(case)
    assert found == expected, (
        f"{case.key} changed: replay with `{case.replay_command()}`; "
        f"if the change is meant, regenerate with `{REGENERATE}`"
    )
