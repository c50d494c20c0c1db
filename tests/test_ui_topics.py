"""Topics and /list in the chat, and the Rooms tab as a channel list (Enter joins, filter)."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from tchat.core.messages import JoinRoom, LeaveRoom, RoomSummary, SetTopic
from tchat.ui.commands import Command, parse
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screenshots import SIZE, Demo, demo_app, stage
from tests.test_ui_app import screen_text, type_line, until
from tests.test_ui_commands import notices


def directory(demo: Demo) -> None:
    """Rooms of the cluster this user is not in."""
    demo.service.others = {
        "garden": RoomSummary("garden", "239.255.42.7:47471", 1, ("erin",), 3, 0.0, "tomatoes"),
        "dev": RoomSummary(
            "dev", "239.255.42.8:47471", 3, ("alice", "bob", "erin"), 40, 0.0, "release Friday"
        ),
        "quiet": RoomSummary("quiet", "239.255.42.9:47471", 0, (), 0, 0.0, ""),
    }


def test_topic_and_list_parse() -> None:
    assert parse("/topic") == Command("topic", (), "")
    assert parse("/topic ship it now") == Command("topic", (), "ship it now")
    assert parse("/list") == Command("list", ())
    assert parse("/list dev*") == Command("list", ("dev*",))


async def test_topic_is_set_shown_in_the_header_and_as_a_line() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await stage(pilot, demo, "chat")
        screen: ClientScreen = pilot.app.screen  # type: ignore[assignment]
        await type_line(pilot, "/topic")
        assert notices(screen)[-1] == "#general has no topic (/topic TEXT sets one)"
        await type_line(pilot, "/topic coffee is fixed")
        assert demo.service.submitted[-1][1] == SetTopic("general", "coffee is fixed")
        await until(pilot, lambda: "you set the topic: coffee is fixed" in notices(screen))
        header = str(screen.query_one("#topic").render())
        assert "4 members" in header and "coffee is fixed" in header
        await type_line(pilot, "/topic")
        assert notices(screen)[-1] == "topic of #general: coffee is fixed"
        # Someone else's change, from the network: shown literally, escapes neutralised.
        demo.service.set_topic("general", "[b]x[/b] \x1b[31mred\u202e", "bob")
        await until(pilot, lambda: any(n.startswith("bob set the topic") for n in notices(screen)))
        line = notices(screen)[-1]
        assert "[b]x[/b]" in line and "\x1b" not in line and "\u202e" not in line
        await type_line(pilot, "/topic #ops on call: dave")
        assert demo.service.submitted[-1][1] == SetTopic("ops", "on call: dave")
        await type_line(pilot, "/topic -clear")
        assert demo.service.submitted[-1][1] == SetTopic("general", "")
        await until(pilot, lambda: "you cleared the topic" in notices(screen))
        # Refused before sending: the reason, nothing submitted.
        count = len(demo.service.submitted)
        await type_line(pilot, "/topic evil\u202etxt")
        assert "bidi" in notices(screen)[-1] and len(demo.service.submitted) == count
        await type_line(pilot, "/topic " + "x" * 301)
        assert "longer than 300" in notices(screen)[-1]


async def test_list_shows_rooms_members_and_topics_and_filters() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await stage(pilot, demo, "chat")
        screen: ClientScreen = pilot.app.screen  # type: ignore[assignment]
        directory(demo)
        demo.service.set_topic("general", "coffee", "alice")
        await type_line(pilot, "/list")
        await until(pilot, lambda: any(n.startswith("/list:") for n in notices(screen)))
        lines = notices(screen)
        start = max(i for i, n in enumerate(lines) if n.startswith("/list:"))
        table = lines[start:]
        assert table[0] == "/list: 5 rooms"
        # Busiest first; "1 member", never "1 members".
        assert [row.split()[0] for row in table[1:]] == [
            "#general",
            "#dev",
            "#ops",
            "#garden",
            "#quiet",
        ]
        assert "4 members" in table[1] and "coffee" in table[1]
        assert "1 member " in table[4] + " " and "tomatoes" in table[4]
        assert "1 members" not in "\n".join(table)
        await type_line(pilot, "/list release")  # a word: in names or topics
        await until(pilot, lambda: notices(screen)[-2] == "/list: 1 room matching 'release'")
        assert notices(screen)[-1].split()[0] == "#dev"
        await type_line(pilot, "/list #g*")  # a glob: names
        await until(pilot, lambda: "/list: 2 rooms matching 'g*'" in notices(screen))


async def rooms_tab(pilot: Pilot[int], demo: Demo) -> DataTable[object]:
    await stage(pilot, demo, "chat")
    directory(demo)
    await pilot.press("f2")
    table: DataTable[object] = pilot.app.screen.query_one("#rooms-table", DataTable)
    await until(pilot, lambda: "#garden" in {str(k.value) for k in table.rows})
    return table


async def test_enter_on_a_room_joins_it_and_opens_it() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        table = await rooms_tab(pilot, demo)
        screen: ClientScreen = pilot.app.screen  # type: ignore[assignment]
        assert table.has_focus  # F2: the keys act on the table at once
        assert "Join/open" in screen_text(pilot)  # in the footer, with Filter and Leave
        assert "Filter" in screen_text(pilot) and "Leave" in screen_text(pilot)
        table.move_cursor(row=table.get_row_index("#garden"))
        await pilot.press("enter")
        await until(pilot, lambda: demo.service.submitted[-1][1] == JoinRoom("garden"))
        await until(pilot, lambda: screen.model.active == "#garden")
        assert screen.query_one("#tabs").active == "chat"  # type: ignore[attr-defined]
        # A room we are in opens, with no second join.
        count = len(demo.service.submitted)
        await pilot.press("f2")
        await pilot.pause()
        table.move_cursor(row=table.get_row_index("#ops"))
        await pilot.press("enter")
        await until(pilot, lambda: screen.model.active == "#ops")
        assert len(demo.service.submitted) == count
        # Delete leaves the highlighted room.
        await pilot.press("f2")
        await pilot.pause()
        table.move_cursor(row=table.get_row_index("#ops"))
        await pilot.press("delete")
        await until(pilot, lambda: demo.service.submitted[-1][1] == LeaveRoom("ops"))


async def test_the_filter_line_narrows_the_rooms_and_enter_there_joins() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        table = await rooms_tab(pilot, demo)
        await pilot.press("slash")
        field = pilot.app.screen.query_one("#room-name", Input)
        assert field.has_focus
        await pilot.press(*"fri")  # "release Friday": the topic matches too
        await until(pilot, lambda: [str(k.value) for k in table.rows] == ["#dev"])
        await pilot.press("escape")  # clears the filter, back to the table
        await until(pilot, lambda: table.row_count == 5 and table.has_focus)
        await pilot.press("slash", *"newroom", "enter")
        await until(pilot, lambda: demo.service.submitted[-1][1] == JoinRoom("newroom"))
        assert field.value == ""


def test_rooms_tab_with_topics_snapshot(snap_compare: object) -> None:
    """The Rooms tab as a channel list: topics, counts, the filter line, keys in the footer."""
    app, demo = demo_app()

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, "chat")
        directory(demo)
        demo.service.set_topic("general", "coffee machine on floor 2 is fixed", "alice")
        demo.service.set_topic("ops", "kernel updates 09:20; \u202eevil", "dave")
        await pilot.press("f2")
        table = pilot.app.screen.query_one("#rooms-table", DataTable)
        await until(pilot, lambda: table.row_count == 5)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]


def test_chat_header_with_a_topic_snapshot(snap_compare: object) -> None:
    app, demo = demo_app()

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, "chat")
        demo.service.set_topic("general", "coffee machine on floor 2 is fixed", "alice")
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]
