"""One order for everyone: own messages wait below the committed order, then take their place.

The chat model keeps each conversation in delivery (committed) order, which every member of a
room shares; an own message not yet committed waits at the bottom, marked, and moves to where
the committed stream puts it. These tests feed models the same stream a real client gets
(``Sent`` and ``ChatDelivered`` in either order, ``OpFailed``) without a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from textual.pilot import Pilot

from tchat.core.effects import OpFailed
from tchat.core.messages import Chat, Dot, Entry, Origin, SendChat
from tchat.core.vclock import VectorClock
from tchat.ui.chat_model import ChatLine, ChatModel
from tchat.ui.outbox import last_committed
from tchat.ui.screens.client import ClientScreen
from tchat.ui.screenshots import Demo, demo_app, stage
from tchat.ui.widgets.composer import Composer

ROOM = "#general"


def chat(counter: int, sender: str, text: str, cmid: int | None = None) -> Entry:
    origin = Origin(f"client-{sender}", cmid) if cmid is not None else None
    body = Chat(sender, "general", None, text, False, VectorClock({}))
    return Entry(Dot(1, counter), VectorClock({1: counter}), 1000.0 + counter, origin, body)


def shown(model: ChatModel, key: str = ROOM) -> list[str]:
    """The conversation as the user reads it: sender, text and a mark for unsettled lines."""
    out = []
    for line in model.conversation(key).lines:
        if line.notice:
            continue
        mark = " (sending)" if line.pending else " (failed)" if line.failed else ""
        out.append(f"{line.sender}: {line.text}{mark}")
    return out


def test_a_pending_message_waits_below_and_lands_where_it_was_committed() -> None:
    """bob typed during an outage; carol's message was committed first: carol, then bob."""
    model = ChatModel("bob")
    model.activate(ROOM)
    model.add_pending(ROOM, 1, "bob's line", False, 5.0)
    assert shown(model) == ["bob: bob's line (sending)"]
    model.deliver(chat(1, "carol", "carol's line"))
    # Committed messages go above what is still pending, never below it.
    assert shown(model) == ["carol: carol's line", "bob: bob's line (sending)"]
    model.mark_sent(1, "1.2")
    model.deliver(chat(2, "bob", "bob's line", cmid=1))
    assert shown(model) == ["carol: carol's line", "bob: bob's line"]


def test_an_ack_before_earlier_deliveries_still_ends_in_delivery_order() -> None:
    """The Ack (TCP) can beat the multicast copies of entries committed before ours."""
    model = ChatModel("bob")
    model.activate(ROOM)
    model.add_pending(ROOM, 1, "mine", False, 5.0)
    model.mark_sent(1, "1.3")
    model.deliver(chat(1, "carol", "one"))
    model.deliver(chat(2, "dave", "two"))
    model.deliver(chat(3, "bob", "mine", cmid=1))
    model.deliver(chat(4, "carol", "after"))
    assert shown(model) == ["carol: one", "dave: two", "bob: mine", "carol: after"]


def test_several_pending_messages_keep_their_send_order_and_no_duplicate() -> None:
    model = ChatModel("bob")
    model.activate(ROOM)
    for cmid, text in ((1, "a"), (2, "b"), (3, "c")):
        model.add_pending(ROOM, cmid, text, False, 5.0)
    model.deliver(chat(1, "carol", "x"))
    assert shown(model) == ["carol: x", "bob: a (sending)", "bob: b (sending)", "bob: c (sending)"]
    model.deliver(chat(2, "bob", "a", cmid=1))
    model.deliver(chat(3, "carol", "y"))
    assert shown(model) == [
        "carol: x",
        "bob: a",
        "carol: y",
        "bob: b (sending)",
        "bob: c (sending)",
    ]
    model.deliver(chat(4, "bob", "b", cmid=2))
    model.mark_sent(2, "1.4")  # the Ack after the copy: nothing moves, nothing doubles
    model.deliver(chat(5, "bob", "c", cmid=3))
    model.mark_sent(3, "1.5")
    assert shown(model) == ["carol: x", "bob: a", "carol: y", "bob: b", "bob: c"]


