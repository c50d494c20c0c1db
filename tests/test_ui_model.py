"""UI logic without a terminal: the chat model, command parsing, completion, settings, themes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.text import Text

from tchat.core.effects import ConnectionChanged, LeaderLearned, Ready
from tchat.core.messages import Chat, Dot, Entry, Epoch, Origin, UserInfo
from tchat.core.vclock import VectorClock
from tchat.ui.causality import causal_relation
from tchat.ui.chat_model import ChatModel
from tchat.ui.commands import Command, Invalid, Plain, complete, parse
from tchat.ui.settings import save_setting
from tchat.ui.themes import load_themes, theme_from_toml
from tchat.ui.timeline import ElectionTimeline
from tchat.ui.widgets.message_view import fold, wrap_offsets


def chat(
    counter: int,
    sender: str,
    text: str,
    room: str | None = "general",
    to: str | None = None,
    seen: dict[int, int] | None = None,
    cmid: int | None = None,
    server: int = 1,
) -> Entry:
    origin = Origin("c", cmid) if cmid is not None else None
    body = Chat(sender, room, to, text, False, VectorClock(seen or {}))
    return Entry(
        Dot(server, counter), VectorClock({server: counter}), 1000.0 + counter, origin, body
    )


def test_own_message_is_pending_until_sent_and_shown_once() -> None:
    model = ChatModel("me")
    model.activate("#general")
    model.add_pending("#general", 7, "hi", False, 1.0)
    line = model.conversation("#general").lines[-1]
    assert line.pending
    model.deliver(chat(1, "me", "hi", cmid=7))  # echo before the Ack
    model.mark_sent(7, "1.1")
    lines = model.conversation("#general").lines
    assert len(lines) == 1 and not lines[0].pending and lines[0].entry_id == "1.1"


def test_sent_before_echo_also_shows_once() -> None:
    model = ChatModel("me")
    model.add_pending("#general", 3, "yo", False, 1.0)
    model.mark_sent(3, "1.4")
    model.deliver(chat(4, "me", "yo", cmid=3))
    assert [line.text for line in model.conversation("#general").lines] == ["yo"]


def test_unread_and_mentions_count_only_inactive_conversations() -> None:
    model = ChatModel("me")
    model.activate("#general")
    model.deliver(chat(1, "bob", "hello"))
    model.deliver(chat(2, "bob", "ping ME please", room="ops"))
    model.deliver(chat(3, "bob", "mean", room="ops"))
    assert model.conversation("#general").unread == 0
    ops = model.conversation("#ops")
    assert ops.unread == 2 and ops.mentioned
    assert ops.lines[0].mention and not ops.lines[1].mention
    model.activate("#ops")
    assert ops.unread == 0 and not ops.mentioned


def test_private_messages_go_to_the_peer_conversation() -> None:
    model = ChatModel("me")
    model.deliver(chat(1, "alice", "psst", room=None, to="me"))
    model.deliver(chat(2, "me", "yes?", room=None, to="alice"))
    assert [line.text for line in model.conversation("@alice").lines] == ["psst", "yes?"]


def test_history_prepends_older_entries_without_duplicates() -> None:
    model = ChatModel("me")
    model.activate("#general")
    model.deliver(chat(5, "bob", "five"))
    change = model.history(
        "#general", (chat(3, "a", "three"), chat(4, "a", "four"), chat(5, "bob", "five")), 100
    )
    assert change.prepended == 2
    assert [line.text for line in model.conversation("#general").lines] == ["three", "four", "five"]
    assert model.conversation("#general").oldest == Dot(1, 3)
    assert model.conversation("#general").history_done


def test_users_become_gone_with_a_time() -> None:
    model = ChatModel("me")
    users = (UserInfo("me", "a:1", "online", 1.0), UserInfo("bob", "a:2", "away", 2.0))
    arrived, left = model.users_changed(users, 5.0)
    assert arrived == ["bob", "me"] and left == []
    arrived, left = model.users_changed(users[:1], 9.0)
    assert left == ["bob"] and model.users["bob"].status == "gone"
    assert model.users["bob"].since == 9.0


def test_causal_relation_uses_the_senders_clock() -> None:
    a = chat(1, "a", "x", server=2, seen={1: 6})
    b = chat(2, "b", "y", server=2, seen={1: 6})
    c = chat(3, "c", "z", server=2, seen={1: 6, 2: 2})
    assert causal_relation(a, b) == "||"
    assert causal_relation(a, c) == "->"
    assert causal_relation(c, b) == "<-"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hello", Plain("hello")),
        ("//slash", Plain("/slash")),
        ("/join #ops", Command("join", ("ops",))),
        ("/msg bob hi there", Command("msg", ("bob",), "hi there")),
        ("/me waves", Command("me", (), "waves")),
        ("/away gone fishing", Command("away", (), "gone fishing")),
        ("/away", Command("away", (), "")),
        ("/back", Command("back", ())),
        ("/whois @Bob", Command("whois", ("Bob",))),
        ("/search some text", Command("search", (), "some text")),
    ],
)
def test_parse(line: str, expected: object) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("/frobnicate", "unknown command /frobnicate"),
        ("/join", "usage: /join ROOM"),
        ("/join a b", "usage: /join ROOM"),
        ("/msg", "usage: /msg USER"),
        ("/away gone\u202eyawa", "away reason contains a bidi control"),
        ("/back now", "usage: /back"),
        ("/whois", "usage: /whois USER"),
        ("/join bad\u202ename", "not a room name: room name contains"),
        ("/msg #x hi", "not a user name"),
        ("   ", "nothing to send"),
    ],
)
def test_malformed_commands_explain_themselves(line: str, fragment: str) -> None:
    parsed = parse(line)
    assert isinstance(parsed, Invalid) and fragment in parsed.message


def test_completion() -> None:
    users, rooms = ["alice", "albert", "bob"], ["general", "gaming"]
    assert complete("/jo", 3, users, rooms) == ["/join"]
    assert complete("al", 2, users, rooms) == ["albert", "alice"]
    assert complete("hi #ga", 6, users, rooms) == ["#gaming"]
    assert complete("/join ge", 8, users, rooms) == ["general"]
    assert complete("/theme li", 9, users, rooms, ["light", "dark"]) == ["light"]


def test_save_setting_edits_minimally_and_atomically(tmp_path: Path) -> None:
    path = tmp_path / "tchat" / "config.toml"
    save_setting(path, "theme", "light")
    assert tomllib.loads(path.read_text())["theme"] == "light"
    path.write_text('# mine\nport = 5000\ntheme = "dark"\n\n[timing]\nheartbeat = 0.1\n')
    save_setting(path, "theme", 'we"ird\\')
    text = path.read_text()
    data = tomllib.loads(text)
    assert data["theme"] == 'we"ird\\' and data["port"] == 5000
    assert data["timing"] == {"heartbeat": 0.1} and text.startswith("# mine\nport = 5000\n")
    save_setting(path, "user", "ann")
    assert tomllib.loads(path.read_text())["user"] == "ann"
    assert "user" not in tomllib.loads(path.read_text())["timing"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(ValueError):
        save_setting(path, "bad key", "x")


def test_themes_load_from_files(tmp_path: Path) -> None:
    names = {theme.name for theme in load_themes()}
    assert {"dark", "light", "amber"} <= names
    (tmp_path / "broken.toml").write_text("name = ")
    (tmp_path / "x.toml").write_text('name = "x"\nprimary = "#112233"\n')
    themes = {t.name: t for t in load_themes(tmp_path)}
    assert "x" in themes and "broken" not in themes and "dark" in themes
    assert themes["x"].variables["sender-0"] == "#112233"
    with pytest.raises(ValueError):
        theme_from_toml({"name": "y"})


def test_timeline_times_an_election() -> None:
    timeline = ElectionTimeline()
    timeline.observe(Ready("me", 1, "h:1", Epoch(1, 1)), 100.0)
    timeline.observe(ConnectionChanged("resuming", "silent"), 200.0)
    out = timeline.observe(LeaderLearned(3, "h:3", Epoch(2, 3)), 200.25)
    assert any("election done in 250 ms" in e.text and "epoch 2:3" in e.text for e in out)
    split = timeline.users([], ["a", "b", "c"], 201.0)
    assert split and split[0].kind == "netsplit" and "a, b, c" in split[0].text


@given(st.text(alphabet="ab  cé你\t", max_size=300), st.integers(min_value=16, max_value=120))
def test_wrapped_rows_fit_and_heights_agree(plain: str, width: int) -> None:
    rows = fold(Text(plain), width)
    assert all(cell_len(row.plain) <= width for row in rows)
    assert len(rows) == 1 + len(wrap_offsets(plain, width)) or cell_len(plain) <= width
    assert "".join(row.plain.lstrip(" ") if i else row.plain for i, row in enumerate(rows)).replace(
        " ", ""
    ) == plain.replace(" ", "")
