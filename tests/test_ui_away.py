"""Pilot tests of /away, /back, /whois, auto-away and the away marks (issue 16)."""

from __future__ import annotations

from datetime import UTC

from test_ui_app import SIZE, screen_text, started, type_line, until
from textual.widgets import DataTable

from tchat.core.effects import UsersChanged
from tchat.core.messages import SetAway, UserInfo
from tchat.ui.app import ClientApp
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screenshots import Demo, demo_app
from tchat.ui.widgets.directory import MemberList


def away(demo: Demo, name: str, reason: str) -> None:
    """``name`` goes away, as a user-list push from the leader would say."""
    users = demo.service.node.users
    user = users[name]
    users[name] = UserInfo(name, user.addr, "away", demo.clock.now, reason)
    demo.service.emit(UsersChanged(tuple(users.values())))


def away_ops(demo: Demo) -> list[SetAway]:
    return [op for _, op in demo.service.submitted if isinstance(op, SetAway)]


async def test_away_with_a_reason_then_back() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        await type_line(pilot, "/away lunch, back at 2")
        assert away_ops(demo) == [SetAway(True, "lunch, back at 2")]
        await until(pilot, lambda: screen.model.users["you"].reason == "lunch, back at 2")
        assert "you are away: lunch, back at 2" in screen_text(pilot)
        await type_line(pilot, "/whois you")
        assert "away since" in screen_text(pilot) and ": lunch, back at 2" in screen_text(pilot)
        demo.clock.now += 60  # status changes are paced: a minute later, /back goes at once
        await type_line(pilot, "/back")
        assert away_ops(demo)[-1] == SetAway(False, "")
        await until(pilot, lambda: screen.model.users["you"].status == "online")
        assert screen.model.users["you"].reason == ""


async def test_a_reason_that_would_garble_the_list_is_refused_before_sending() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, demo, ("alice",))
        await type_line(pilot, "/away gone\u202eyawa")
        assert away_ops(demo) == []
        assert "bidi control" in screen_text(pilot)
        await type_line(pilot, "/away " + "x" * 161)
        assert away_ops(demo) == []
        assert "longer than 160" in screen_text(pilot)


async def test_a_flap_is_paced_and_says_so() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        await type_line(pilot, "/away brb")
        await type_line(pilot, "/back")
        assert away_ops(demo) == [SetAway(True, "brb")]
        assert "status changes are paced" in screen_text(pilot)
        demo.clock.now += 5
        screen._tick()
        assert away_ops(demo) == [SetAway(True, "brb"), SetAway(False, "")]


async def test_members_show_away_users_dimmed_with_their_reason() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        await type_line(pilot, "/join general")
        await until(pilot, lambda: screen.model.active == "#general")
        demo.service.enter("general", ("you", "alice", "bob"))
        away(demo, "bob", "in a meeting")
        await until(pilot, lambda: screen.model.users["bob"].status == "away")
        await pilot.pause()
        members = screen.query_one(MemberList)
        rendered = members.render()
        plain = getattr(rendered, "plain", str(rendered))
        assert "~bob in a meeting" in plain
        spans = [s for s in getattr(rendered, "spans", []) if "dim" in str(s.style)]
        assert spans, "an away member is dimmed"
        table = screen.query_one("#users-table", DataTable)
        screen._refresh_users()
        row = [str(cell) for cell in table.get_row("bob")]
        assert row[2] == "away" and row[4] == "in a meeting"


async def test_a_private_message_to_an_away_user_says_so_once() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice", "bob"))
        away(demo, "bob", "on holiday")
        await until(pilot, lambda: screen.model.users["bob"].status == "away")
        await type_line(pilot, "/msg bob are you there?")
        await type_line(pilot, "hello?")
        lines = [line.text for line in screen.model.conversation(screen.model.active).lines]
        assert lines.count("bob is away: on holiday") == 1
        away(demo, "bob", "back tomorrow")  # a new reason is told again
        await until(pilot, lambda: screen.model.users["bob"].reason == "back tomorrow")
        await type_line(pilot, "ok")
        lines = [line.text for line in screen.model.conversation(screen.model.active).lines]
        assert lines.count("bob is away: back tomorrow") == 1


async def test_auto_away_after_idle_and_the_first_keystroke_brings_you_back() -> None:
    demo = Demo()
    app = ClientApp(demo.factory, user="you", config=None, wall=demo.clock, tz=UTC, auto_away=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        assert isinstance(screen, ClientScreen)
        demo.clock.now += 59
        screen._tick()
        assert away_ops(demo) == []
        demo.clock.now += 2
        screen._tick()
        assert away_ops(demo) == [SetAway(True, "idle")]
        await until(pilot, lambda: screen.model.users["you"].status == "away")
        demo.clock.now += 300
        await pilot.press("h")
        await until(pilot, lambda: len(away_ops(demo)) == 2)
        assert away_ops(demo)[-1] == SetAway(False, "")


async def test_a_keystroke_never_ends_a_manual_away() -> None:
    demo = Demo()
    app = ClientApp(demo.factory, user="you", config=None, wall=demo.clock, tz=UTC, auto_away=60)
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        await type_line(pilot, "/away lunch")
        await pilot.press("h", "i")
        demo.clock.now += 3600
        screen._tick()
        await pilot.pause()
        assert away_ops(demo) == [SetAway(True, "lunch")]


async def test_an_away_set_elsewhere_is_what_a_bare_away_toggles() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await started(pilot, demo, ("alice",))
        away(demo, "you", "set on my laptop")  # another terminal of ours
        await until(pilot, lambda: screen.model.users["you"].status == "away")
        assert screen.presence.away
        await type_line(pilot, "/away")
        assert away_ops(demo) == [SetAway(False, "")]