def test_a_private_conversation_keeps_the_committed_order_too() -> None:
    model = ChatModel("bob")
    model.activate("@carol")
    model.add_pending("@carol", 1, "are you there?", False, 5.0)
    theirs = Chat("carol", None, "bob", "sent before yours", False, VectorClock({}))
    model.deliver(Entry(Dot(1, 1), VectorClock({1: 1}), 1001.0, None, theirs))
    mine = Chat("bob", None, "carol", "are you there?", False, VectorClock({}))
    model.deliver(Entry(Dot(1, 2), VectorClock({1: 2}), 1002.0, Origin("c", 1), mine))
    assert shown(model, "@carol") == ["carol: sent before yours", "bob: are you there?"]


def test_notices_go_above_pending_lines() -> None:
    """An outage line or a join notice is history: it does not split the pending area."""
    model = ChatModel("bob")
    model.activate(ROOM)
    model.add_pending(ROOM, 1, "a", False, 5.0)
    model.notice("connection lost", 6.0, ROOM)
    lines = model.conversation(ROOM).lines
    assert [line.notice for line in lines] == [True, False]


def test_a_refused_message_stays_marked_failed_with_its_reason_until_dismissed() -> None:
    model = ChatModel("bob")
    model.activate(ROOM)
    model.add_pending(ROOM, 1, "too late", False, 5.0)
    model.add_pending(ROOM, 2, "fine", False, 5.0)
    model.mark_failed(1, "not a member of #general", 6.0)
    model.deliver(chat(1, "carol", "x"))
    model.deliver(chat(2, "bob", "fine", cmid=2))
    assert shown(model) == ["carol: x", "bob: fine", "bob: too late (failed)"]
    failed = [line for line in model.conversation(ROOM).lines if line.failed]
    assert failed[0].reason == "not a member of #general"
    model.deliver(chat(3, "carol", "y"))  # later history still goes above it
    assert shown(model)[-1] == "bob: too late (failed)"
    taken, change = model.take_failed(ROOM)
    assert [line.draft for line in taken] == ["too late"] and change.spliced == 3
    assert shown(model) == ["carol: x", "bob: fine", "carol: y"]
    assert model.take_failed(ROOM)[0] == []


def test_the_read_marker_stays_on_the_last_committed_line() -> None:
    """Leaving with a pending line below: what arrives later shows as new, above it."""
    model = ChatModel("bob")
    model.activate(ROOM)
    model.deliver(chat(1, "carol", "read"))
    model.add_pending(ROOM, 1, "mine", False, 5.0)
    model.activate("@carol")
    model.deliver(chat(2, "dave", "unread"))
    model.deliver(chat(3, "bob", "mine", cmid=1))
    conv = model.activate(ROOM)
    mark = model.read_mark(conv)
    assert mark is not None and conv.lines[mark].text == "read"
    assert [line.text for line in conv.lines[mark + 1 :]] == ["unread", "mine"]


def test_clear_keeps_what_is_not_yet_sent() -> None:
    model = ChatModel("bob")
    model.activate(ROOM)
    model.deliver(chat(1, "carol", "x"))
    model.add_pending(ROOM, 1, "a", False, 5.0)
    model.clear(ROOM)
    assert shown(model) == ["bob: a (sending)"]
    model.deliver(chat(2, "bob", "a", cmid=1))
    assert shown(model) == ["bob: a"]


def test_a_mention_while_own_lines_are_pending_is_the_last_committed_line() -> None:
    model = ChatModel("bob")
    model.activate(ROOM)
    model.add_pending(ROOM, 1, "a", False, 5.0)
    change = model.deliver(chat(1, "carol", "hey bob"))
    conv = model.conversation(ROOM)
    line = last_committed(conv)
    assert change.new and line is not None and line.mention and line.text == "hey bob"


# -- two clients, one stream --------------------------------------------------------------
SENDS = {"alice": ["a1", "a2", "a3"], "bob": ["b1", "b2"], "carol": ["c1"]}


@st.composite
def outages(draw: st.DrawFn) -> tuple[list[tuple[str, int]], list[int], list[int]]:
    """A committed order of everyone's messages (each sender's own in send order), and for
    alice and bob where, in that stream, each of their Acks lands (before or after the copy)."""
    queues = {name: list(range(len(texts))) for name, texts in SENDS.items()}
    order: list[tuple[str, int]] = []
    while any(queues.values()):
        name = draw(st.sampled_from(sorted(n for n, q in queues.items() if q)))
        order.append((name, queues[name].pop(0)))
    acks_a = [draw(st.integers(0, len(order))) for _ in SENDS["alice"]]
    acks_b = [draw(st.integers(0, len(order))) for _ in SENDS["bob"]]
    return order, acks_a, acks_b


