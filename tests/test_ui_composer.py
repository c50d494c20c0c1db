"""The composer under a real typist: bursts of keys, pastes, newlines and long text."""

from __future__ import annotations

from textual import events
from textual.pilot import Pilot

from tchat.core.messages import MAX_TEXT, SendChat
from tchat.ui.screenshots import demo_app
from tchat.ui.widgets.composer import Composer
from tests.test_ui_app import SIZE, screen_text, started, until


def burst(pilot: Pilot[int], typed: str) -> None:
    """Keys as a fast typist (or an unbracketed paste) delivers them: all queued at once."""
    for char in typed:
        if char == "\r":
            key = events.Key("enter", "\r")
        elif char == " ":
            key = events.Key("space", " ")
        else:
            key = events.Key(char, char)
        pilot.app.post_message(key)


def sent_texts(demo: object) -> list[str]:
    return [op.text for _cmid, op in demo.service.submitted if isinstance(op, SendChat)]  # type: ignore[attr-defined]


async def in_room(pilot: Pilot[int], demo: object) -> None:
    screen = await started(pilot, demo, ("alice",))  # type: ignore[arg-type]
    demo.service.enter("general", ("you", "alice"))  # type: ignore[attr-defined]
    await pilot.pause()
    screen.open_conversation("#general")
    screen.query_one(Composer).focus()
    await pilot.pause()


async def test_fast_typing_sends_each_line_as_typed() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_room(pilot, demo)
        burst(pilot, "one\rtwo\rthree\r")
        await until(pilot, lambda: len(sent_texts(demo)) >= 3)
        await pilot.pause()
        assert sent_texts(demo) == ["one", "two", "three"]
        assert app.screen.query_one(Composer).value == ""


async def test_unbracketed_paste_of_four_lines_is_four_messages() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_room(pilot, demo)
        burst(pilot, "first line\rsecond line\rthird\rfourth and last\r")
        await until(pilot, lambda: len(sent_texts(demo)) >= 4)
        await pilot.pause()
        assert sent_texts(demo) == ["first line", "second line", "third", "fourth and last"]


async def test_typing_after_enter_stays_in_the_input() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_room(pilot, demo)
        burst(pilot, "sent\rdraft")
        await until(pilot, lambda: sent_texts(demo) == ["sent"])
        await pilot.pause()
        assert app.screen.query_one(Composer).value == "draft"


async def test_bracketed_paste_keeps_every_line_in_one_message() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_room(pilot, demo)
        pasted = "def f():\n    return 1\n\nprint(f())"
        app.post_message(events.Paste(pasted))
        await until(pilot, lambda: app.screen.query_one(Composer).value == pasted)
        await pilot.press("enter")
        await until(pilot, lambda: len(sent_texts(demo)) == 1)
        assert sent_texts(demo) == [pasted]
        await pilot.pause()
        text = screen_text(pilot)
        assert "<you> def f():" in text
        assert "\n" + " " * 8 in text  # continuation lines indented under the nick
        assert "    return 1" in text and "print(f())" in text
        assert "␊" not in text


async def test_alt_enter_and_ctrl_j_insert_a_newline() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_room(pilot, demo)
        await pilot.press("a", "alt+enter", "b", "ctrl+j", "c", "enter")
        await until(pilot, lambda: len(sent_texts(demo)) == 1)
        assert sent_texts(demo) == ["a\nb\nc"]


async def test_long_text_is_split_and_huge_text_is_refused_and_kept() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_room(pilot, demo)
        composer = app.screen.query_one(Composer)
        words = ("word " * (MAX_TEXT // 5 * 2 + 50)).strip()
        composer.value = words
        await pilot.press("enter")
        await until(pilot, lambda: len(sent_texts(demo)) == 3)
        parts = sent_texts(demo)
        assert all(0 < len(part) <= MAX_TEXT for part in parts)
        assert " ".join(parts) == words  # split at spaces, nothing lost
        huge = "x" * (MAX_TEXT * 20)
        composer.value = huge
        await pilot.press("enter")
        await pilot.pause()
        assert len(sent_texts(demo)) == 3  # nothing more was sent
        assert composer.value == huge
        assert "too long" in screen_text(pilot)


def test_alt_digits_and_alt_enter_from_a_terminal_are_alt_keys() -> None:
    import time as _time

    from textual._xterm_parser import XTermParser

    from tchat.ui.terminal_keys import fix_terminal_keys

    fix_terminal_keys()
    parser = XTermParser()
    keys = [getattr(event, "key", None) for event in parser.feed("\x1b3")]
    deadline = _time.monotonic() + 2
    while not keys and _time.monotonic() < deadline:  # ESC waits for a possible sequence
        keys = [getattr(event, "key", None) for event in parser.tick()]
    assert keys == ["alt+3"]
    assert [getattr(event, "key", None) for event in XTermParser().feed("£")] == ["pound_sign"]
    assert [getattr(event, "key", None) for event in XTermParser().feed("\x1b\r")] == ["alt+enter"]
