"""``/password`` in the Textual client: asked twice in masked fields, checked, then sent."""

from __future__ import annotations

from textual.widgets import Input

from tchat.core.effects import KeysListed
from tchat.core.messages import RemoveKey, SetPassword
from tchat.crypto.identity import fingerprint
from tchat.ui.screens.password_prompt import PasswordPrompt
from tchat.ui.screenshots import demo_app
from tests.test_ui_app import SIZE, screen_text, type_line, until
from tests.test_ui_commands import notices
from tests.test_ui_navigation import in_general

SECRET = "tr0ub4dor&3 horse"


async def _enter(pilot: object, first: str, second: str) -> None:
    screen = pilot.app.screen  # type: ignore[attr-defined]
    screen.query_one("#password-new", Input).value = first
    screen.query_one("#password-again", Input).value = second
    screen.query_one("#password-again", Input).focus()
    await pilot.press("enter")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


async def test_password_is_asked_masked_checked_and_never_shown() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "/password")
        await until(pilot, lambda: isinstance(pilot.app.screen, PasswordPrompt))
        assert all(field.password for field in pilot.app.screen.query(Input))
        await _enter(pilot, "short", "short")
        assert "at least 8 bytes" in screen_text(pilot)
        await _enter(pilot, SECRET, SECRET + "!")
        assert "the two passwords differ" in screen_text(pilot)
        await _enter(pilot, SECRET, SECRET)
        await until(pilot, lambda: not isinstance(pilot.app.screen, PasswordPrompt))
        assert [op for _, op in demo.service.submitted][-1] == SetPassword(SECRET)
        assert "the leader hashes it" in notices(screen)[-1]
        assert SECRET not in screen_text(pilot)
        assert not any(SECRET in line for line in notices(screen))


async def test_escape_leaves_the_password_unchanged() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "/password")
        await until(pilot, lambda: isinstance(pilot.app.screen, PasswordPrompt))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(pilot.app.screen, PasswordPrompt))
        assert notices(screen)[-1] == "password unchanged"
        assert not [op for _, op in demo.service.submitted if isinstance(op, SetPassword)]


async def test_devices_lists_the_keys_and_removes_one_by_number() -> None:
    app, demo = demo_app()
    desk, laptop = bytes(32), bytes(range(32))
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "/devices remove 1")
        assert notices(screen)[-1] == "no such device: /devices lists them"
        demo.service.emit(KeysListed(1, (desk, laptop), 0))
        await until(pilot, lambda: "/devices remove N removes one" in notices(screen))
        lines = notices(screen)
        assert f"device 1: {fingerprint(desk)} (this one)" in lines
        assert f"device 2: {fingerprint(laptop)}" in lines
        await type_line(pilot, "/devices remove 2")
        assert [op for _, op in demo.service.submitted][-1] == RemoveKey(laptop)
        await type_line(pilot, "/devices forget 2")
        assert notices(screen)[-1].startswith("usage: /devices [remove N]")
