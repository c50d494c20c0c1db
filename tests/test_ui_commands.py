"""The commands people use all day: /help CMD, /names, /clear, /lastlog, /search, /notify..."""

from __future__ import annotations

from pathlib import Path

from tchat.core.messages import MAX_TEXT
from tchat.ui.attention import desktop_note
from tchat.ui.commands import Invalid, length_problem, parse, split_text
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screenshots import demo_app
from tchat.ui.widgets.message_view import MessageView
from tests.test_ui_app import SIZE, screen_text, type_line, until
from tests.test_ui_navigation import in_general


def notices(screen: ClientScreen, key: str | None = None) -> list[str]:
    conv = screen.model.conversation(key or screen.model.active)
    return [line.text for line in conv.lines if line.notice]


async def test_help_names_clear_and_member_count() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "/help join")
        assert notices(screen)[-1].startswith("/join ROOM")
        await type_line(pilot, "/help nosuch")
        assert "no command /nosuch" in notices(screen)[-1]
        await type_line(pilot, "/names")
        assert notices(screen)[-1] == "#general: 2 members: alice, you"
        demo.service.enter("solo", ("you",))
        await pilot.pause()
        screen.open_conversation("#solo")
        await pilot.pause()
        assert "1 member " in screen_text(pilot)
        screen.open_conversation("#general")
        demo.service.say("alice", "something to clear", room="general")
        await until(pilot, lambda: "something to clear" in screen_text(pilot))
        await type_line(pilot, "/clear")
        assert "something to clear" not in screen_text(pilot)
        assert screen.query_one(MessageView).row_count == 0


async def test_lastlog_and_search_across_conversations_with_next_and_previous() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        demo.service.say("alice", "the needle is here", room="general")
        demo.service.say("alice", "nothing", room="general")
        demo.service.say("bob", "another needle for you", to="you")
        await until(pilot, lambda: screen.model.conversation("@bob").messages == 1)
        await type_line(pilot, "/lastlog needle")
        assert notices(screen)[-2] == "lastlog 'needle': 1 line"
        assert notices(screen)[-1].endswith("<alice> the needle is here")
        await type_line(pilot, "/search NEEDLE")
        assert "search 'NEEDLE': 1/2 in 2 conversations" in screen_text(pilot)
        await pilot.press("alt+n")
        await until(pilot, lambda: screen.model.active == "@bob")
        assert "2/2" in screen_text(pilot)
        await pilot.press("alt+p")
        await until(pilot, lambda: screen.model.active == "#general")
        assert "1/2" in screen_text(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert "search 'NEEDLE'" not in screen_text(pilot)


async def test_highlight_and_notify_levels_decide_the_bell(tmp_path: Path) -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        rings: list[int] = []
        app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
        await type_line(pilot, "/highlight deploy")
        demo.service.say("alice", "the Deploy is done", room="general")
        await until(pilot, lambda: len(rings) == 1)
        assert screen.model.conversation("#general").lines[-1].mention
        await type_line(pilot, "/notify none")
        demo.service.say("alice", "you there? deploy!", room="general")
        await until(pilot, lambda: "deploy!" in screen_text(pilot))
        assert len(rings) == 1
        await type_line(pilot, "/notify all")
        demo.service.say("alice", "small talk", room="general")
        await until(pilot, lambda: len(rings) == 2)
        await type_line(pilot, "/notify sometimes")
        assert "usage: /notify" in notices(screen)[-1]


async def test_links_are_styled_and_clickable() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        demo.service.say("alice", "see https://example.org/a?b=1.", room="general")
        await until(pilot, lambda: "https://example.org/a?b=1." in screen_text(pilot))
        view = screen.query_one(MessageView)
        links = {
            seg.style.link
            for y in range(view.size.height)
            for seg in view.render_line(y)
            if seg.style is not None and seg.style.link
        }
        assert links == {"https://example.org/a?b=1"}


async def test_ctrl_c_asks_again_while_messages_are_pending() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await in_general(pilot, demo)
        demo.service.auto_ack = False
        await type_line(pilot, "not stored yet")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not demo.service.stopped
        await pilot.press("ctrl+c")
        await until(pilot, lambda: demo.service.stopped)


def test_split_text_and_limits() -> None:
    text = "a" * (MAX_TEXT - 1) + "\n" + "b" * 10
    assert split_text(text) == ["a" * (MAX_TEXT - 1), "b" * 10]
    hard = "x" * (MAX_TEXT * 2 + 1)
    assert [len(p) for p in split_text(hard)] == [MAX_TEXT, MAX_TEXT, 1]
    assert length_problem("y" * MAX_TEXT) is None
    assert length_problem("y" * (MAX_TEXT * 8 + 1)) is not None
    assert isinstance(parse("z" * (MAX_TEXT * 9)), Invalid)


def test_desktop_notes_cannot_break_out_of_the_escape() -> None:
    assert desktop_note("off", "t", "b") == ""
    evil = "hi\x07\x1b]52;c;AAAA\x1b\\ \x9d0;x\x07; more"
    for kind in ("osc9", "osc777"):
        note = desktop_note(kind, "tchat #x;y", evil * 100)
        body = note[2:-1]
        assert note.endswith("\x07") and "\x07" not in body and "\x1b" not in body
        assert "\x9d" not in body and len(note) < 400
    assert desktop_note("osc777", "a;b", "c").count(";") == 3


async def test_info_shows_the_session_and_the_pinned_cluster_key() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "/info")
        assert notices(screen)[-3].startswith("leader ")
        assert notices(screen)[-2] == "cluster key not pinned yet (or --insecure)"
        demo.service.fingerprint = "SHA256:abc"  # type: ignore[attr-defined]
        await type_line(pilot, "/info")
        assert notices(screen)[-2] == "cluster key SHA256:abc"
        assert notices(screen)[-1] == "dropped: nothing"


async def test_info_shows_what_the_client_refused_by_reason() -> None:
    """Forged, replayed or unopenable frames are trouble on the LAN: /info shows their
    counters (the core's replayed-beat, the transport's bad-signature...), most first."""
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        demo.service.drops = {"replayed-beat": 3, "bad-signature": 7, "unknown-key": 1}
        await type_line(pilot, "/info")
        assert notices(screen)[-1] == ("dropped: bad-signature 7, replayed-beat 3, unknown-key 1")
        demo.service.drops = {f"reason-{i:02}": 1 for i in range(15)}
        await type_line(pilot, "/info")
        line = notices(screen)[-1]
        assert "reason-11 1" in line and "reason-12" not in line
        assert line.endswith(", 3 more of 3 other reasons")
