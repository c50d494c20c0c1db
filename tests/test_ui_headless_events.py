"""The headless client's acks: `sent` only for messages, `ok` with op and arguments otherwise."""

from __future__ import annotations

import io
import json
from typing import Any

from tchat.core.effects import OpFailed, Sent
from tchat.core.messages import JoinRoom, LeaveRoom, Operation, SendChat, SetAway
from tchat.runtime.headless import HeadlessClient, operation_json
from tchat.runtime.options import NetOptions


def client_with(ops: dict[int, Operation]) -> tuple[HeadlessClient, io.StringIO]:
    out = io.StringIO()
    client = HeadlessClient(NetOptions(host="127.0.0.1"), "alice", out)
    for cmid, op in ops.items():
        # What run() records on submit, without a network.
        if not isinstance(op, SendChat):
            client.operations[cmid] = operation_json(op)
    return client, out


def events(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_acks_of_joins_leaves_and_away_are_ok_not_sent() -> None:
    ops: dict[int, Operation] = {
        1: JoinRoom("lobby"),
        2: SendChat("lobby", None, "hi", False),
        3: LeaveRoom("lobby"),
        4: SetAway(True),
        5: JoinRoom("nope"),
    }
    client, out = client_with(ops)
    for cmid in (1, 2, 3, 4):
        client._on_event(Sent(cmid, f"1:{cmid}"))
    client._on_event(OpFailed(5, "no such room"))
    got = [{k: v for k, v in e.items() if k != "ts"} for e in events(out)]
    assert got == [
        {"event": "ok", "op": "join", "room": "lobby", "cmid": 1},
        {"event": "sent", "id": "1:2", "cmid": 2},
        {"event": "ok", "op": "leave", "room": "lobby", "cmid": 3},
        {"event": "ok", "op": "away", "reason": "", "cmid": 4},
        {"event": "error", "message": "no such room", "cmid": 5},
    ]
    assert client.operations == {}  # nothing kept once answered


def test_topic_commands_and_events() -> None:
    from tchat.core.effects import TopicChanged
    from tchat.core.messages import SetTopic
    from tchat.runtime.headless import parse

    rooms = {"dev": object(), "ops": object()}
    assert parse("/topic ship it", "dev", rooms).op == SetTopic("dev", "ship it")
    assert parse("/topic #ops on call: bob", "dev", rooms).op == SetTopic("ops", "on call: bob")
    # "#x" names a room only when we are in it: otherwise it is the topic's first word.
    assert parse("/topic #1 priority", "dev", rooms).op == SetTopic("dev", "#1 priority")
    assert parse("/topic -clear", "dev", rooms).op == SetTopic("dev", "")
    assert parse("/topic -", "dev", rooms).op == SetTopic("dev", "")
    assert parse("/topic cafe\u0301", "dev", rooms).op == SetTopic("dev", "caf\u00e9")
    shown = parse("/topic", "dev", rooms)
    assert shown.op is None and (shown.action, shown.arg) == ("topic", "dev")
    assert "usage" in parse("/topic hello", None, {}).error
    client, out = client_with({7: SetTopic("dev", "ship it")})
    client._on_event(Sent(7, "1.7"))
    client._on_event(TopicChanged("dev", "ship it", "alice", 12.5))
    got = events(out)
    assert got[0] == {
        "event": "ok",
        "op": "topic",
        "room": "dev",
        "topic": "ship it",
        "cmid": 7,
        "ts": got[0]["ts"],
    }
    assert got[1] == {
        "event": "topic",
        "room": "dev",
        "topic": "ship it",
        "by": "alice",
        "ts": 12.5,
    }
