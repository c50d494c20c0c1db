"""A leader takes a bounded share of client operations per loop iteration: its timers
(heartbeats) and its backups' acks are never stuck behind thousands of Submits."""

from __future__ import annotations

import asyncio

from tchat.core.effects import Effect
from tchat.runtime.driver import ITERATION_STEPS, NodeDriver
from tchat.runtime.server_service import ADMIT_BACKLOG, AdmissionGate


class Quiet:
    """A node whose steps do nothing: only the driver's bookkeeping is under test."""

    def start(self, now: float) -> list[Effect]:
        return []

    def handle(self, message: object, src: str, now: float) -> list[Effect]:
        return []

    def tick(self, now: float) -> list[Effect]:
        return []

    def flush(self, now: float) -> list[Effect]:
        return []

    def next_deadline(self) -> float | None:
        return None


class NoTransport:
    def send(self, addr: str, message: object) -> None:
        raise AssertionError("nothing is sent")


async def test_an_iteration_is_crowded_after_its_share_of_steps_and_not_after_a_flush() -> None:
    driver = NodeDriver(Quiet(), NoTransport())  # type: ignore[arg-type]
    try:
        for _ in range(ITERATION_STEPS - 1):
            driver.on_message(object(), "c:1")  # type: ignore[arg-type]
        assert not driver.crowded
        driver.on_message(object(), "c:1")  # type: ignore[arg-type]
        assert driver.crowded
        for _ in range(3):  # the flush runs in a later pass of the loop
            await asyncio.sleep(0)
        assert not driver.crowded
    finally:
        driver.close()


def test_the_gate_holds_operations_while_crowded_without_closing_on_the_backlog() -> None:
    backlog = [0]
    crowded = [False]
    gate = AdmissionGate(lambda: backlog[0], crowded=lambda: crowded[0])
    assert gate()
    crowded[0] = True
    assert not gate()
    assert gate.open and gate.closings == 0  # the backlog's hysteresis is not involved
    crowded[0] = False
    assert gate()
    backlog[0] = ADMIT_BACKLOG
    assert not gate() and gate.closings == 1
