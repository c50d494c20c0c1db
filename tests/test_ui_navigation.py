"""Living in the client: scrollback from the composer, markers, activity, outages, alerts."""

from __future__ import annotations

from textual.pilot import Pilot

from tchat.core.effects import ConnectionChanged
from tchat.ui.demo import FakeState
from tchat.ui.node_messages import StatusTick
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screenshots import Demo, demo_app
from tchat.ui.widgets.composer import Composer
from tchat.ui.widgets.message_view import MessageView
from tests.test_ui_app import SIZE, screen_text, started, type_line, until


async def in_general(pilot: Pilot[int], demo: Demo) -> ClientScreen:
    screen = await started(pilot, demo, ("alice", "bob"))
    demo.service.enter("general", ("you", "alice"))
    await pilot.pause()
    screen.open_conversation("#general")
    screen.query_one(Composer).focus()
    await pilot.pause()
    return screen


async def test_scrollback_from_the_composer_with_a_more_marker() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        for i in range(80):
            demo.service.say("alice", f"line {i}", room="general")
        await until(pilot, lambda: "line 79" in screen_text(pilot))
        view = screen.query_one(MessageView)
        await pilot.press("h", "i")  # typing, then scrolling: the draft stays
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        assert view.scroll_y < view.max_scroll_y
        assert "line 79" not in screen_text(pilot)
        demo.service.say("alice", "while you read", room="general")
        demo.service.say("alice", "and another", room="general")
        await until(pilot, lambda: "-- more (2 new, End) --" in screen_text(pilot))
        await pilot.press("end", "end")  # cursor to the draft's end, then the chat's
        await until(pilot, lambda: "and another" in screen_text(pilot))
        assert "-- more" not in screen_text(pilot)
        assert screen.query_one(Composer).value == "hi"
        assert screen.query_one(Composer).has_focus
        await pilot.press("pagedown")
        assert view.scroll_y == view.max_scroll_y


async def test_read_marker_activity_list_and_window_keys() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        demo.service.say("alice", "before you left", room="general")
        await until(pilot, lambda: "before you left" in screen_text(pilot))
        await pilot.press("alt+1")
        await until(pilot, lambda: screen.model.active == "*status")
        demo.service.say("alice", "after you left", room="general")
        demo.service.say("bob", "psst", to="you")
        await until(pilot, lambda: "[Act: 2,3]" in screen_text(pilot))
        demo.service.say("alice", "you: look", room="general")
        await pilot.press("alt+a")  # mentions first: #general (2), then @bob (3)
        await until(pilot, lambda: screen.model.active == "#general")
        text = screen_text(pilot)
        assert text.index("before you left") < text.index(" new ") < text.index("after you left")
        assert "[Act: 3]" in text
        await pilot.press("alt+a")
        await until(pilot, lambda: screen.model.active == "@bob")
        assert "[Act" not in screen_text(pilot)
        await pilot.press("alt+a")  # nothing left: stays, rings
        await pilot.pause()
        assert screen.model.active == "@bob"


async def test_tab_in_an_empty_composer_moves_focus_and_inserts_nothing() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        composer = screen.query_one(Composer)
        await pilot.press("tab")
        await pilot.pause()
        assert composer.value == ""
        assert not composer.has_focus
        await pilot.press("shift+tab")
        await pilot.pause()
        assert composer.has_focus and composer.value == ""


async def test_an_outage_shows_in_the_status_bar_and_once_in_the_conversation() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await until(pilot, lambda: "leader 1@127.0.0.1:7001" in screen_text(pilot))
        demo.service.node.state = FakeState.DISCOVERING
        demo.service.emit(ConnectionChanged("discovering", "leader silent"))
        await until(pilot, lambda: "disconnected, retrying (0s)" in screen_text(pilot))
        text = screen_text(pilot)
        assert "leader 1@" not in text and "rtt 0.4" not in text
        assert text.count("-- disconnected (leader silent)") == 1
        demo.clock.now += 3
        demo.service.emit(ConnectionChanged("resuming", "leader found"))  # still out
        screen.post_message(StatusTick())
        await until(pilot, lambda: "disconnected, retrying (3s)" in screen_text(pilot), 2)
        demo.service.node.state = FakeState.SERVING
        demo.service.emit(ConnectionChanged("serving", "resumed"))
        await until(pilot, lambda: "-- reconnected after 3s --" in screen_text(pilot))
        text = screen_text(pilot)
        assert "disconnected, retrying" not in text and "leader 1@127.0.0.1:7001" in text
        assert text.count("-- disconnected") == 1
        status = screen.model.conversation("*status").lines
        assert sum("reconnected" in line.text for line in status) == 1


async def test_a_quick_resume_writes_no_outage_lines() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        demo.service.failover(2, "127.0.0.1:7002", 0.3)
        await pilot.pause()
        lines = [line.text for line in screen.model.conversation("#general").lines]
        assert not any("disconnected" in t or "reconnected" in t for t in lines)


async def test_bell_on_private_messages_and_mentions_by_notify_level() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_general(pilot, demo)
        rings: list[int] = []
        app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
        demo.service.say("alice", "just chatting", room="general")
        await until(pilot, lambda: "just chatting" in screen_text(pilot))
        assert rings == []
        demo.service.say("alice", "hey you, look", room="general")
        await until(pilot, lambda: len(rings) == 1)
        demo.service.say("bob", "psst", to="you")
        await until(pilot, lambda: len(rings) == 2)


async def test_typing_with_the_focus_elsewhere_lands_in_the_composer() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        composer = screen.query_one(Composer)
        await pilot.press("tab")
        await pilot.pause()
        assert not composer.has_focus
        await pilot.press("h", "i")
        await until(pilot, lambda: composer.has_focus and composer.value == "hi")
        assert not screen.query_one(MessageView).can_focus


async def test_sending_while_scrolled_up_returns_to_the_bottom() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        for i in range(60):
            demo.service.say("alice", f"old {i}", room="general")
        await until(pilot, lambda: "old 59" in screen_text(pilot))
        await pilot.press("pageup")
        await pilot.pause()
        assert "old 59" not in screen_text(pilot)
        await type_line(pilot, "/names")
        await until(pilot, lambda: "#general: 2 members" in screen_text(pilot))
        assert "-- more" not in screen_text(pilot)
        view = screen.query_one(MessageView)
        assert view.scroll_y == view.max_scroll_y


async def test_a_paste_with_the_focus_elsewhere_lands_in_the_composer() -> None:
    from textual import events

    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        composer = screen.query_one(Composer)
        await pilot.press("tab")
        await pilot.pause()
        assert not composer.has_focus
        app.post_message(events.Paste("two\nlines"))
        await until(pilot, lambda: composer.has_focus and composer.value == "two\nlines")
