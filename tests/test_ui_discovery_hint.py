"""The Textual client shows the discovery hint (no server answered) as a visible line."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from tchat.core.effects import DiscoveryHint
from tchat.runtime.client_service import discovery_hint
from tchat.runtime.options import NetOptions
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screenshots import demo_app


def screen_text(pilot: Pilot[int]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.01)


async def test_no_answer_hint_is_a_visible_line() -> None:
    options = NetOptions(host="127.0.0.1", discovery_port=47999, servers=("127.0.0.1:9",))
    hint = discovery_hint(options, "127.0.0.1:40000", 5.0)
    assert isinstance(hint, DiscoveryHint)
    app, demo = demo_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ClientScreen) and bool(demo.services))
        demo.service.emit(hint)
        await until(pilot, lambda: "no server answered for 5s" in screen_text(pilot))
        assert "127.255.255.255:47999" in screen_text(pilot)
