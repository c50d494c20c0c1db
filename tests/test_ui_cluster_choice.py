"""Several clusters answered an unpinned Textual client: it lists them and the user picks one."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from tchat.core.effects import ClusterChoiceNeeded, ClusterOffer
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screens.cluster_prompt import ClusterPrompt
from tchat.ui.screenshots import demo_app

REAL = "SHA256:AAAArealrealrealrealrealrealrealrealrealre"
ROGUE = "SHA256:BBBBroguerogueroguerogueroguerogueroguerog"


def screen_text(pilot: Pilot[int]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.01)


async def test_the_user_picks_a_cluster_by_fingerprint_prefix() -> None:
    app, demo = demo_app()
    chosen: list[str] = []

    def choose(prefix: str) -> str | None:
        chosen.append(prefix)
        matches = [fp for fp in (REAL, ROGUE) if fp.startswith("SHA256:" + prefix)]
        return matches[0] if len(matches) == 1 else None

    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ClientScreen) and bool(demo.services))
        demo.service.choose_cluster = choose  # type: ignore[attr-defined]
        offers = (
            ClusterOffer(REAL, ("127.0.0.1:4001",), "127.0.0.1:4001", "1:1"),
            ClusterOffer(ROGUE, ("127.0.0.1:4009",), "127.0.0.1:4009", "1:9"),
        )
        demo.service.emit(ClusterChoiceNeeded(offers, "2 different clusters answered"))
        await until(pilot, lambda: isinstance(app.screen, ClusterPrompt))
        await until(pilot, lambda: REAL in screen_text(pilot) and ROGUE in screen_text(pilot))
        await pilot.press("Z", "enter")  # matches neither: the prompt stays
        await until(pilot, lambda: "no single cluster" in screen_text(pilot))
        assert isinstance(app.screen, ClusterPrompt)
        await pilot.press("backspace", "A", "A", "enter")
        await until(pilot, lambda: isinstance(app.screen, ClientScreen))
        assert chosen == ["Z", "AA"]
