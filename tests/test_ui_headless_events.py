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