def replay(me: str, order: list[tuple[str, int]], acks: list[int]) -> ChatModel:
    """``me`` typed all its lines while disconnected, then the committed stream arrives."""
    model = ChatModel(me)
    model.activate(ROOM)
    for index, text in enumerate(SENDS[me]):
        model.add_pending(ROOM, index + 1, text, False, 1.0)
    entries = [chat(n + 1, name, SENDS[name][i], cmid=i + 1) for n, (name, i) in enumerate(order)]
    position = {(name, i): n for n, (name, i) in enumerate(order)}
    for step in range(len(order) + 1):
        for index, at in enumerate(acks):
            if at == step:
                model.mark_sent(index + 1, entries[position[(me, index)]].id)
        if step < len(order):
            model.deliver(entries[step])
    return model


@settings(max_examples=150, deadline=None)
@given(outages())
def test_two_clients_fed_one_stream_show_one_order(
    plan: tuple[list[tuple[str, int]], list[int], list[int]],
) -> None:
    order, acks_a, acks_b = plan
    committed = [f"{name}: {SENDS[name][i]}" for name, i in order]
    alice = replay("alice", order, acks_a)
    bob = replay("bob", order, acks_b)
    assert shown(alice) == committed
    assert shown(bob) == committed


def test_chatline_has_a_draft_and_a_reason() -> None:
    """What /resend sends again is the text as typed, not its sanitised display form."""
    model = ChatModel("bob")
    model.add_pending(ROOM, 1, "a\x07b", False, 1.0)
    line: ChatLine = model.conversation(ROOM).lines[-1]
    assert line.draft == "a\x07b" and line.text != line.draft


# -- on screen ----------------------------------------------------------------------------
SIZE = (100, 30)


def screen_text(pilot: Pilot[int]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.01)


async def in_general(pilot: Pilot[int], demo: Demo) -> ClientScreen:
    """Serving, in #general with carol, nothing acknowledged unless the test says so."""
    await until(pilot, lambda: isinstance(pilot.app.screen, ClientScreen) and bool(demo.services))
    demo.service.serve(users=("carol",))
    demo.service.enter("general", ("you", "carol"))
    await pilot.pause()
    screen: ClientScreen = pilot.app.screen  # type: ignore[assignment]
    screen.open_conversation(ROOM)
    screen.query_one(Composer).cursor_blink = False
    demo.service.auto_ack = False
    await pilot.pause()
    return screen


async def type_line(pilot: Pilot[int], text: str) -> None:
    composer = pilot.app.screen.query_one(Composer)
    composer.value = text
    composer.cursor_position = len(text)
    await pilot.press("enter")
    await pilot.pause()


async def test_pending_mark_then_the_committed_place_on_screen() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "typed during the outage")
        cmid = demo.service.submitted[-1][0]
        await until(pilot, lambda: "<you> typed during the outage  (sending)" in screen_text(pilot))
        demo.service.say("carol", "committed first", room="general")
        await until(pilot, lambda: "committed first" in screen_text(pilot))
        text = screen_text(pilot)
        # carol's committed line shows above the pending one, which stays at the bottom.
        assert text.index("committed first") < text.index("typed during the outage")
        demo.service.acknowledge(cmid)  # Sent, then its committed copy
        await until(pilot, lambda: "(sending)" not in screen_text(pilot))
        text = screen_text(pilot)
        assert text.count("typed during the outage") == 1
        assert text.index("committed first") < text.index("<you> typed during the outage")
        general = screen.model.conversation(ROOM)
        assert [line.text for line in general.lines if not line.notice] == [
            "committed first",
            "typed during the outage",
        ]


