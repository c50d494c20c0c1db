"""Multi-line text in the view's layout, and the model's read marks and activity (no terminal)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.text import Text

from tchat.ui.chat_model import ChatModel
from tchat.ui.widgets.message_view import fold_lines, row_count
from tests.test_ui_model import chat


@given(st.text(alphabet="ab \n你é", max_size=300), st.integers(min_value=12, max_value=100))
def test_multiline_heights_agree_with_the_rows_drawn(plain: str, width: int) -> None:
    """The virtualised view sizes each message by row_count: it must match what is drawn."""
    rows = fold_lines(Text(plain), width)
    assert len(rows) == row_count(plain, width)
    assert all(cell_len(row.plain) <= width for row in rows)
    assert all("\n" not in row.plain for row in rows)


def test_read_mark_and_activity_order() -> None:
    model = ChatModel("you")
    model.deliver(chat(1, "alice", "before"))
    model.activate("#general")
    model.activate("*status")  # leave #general having seen "before"
    assert model.read_mark(model.conversation("#general")) is None  # nothing new yet
    model.deliver(chat(2, "alice", "after"))
    model.deliver(chat(3, "bob", "psst", room=None, to="you"))
    general = model.conversation("#general")
    assert general.lines[model.read_mark(general) or 0].text == "before"
    assert [(n, c.key) for n, c in model.activity()] == [(2, "#general"), (3, "@bob")]
    assert model.next_active() == "@bob"  # a private message counts as a mention
    model.deliver(chat(4, "alice", "hey you"))
    assert model.next_active() == "#general"  # mentions first, in window order


def test_highlight_words_count_as_mentions() -> None:
    model = ChatModel("you")
    assert model.highlight("deploy")
    assert not model.highlight("DEPLOY")
    model.deliver(chat(1, "alice", "the Deploy failed"))
    model.deliver(chat(2, "alice", "redeployment"))  # whole words only
    lines = model.conversation("#general").lines
    assert [line.mention for line in lines] == [True, False]
