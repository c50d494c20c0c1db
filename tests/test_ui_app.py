"""Pilot tests of the client app over a scripted fake service (no network)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TabbedContent

from tchat.core.effects import ChatDelivered, Failed, UsersChanged
from tchat.core.messages import JoinRoom, LeaveRoom, SendChat, SetAway
from tchat.ui.app import ClientApp
from tchat.ui.demo import FakeClientService, FakeClock, populate
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screens.name_prompt import NamePrompt
from tchat.ui.screenshots import Demo, demo_app
from tchat.ui.widgets.composer import Composer
from tchat.ui.widgets.message_view import MessageView
from tchat.ui.widgets.timeline_view import TimelineView

SIZE = (100, 30)


def screen_text(pilot: Pilot[int]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.01)


async def started(pilot: Pilot[int], demo: Demo, users: tuple[str, ...] = ()) -> ClientScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, ClientScreen) and bool(demo.services))
    demo.service.serve(users=users)
    await pilot.pause()
    return pilot.app.screen  # type: ignore[return-value]


async def type_line(pilot: Pilot[int], text: str) -> None:
    composer = pilot.app.screen.query_one(Composer)
    composer.focus()
    composer.value = text
    composer.cursor_position = len(text)
    await pilot.press("enter")
    await pilot.pause()


async def test_join_send_and_receive_in_a_room() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        demo.service.auto_ack = False
        await type_line(pilot, "/join lobby")
        assert demo.service.submitted[-1][1] == JoinRoom("lobby")
        demo.service.acknowledge(demo.service.submitted[-1][0])
        await until(pilot, lambda: screen.model.active == "#lobby")
        await type_line(pilot, "hello lobby")
        cmid, op = demo.service.submitted[-1]
        assert op == SendChat("lobby", None, "hello lobby", False)
        line = screen.model.conversation("#lobby").lines[-1]
        assert line.pending and "… <you> hello lobby" in screen_text(pilot)
        demo.service.acknowledge(cmid)
        await until(pilot, lambda: not line.pending)
        await pilot.pause()
        assert "  <you> hello lobby" in screen_text(pilot)
        demo.service.say("alice", "hi you", room="lobby")
        await until(pilot, lambda: "<alice> hi you" in screen_text(pilot))
        lobby = screen.model.conversation("#lobby")
        assert [line.text for line in lobby.lines if not line.notice] == ["hello lobby", "hi you"]


async def test_private_messages_and_unread_counts() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        await type_line(pilot, "/msg alice are you there?")
        assert screen.model.active == "@alice"
        assert demo.service.submitted[-1][1] == SendChat(None, "alice", "are you there?", False)
        demo.service.say("bob", "psst, you", to="you")
        demo.service.say("bob", "still there?", to="you")
        await until(pilot, lambda: screen.model.conversation("@bob").unread == 2)
        await pilot.pause()
        assert "@bob 2" in screen_text(pilot)
        await pilot.press("ctrl+n")  # @alice -> @bob
        await pilot.pause()
        assert screen.model.active == "@bob" and screen.model.conversation("@bob").unread == 0
        assert "<bob> still there?" in screen_text(pilot)
        await type_line(pilot, "/msg nobody hi")
        assert "nobody is not online" in screen_text(pilot)


async def test_tabs_switch_with_keys_and_clicks() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, demo, ("alice",))
        tabs = app.screen.query_one(TabbedContent)
        for key, tab in (
            ("f2", "rooms"),
            ("f3", "members"),
            ("f4", "elections"),
            ("f5", "clocks"),
            ("f1", "chat"),
        ):
            await pilot.press(key)
            await pilot.pause()
            assert tabs.active == tab
        await pilot.click("#--content-tab-members")
        await pilot.pause()
        assert tabs.active == "members"
        table = app.screen.query_one("#users-table", DataTable)
        assert table.row_count == 2
        await pilot.press("f2")
        field = app.screen.query_one("#room-name", Input)
        field.focus()
        field.value = "garden"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.query_one("#rooms-table", DataTable).row_count == 1)
        assert demo.service.submitted[-1][1] == JoinRoom("garden")
        await pilot.click("#room-leave")  # the selected row's room
        await until(pilot, lambda: demo.service.submitted[-1][1] == LeaveRoom("garden"))


async def test_commands_and_their_errors(tmp_path: Path) -> None:
    demo = Demo()
    config = tmp_path / "config.toml"
    app = ClientApp(demo.factory, user="you", config=config, wall=demo.clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        await type_line(pilot, "/frobnicate")
        assert "unknown command /frobnicate" in screen_text(pilot)
        await type_line(pilot, "/join")
        assert "usage: /join ROOM" in screen_text(pilot)
        await type_line(pilot, "plain text here")
        assert "this is the status window" in screen_text(pilot)
        await type_line(pilot, "/who")
        assert "3 online: alice, bob, you" in screen_text(pilot)
        await type_line(pilot, "/away")
        assert demo.service.submitted[-1][1] == SetAway(True)
        await until(pilot, lambda: screen.model.users["you"].status == "away")
        await type_line(pilot, "/theme light")
        assert app.theme == "light"
        assert 'theme = "light"' in config.read_text()
        await type_line(pilot, "/theme nosuch")
        assert "no theme 'nosuch'" in screen_text(pilot)
        await type_line(pilot, "/help")
        status = screen.model.conversation("*status").lines
        assert any("/search TEXT" in line.text for line in status)
        assert "Up/Down history" in screen_text(pilot)
        await type_line(pilot, "/join general")
        await until(pilot, lambda: screen.model.active == "#general")
        await type_line(pilot, "/me waves")
        assert demo.service.submitted[-1][1] == SendChat("general", None, "waves", True)
        await type_line(pilot, "needle in a haystack")
        await type_line(pilot, "/search needle")
        assert "1/1 in 1 conversation" in screen_text(pilot)
        await type_line(pilot, "/quit")
        await until(pilot, lambda: demo.service.stopped)
    assert app.return_value == 0


async def test_tab_completion_and_input_history() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, demo, ("alice", "albert"))
        demo.service.enter("general", ("you", "alice"))
        await pilot.pause()
        composer = app.screen.query_one(Composer)
        composer.focus()
        await pilot.press("/", "j", "o", "tab")
        assert composer.value == "/join "
        await pilot.press("#", "g", "e", "tab")
        assert composer.value == "/join #general "
        composer.value = ""
        await pilot.press("a", "l", "i", "tab")
        assert composer.value == "alice: "
        composer.value = ""
        await pilot.press("a", "l", "tab")
        assert composer.value == "al" or composer.value in ("albert", "alice")
        await pilot.press("tab")
        assert composer.value in ("albert", "alice")
        composer.value = ""
        await type_line(pilot, "/who")
        await type_line(pilot, "/help")
        await pilot.press("up")
        assert composer.value == "/help"
        await pilot.press("up")
        assert composer.value == "/who"
        await pilot.press("down", "down")
        assert composer.value == ""


async def test_failover_shows_in_elections_tab() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        demo.service.failover(2, "127.0.0.1:7002", 0.412)
        await pilot.press("f4")
        await until(pilot, lambda: "election done in 412 ms" in screen_text(pilot))
        text = screen_text(pilot)
        assert "resuming the session with leader 1" in text and "epoch 2:2" in text
        assert "leader 2@127.0.0.1:7002" in text  # the status bar
        assert screen.query_one(TimelineView) is not None


async def test_composer_keeps_working_during_failover() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        demo.service.enter("general", ("you", "alice"))
        await pilot.pause()
        screen.open_conversation("#general")
        demo.service.auto_ack = False
        demo.service.emit(
            __import__("tchat.core.effects", fromlist=["x"]).ConnectionChanged(
                "RESUMING", "leader silent"
            )
        )
        await type_line(pilot, "sent while there is no leader")
        cmid = demo.service.submitted[-1][0]
        assert screen.model.conversation("#general").lines[-1].pending
        demo.service.failover(2, "127.0.0.1:7002", 0.3)
        demo.service.acknowledge(cmid)  # the core resends it to the new leader
        await until(pilot, lambda: not screen.model.conversation("#general").lines[-1].pending)


async def test_escape_and_markup_injection_is_inert() -> None:
    app, demo = demo_app()
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await started(pilot, demo, ("[red]mallory[/red]",))
        demo.service.enter("general", ("you", "[red]mallory[/red]"))
        await pilot.pause()
        screen.open_conversation("#general")
        evil = "[bold]x[/bold] \x1b[2J\x1b]52;c;AAAA\x07 \x9b6n \u202eabc [link=http://e]y[/link]"
        demo.service.say("[red]mallory[/red]", evil, room="general")
        await until(pilot, lambda: "[bold]x[/bold]" in screen_text(pilot))
        text = screen_text(pilot)
        assert "<[red]mallory[/red]> [bold]x[/bold] ␛[2J␛]52;c;AAAA␇ \\x9b6n \\u202eabc" in text
        assert "[link=http://e]y[/link]" in text
        strips = app.screen._compositor.render_strips()
        for strip in strips:
            for segment in strip:
                assert "\x1b" not in segment.text and "\x9b" not in segment.text
                assert "\u202e" not in segment.text
                if "[bold]x" in segment.text:
                    assert not (segment.style and segment.style.link)
        await pilot.press("f3")
        await pilot.pause()
        assert "[red]mallory[/red]" in screen_text(pilot)


async def test_scrollback_loads_history_at_the_top() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        service = demo.service
        older = [
            service.entry("alice", f"old {i}", room="general", ts=demo.clock.now - 86400 + i)
            for i in range(150)
        ]
        service.archive["#general"] = older
        service.enter("general", ("you", "alice"))
        await pilot.pause()
        screen.open_conversation("#general")
        await until(pilot, lambda: len(screen.model.conversation("#general").lines) > 100)
        conv = screen.model.conversation("#general")
        assert conv.lines[0].text == "old 50" and not conv.history_done
        view = screen.query_one(MessageView)
        view.focus()
        await pilot.press("home")
        await until(pilot, lambda: conv.history_done)
        assert conv.lines[0].text == "old 0"
        assert len(service.history_asked) == 2 and service.history_asked[1][3] == older[50].dot


async def test_a_hundred_thousand_messages_scroll_without_stutter() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        service = demo.service
        service.enter("general", ("you", "alice"))
        await pilot.pause()
        screen.open_conversation("#general")
        conv = screen.model.conversation("#general")
        model = screen.model
        base = demo.clock.now
        started_at = time.perf_counter()
        for i in range(100_000):
            model.deliver(
                service.entry(
                    "alice", f"message number {i} " + "x" * (i % 90), room="general", ts=base + i
                )
            )
        view = screen.query_one(MessageView)
        t_layout = time.perf_counter()
        view.show(conv.lines, "you")
        layout = time.perf_counter() - t_layout
        loaded = time.perf_counter() - started_at
        await pilot.pause()
        assert view.row_count > 100_000
        assert "message number 99999" in screen_text(pilot)
        worst = 0.0
        for target in (0, view.max_scroll_y // 2, view.max_scroll_y // 3, view.max_scroll_y):
            view.scroll_to(y=target, animate=False, immediate=True)
            t0 = time.perf_counter()
            for y in range(view.size.height):
                view.render_line(y)
            worst = max(worst, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(20):
            await pilot.press("pageup")
        paging = (time.perf_counter() - t0) / 20
        print(
            f"100k: load {loaded:.2f} s (layout {layout:.2f} s), "
            f"screenful {worst * 1000:.1f} ms, page-up {paging * 1000:.1f} ms"
        )
        assert worst < 0.05, f"a screenful took {worst * 1000:.1f} ms to render"
        assert paging < 0.25, f"a page-up took {paging * 1000:.1f} ms"
        assert loaded < 20 and layout < 3


async def test_asks_for_a_name_on_first_start(tmp_path: Path) -> None:
    demo = Demo()
    config = tmp_path / "config.toml"
    app = ClientApp(demo.factory, user=None, config=config, wall=demo.clock, tz=UTC)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, NamePrompt))
        field = app.screen.query_one(Input)
        field.value = "#bad"
        await pilot.press("enter")
        assert isinstance(app.screen, NamePrompt)
        field.value = "zoe"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ClientScreen))
        assert demo.services[0].node.name == "zoe"
    assert 'user = "zoe"' in config.read_text()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_layout_fits(size: tuple[int, int]) -> None:
    app, demo = demo_app()
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: bool(demo.services))
        populate(demo.service)
        await pilot.pause()
        pilot.app.screen.open_conversation("#general")  # type: ignore[attr-defined]
        await pilot.pause()
        text = screen_text(pilot)
        assert "serving" in text and "message, or /help" in text and "#general" in text
        assert "<carol> yes, server 2 took over" in text


def test_fake_is_deterministic() -> None:
    a, b = FakeClientService("you", FakeClock()), FakeClientService("you", FakeClock())
    seen: list[list[object]] = [[], []]
    a.add_listener(seen[0].append)
    b.add_listener(seen[1].append)
    populate(a)
    populate(b)
    assert seen[0] == seen[1] and any(isinstance(e, ChatDelivered) for e in seen[0])
    assert any(isinstance(e, UsersChanged) for e in seen[0])


async def test_a_refused_name_asks_for_another() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ClientScreen) and bool(demo.services))
        demo.service.emit(Failed("the name 'you' is taken"))
        await until(pilot, lambda: isinstance(app.screen, NamePrompt))
        assert demo.services[0].stopped
        await until(pilot, lambda: "the name 'you' is taken" in screen_text(pilot))
        app.screen.query_one(Input).value = "you2"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ClientScreen) and len(demo.services) == 2)
        assert demo.service.node.name == "you2" and app.screen.model.me == "you2"


async def test_textual_builtin_themes_work_too() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, demo)
        await type_line(pilot, "/theme nord")
        assert app.theme == "nord"
        assert app.theme_variables["sender-0"]  # borrowed from the theme's own colours


async def test_rooms_tab_lists_the_clusters_room_directory() -> None:
    from tchat.core.effects import RoomDirectory
    from tchat.core.messages import RoomSummary

    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, demo, ("alice", "bob"))
        asked: list[int] = []

        def request_rooms() -> int:
            asked.append(len(asked) + 1)
            rooms = (RoomSummary("ops", "239.255.42.9:47471", 2, ("alice", "bob"), 7, 0.0),)
            demo.service.emit(RoomDirectory(asked[-1], rooms))
            return asked[-1]

        demo.service.request_rooms = request_rooms  # type: ignore[attr-defined]
        pilot.app.screen.query_one(TabbedContent).active = "rooms"
        await until(pilot, lambda: bool(asked))
        table = pilot.app.screen.query_one("#rooms-table", DataTable)
        await until(pilot, lambda: "#ops" in {str(k.value) for k in table.rows})
        assert "239.255.42.9:47471" in screen_text(pilot)


async def test_a_quiet_private_conversation_reappears_after_logging_in_again() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        await type_line(pilot, "/msg bob see you tomorrow")
        assert "@bob" in screen.model.conversations
        await type_line(pilot, "/quit")
    # Logging in again: the servers list the account's conversations (the Welcome's peers);
    # nothing was said since, so nothing is replayed, and the conversation is there anyway.
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(
            pilot, lambda: isinstance(pilot.app.screen, ClientScreen) and bool(demo.services)
        )
        demo.service.serve(users=("alice",), peers=("bob",))
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, ClientScreen)
        await until(pilot, lambda: "@bob" in screen.model.conversations)
        bob = screen.model.conversations["@bob"]
        assert bob.unread == 0 and not bob.mentioned  # reopened, not new
        assert screen.model.active == "*status"  # reopening does not switch to it
        await type_line(pilot, "/join lobby")
        await until(pilot, lambda: screen.model.active == "#lobby")
        keys = [conv.key for conv in screen.model.ordered()]
        assert keys == ["*status", "#lobby", "@bob"]  # below the rooms
        await until(pilot, lambda: "@bob" in screen_text(pilot))
