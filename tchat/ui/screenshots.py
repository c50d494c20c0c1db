"""Deterministic demo apps for snapshot tests and docs/screenshots (run as a module)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from textual.pilot import Pilot

from tchat.ui.app import ClientApp
from tchat.ui.demo import FakeClientService, FakeClock, populate
from tchat.ui.widgets.composer import Composer

SIZE = (100, 30)


@dataclass
class Demo:
    clock: FakeClock = field(default_factory=FakeClock)
    services: list[FakeClientService] = field(default_factory=list)

    @property
    def service(self) -> FakeClientService:
        return self.services[-1]

    def factory(self, name: str) -> FakeClientService:
        service = FakeClientService(name, self.clock)
        self.services.append(service)
        return service


def demo_app(user: str = "you", theme: str = "dark") -> tuple[ClientApp, Demo]:
    demo = Demo()
    app = ClientApp(demo.factory, user=user, theme=theme, config=None, wall=demo.clock, tz=UTC)
    return app, demo


async def stage(pilot: Pilot[int], demo: Demo, tab: str = "chat") -> None:
    """Play the demo script, open #general and show ``tab``; no cursor blink."""
    populate(demo.service)
    await pilot.pause()
    screen = pilot.app.screen
    screen.open_conversation("#general")  # type: ignore[attr-defined]
    await pilot.pause()
    composer = screen.query_one(Composer)
    composer.cursor_blink = False
    screen.action_tab(tab)  # type: ignore[attr-defined]
    await pilot.pause()
    await pilot.pause()


async def save(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for tab, name in (("chat", "chat.svg"), ("elections", "elections.svg")):
        app, demo = demo_app()
        async with app.run_test(size=SIZE) as pilot:
            await stage(pilot, demo, tab)
            app.save_screenshot(filename=name, path=str(folder))
        written.append(folder / name)
    return written


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("docs/screenshots")
    for path in asyncio.run(save(folder)):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
