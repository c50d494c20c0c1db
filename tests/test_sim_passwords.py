"""The simulator models account passwords as it models login proofs: the runtime verifies,
the core decides, and a forger who does not know the password never joins an account."""

from __future__ import annotations

import pytest

from tchat.core.messages import KeyAdded, PasswordLogin, Register
from tchat.sim import passwords
from tchat.sim.invariants import Violation
from tchat.sim.runner import build, settle
from tchat.sim.workload import WorkloadConfig

SEEDS = range(40, 52)
CONFIG = WorkloadConfig(forgers=4)


def _run(seed: int) -> tuple[int, int, int]:
    """(keys added, wrong passwords refused, steps) of one seed run to convergence."""
    world, _ = build(seed, CONFIG, trace_len=1)
    world.run_until(CONFIG.duration)
    settle(world, CONFIG.duration, CONFIG.settle)
    added = wrong = 0
    for slot in world.servers.values():
        node = slot.node
        if node is None:
            continue
        added = max(added, sum(isinstance(e.body, KeyAdded) for e in node.log.entries()))
        wrong += node.counters.get("password-wrong", 0)
    return added, wrong, world.steps


def test_second_machines_join_and_guessers_never_do() -> None:
    """Across these seeds (faults, partitions, failovers), victims set passwords, their
    second machines log in with them and forgers guess: no invariant breaks (the checker
    raises if a forger's key joins an account or a forger is online), and both paths ran."""
    added = wrong = 0
    for seed in SEEDS:
        a, w, _ = _run(seed)
        added += a
        wrong += w
    assert added > 0, "no second machine ever joined: the path is not exercised"
    assert wrong > 0, "no guess was ever refused: the path is not exercised"


def test_a_runtime_that_trusted_any_password_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariant can fail: a desk that takes every password as verified lets forgers'
    keys join their victims' accounts, and the checker says so."""
    real = passwords.desk_step

    def trusting(node: object, message: object, src: str, now: float) -> object:
        step = real(node, message, src, now)  # type: ignore[arg-type]
        if step is not None and step[0] == "refuse" and isinstance(message, Register):
            bare = step[2][0]
            phc = node.state.passwords.get(bare.name)  # type: ignore[attr-defined]
            if phc is not None:
                return "password", node.password_login, (PasswordLogin(bare, phc), now)  # type: ignore[attr-defined]
        return step

    monkeypatch.setattr("tchat.sim.world.desk_step", trusting)
    caught = []
    for seed in SEEDS:
        try:
            _run(seed)
        except Violation as violation:
            caught.append(violation.invariant)
    assert caught and set(caught) <= {"forged-key", "forged-login", "account-owner"}, caught