async def test_a_refused_message_stays_until_resent_or_dismissed() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        await type_line(pilot, "refused once")
        cmid = demo.service.submitted[-1][0]
        demo.service.emit(OpFailed(cmid, "slow down"))
        await until(pilot, lambda: "(not sent: slow down;" in screen_text(pilot))
        assert "✗ <you> refused once" in screen_text(pilot)
        demo.service.say("carol", "later line", room="general")
        await until(pilot, lambda: "later line" in screen_text(pilot))
        text = screen_text(pilot)
        assert text.index("later line") < text.index("refused once")  # still at the bottom
        await type_line(pilot, "/resend")
        again, op = demo.service.submitted[-1]
        assert again != cmid and op == SendChat("general", None, "refused once", False)
        await until(pilot, lambda: "<you> refused once  (sending)" in screen_text(pilot))
        demo.service.acknowledge(again)
        await until(pilot, lambda: "(sending)" not in screen_text(pilot))
        assert screen_text(pilot).count("refused once") == 1
        await type_line(pilot, "refused for good")
        demo.service.emit(OpFailed(demo.service.submitted[-1][0], "no"))
        await until(pilot, lambda: "(not sent: no;" in screen_text(pilot))
        await type_line(pilot, "/dismiss")
        await until(pilot, lambda: "refused for good" not in screen_text(pilot))
        assert not any(line.failed for line in screen.model.conversation(ROOM).lines)


def test_pending_and_failed_marks_snapshot(snap_compare: object) -> None:
    """Committed lines above; below them one line sending and one refused, with its reason."""
    app, demo = demo_app()

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, "chat")
        demo.service.auto_ack = False
        await type_line(pilot, "sent while the leader is away")
        await type_line(pilot, "this one the leader refused")
        refused = demo.service.submitted[-1][0]
        demo.service.node.pending.pop(refused)  # as the core does on an OpError
        demo.service.emit(OpFailed(refused, "not a member of #general"))
        demo.service.say("bob", "committed meanwhile: above your pending lines", room="general")
        await pilot.pause()
        pilot.app.screen.query_one(Composer).cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]


async def test_a_reader_scrolled_up_keeps_the_screen_while_lines_move_below() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        for i in range(60):
            demo.service.say("carol", f"backlog {i}", room="general")
        await type_line(pilot, "mine, pending")
        cmid = demo.service.submitted[-1][0]
        await pilot.press("pageup")
        await pilot.pause()
        view = screen.messages
        before = (view.scroll_y, screen_text(pilot))
        assert "backlog 59" not in before[1]
        demo.service.say("carol", "committed while scrolled up", room="general")
        demo.service.acknowledge(cmid)
        await until(pilot, lambda: "(1 new, End)" in screen_text(pilot))
        assert view.scroll_y == before[0]
        lines = [line.text for line in screen.model.conversation(ROOM).lines[-2:]]
        assert lines == ["committed while scrolled up", "mine, pending"]
        await pilot.press("end")
        await until(pilot, lambda: "<you> mine, pending" in screen_text(pilot))
        text = screen_text(pilot)
        assert text.index("committed while scrolled up") < text.index("<you> mine, pending")


async def test_a_mention_rings_while_our_own_line_is_pending() -> None:
    """The bell looks at the newest committed line, not at our pending one below it."""
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        rings: list[int] = []
        app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
        await type_line(pilot, "still on its way")
        demo.service.say("carol", "you: look at this", room="general")
        await until(pilot, lambda: "look at this" in screen_text(pilot))
        assert rings == [1]
        assert screen.model.conversation(ROOM).lines[-1].pending


async def test_the_read_marker_stays_on_its_line_while_lines_move_below() -> None:
    app, demo = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await in_general(pilot, demo)
        general = screen.model.conversation(ROOM)
        demo.service.say("carol", "read before leaving", room="general")
        await until(pilot, lambda: general.lines[-1].text == "read before leaving")
        screen.open_conversation("@carol")
        demo.service.say("carol", "unread while away", room="general")
        await until(pilot, lambda: general.unread == 1)
        screen.open_conversation(ROOM)
        await pilot.pause()
        view = screen.messages
        lines = screen.model.conversation(ROOM).lines
        assert view.read_mark is not None and lines[view.read_mark].text == "read before leaving"
        await type_line(pilot, "mine, pending")
        cmid = demo.service.submitted[-1][0]
        demo.service.say("carol", "committed before mine", room="general")
        demo.service.acknowledge(cmid)
        await until(pilot, lambda: "(sending)" not in screen_text(pilot))
        assert lines[view.read_mark].text == "read before leaving"
        assert [line.text for line in lines[view.read_mark + 1 :] if not line.notice] == [
            "unread while away",
            "committed before mine",
            "mine, pending",
        ]
        assert "─ new ─" in screen_text(pilot)
