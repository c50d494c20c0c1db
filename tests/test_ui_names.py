"""The TUI takes a name's normal form and says which character it refuses (issue 15, part 7)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from textual.widgets import Input, Label

from tchat.ui.app import ClientApp
from tchat.ui.commands import Command, Invalid, parse
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screens.name_prompt import NamePrompt
from tchat.ui.screenshots import Demo
from tests.test_ui_app import until


def test_commands_take_the_normal_form_and_refuse_deceptive_names() -> None:
    assert parse("/join \uff03\uff44\uff45\uff56") == Command("join", ("dev",))  # ＃ｄｅｖ
    assert parse("/msg \uff41\uff4c\uff49\uff43\uff45 hi") == Command("msg", ("alice",), "hi")
    refused = parse("/msg \u0430lice hi")
    assert isinstance(refused, Invalid) and "U+0430 CYRILLIC SMALL LETTER A" in refused.message
    refused = parse("/join de\u200bv")
    assert isinstance(refused, Invalid) and "U+200B ZERO WIDTH SPACE" in refused.message


async def test_the_name_prompt_names_the_hidden_character_and_normalises(tmp_path: Path) -> None:
    demo = Demo()
    app = ClientApp(demo.factory, user=None, config=tmp_path / "c.toml", wall=demo.clock, tz=UTC)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, NamePrompt))
        field = app.screen.query_one(Input)
        field.value = "zo\u200be"
        await pilot.press("enter")
        assert isinstance(app.screen, NamePrompt)
        error = str(app.screen.query_one("#name-error", Label).render())
        assert "U+200B ZERO WIDTH SPACE" in error, error
        field.value = "\uff5a\uff4f\uff45"  # ｚｏｅ
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ClientScreen))
        assert demo.services[0].node.name == "zoe"
