"""The leader (authoritative) and the client (early) apply the name rules (issue 15, part 7)."""

from __future__ import annotations

from core_bus import Bus

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import Failed, Renamed
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    Dot,
    Entry,
    JoinRoom,
    OpError,
    Register,
    Rejected,
    RoomJoined,
    UserOnline,
    Welcome,
)
from tchat.core.server import ServerNode, ServerRole
from tchat.core.vclock import VectorClock


def settled(servers: list[ServerNode]) -> bool:
    leading = [s for s in servers if s.role is ServerRole.LEADER]
    return len(leading) == 1 and all(
        s.role is ServerRole.BACKUP and s.epoch == leading[0].epoch
        for s in servers
        if s is not leading[0]
    )


def cluster() -> tuple[Bus, ServerNode]:
    bus = Bus(seed=29)
    servers = [bus.add_server(i) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    (leader,) = [s for s in servers if s.role is ServerRole.LEADER]
    return bus, leader


def serving(bus: Bus, *names: str) -> list[ClientNode]:
    clients = [bus.add_client(name) for name in names]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 5)
    return clients


def register_by_hand(bus: Bus, leader: ServerNode, names: list[str]) -> dict[str, object]:
    """What the leader answers a modified client that sends each name as it is."""
    addrs = {f"c-raw-{i}": name for i, name in enumerate(names)}
    for addr, name in addrs.items():
        bus._post(addr, leader.config.addr, Register(name, addr, addr, None, False, True, 1))
    bus.run(1.0)
    answers: dict[str, object] = {}
    for src, dst, message in bus.sent:
        if src == leader.config.addr and dst in addrs and isinstance(message, Rejected | Welcome):
            answers.setdefault(addrs[dst], message)
    return answers


def test_the_leader_refuses_deceptive_names_whatever_the_client_checked() -> None:
    bus, leader = cluster()
    serving(bus, "alice")
    attacks = {
        "\u0430lice": "Cyrillic",  # а
        "al1ce": "too similar to 'alice'",
        "ALICE": "too similar to 'alice'",
        "\u0430\u04cf\u0456\u0441\u0435": "too similar to 'alice'",  # аӏісе, all Cyrillic
        "bob\u3164": "U+3164 HANGUL FILLER",
        "\u2800": "U+2800 BRAILLE PATTERN BLANK",
        "al\u200bice": "U+200B ZERO WIDTH SPACE",
        "\u0301bob": "U+0301 COMBINING ACUTE ACCENT",
        "bob\u202eevil": "U+202E RIGHT-TO-LEFT OVERRIDE",
        "\uff42\uff4f\uff42": "'bob'",  # ｂｏｂ: not the normal form, which is named
    }
    answers = register_by_hand(bus, leader, [*attacks, "carol"])
    for name, words in attacks.items():
        answer = answers.get(name)
        assert isinstance(answer, Rejected), (name, answer)
        assert words in answer.reason, (name, answer.reason)
    assert isinstance(answers.get("carol"), Welcome)  # an honest name still gets in
    online = {e.body.name for e in leader.log.entries() if isinstance(e.body, UserOnline)}
    assert online == {"alice", "carol"}


def test_an_offline_account_keeps_its_look_alikes_away_and_can_come_back() -> None:
    bus, leader = cluster()
    (alice,) = serving(bus, "alice")
    bus.crash(alice.config.addr)
    bus.run_until(lambda: "alice" not in leader.state.users, 10)
    answers = register_by_hand(bus, leader, ["Alice"])
    assert isinstance(answers["Alice"], Rejected)
    assert "too similar to 'alice'" in answers["Alice"].reason
    (again,) = serving(bus, "alice")  # the account itself is no look-alike of itself
    assert again.name == "alice"


def test_the_client_normalises_its_name_and_says_so() -> None:
    bus, _leader = cluster()
    (alice,) = serving(bus, "\uff41\uff4c\uff49\uff43\uff45")  # ａｌｉｃｅ
    assert alice.name == "alice"
    renamed = [e for e in bus.events[alice.config.addr] if isinstance(e, Renamed)]
    assert renamed and renamed[0].new == "alice" and "NFKC" in renamed[0].reason


def test_the_client_refuses_a_deceptive_name_before_it_sends_anything() -> None:
    bus, _leader = cluster()
    mallory = bus.add_client("\u0430lice")
    assert mallory.state is ClientState.FAILED
    (failed,) = [e for e in bus.events[mallory.config.addr] if isinstance(e, Failed)]
    assert "Cyrillic" in failed.reason and "U+0430" in failed.reason
    assert not [m for src, _d, m in bus.sent if src == mallory.config.addr]


def test_room_names_follow_the_same_rules_when_a_room_is_created() -> None:
    bus, leader = cluster()
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, JoinRoom("dev"))
    bus.run_until(lambda: "dev" in leader.state.rooms, 2)
    attacks = {
        "DEV": "too similar to 'dev'",
        "d\u0435v": "Cyrillic",  # е
        "\u0434\u0435\u0432\u3164": "U+3164",
        "de\u200bv": "U+200B",
        "\uff44\uff45\uff56": "'dev'",  # ｄｅｖ, not in normal form
    }
    cmids = {bus.submit(bob, JoinRoom(room)): room for room in attacks}
    ok = bus.submit(bob, JoinRoom("dev"))  # the room itself, as it is
    bus.run(1.0)
    errors = {
        m.cmid: m.reason
        for src, dst, m in bus.sent
        if src == leader.config.addr and dst == bob.config.addr and isinstance(m, OpError)
    }
    for cmid, room in cmids.items():
        assert cmid in errors, room
        assert attacks[room] in errors[cmid], (room, errors[cmid])
    assert ok not in errors
    assert set(leader.state.rooms) == {"dev"}
    assert leader.state.is_member("dev", "bob")


def test_an_old_log_with_names_now_refused_still_folds() -> None:
    state = ClusterState("239.0.0.0", 16, 5000)
    bodies = [
        UserOnline("\u0430lice", "a:1", "c1"),
        UserOnline("alice", "a:2", "c2"),
        UserOnline("bob\u3164", "a:3", "c3"),
        RoomJoined("r\u200bm", "alice"),
        RoomJoined("RM", "bob\u3164"),
    ]
    for i, body in enumerate(bodies, 1):
        entry = Entry(Dot(1, i), VectorClock({1: i}), float(i), None, body)
        assert state.apply(entry), body
    assert set(state.users) == {"\u0430lice", "alice", "bob\u3164"}
    assert set(state.rooms) == {"r\u200bm", "RM"}
    # They are known: their look-alikes are refused from now on, they themselves are not.
    assert state.user_look_alikes.similar("\u0430lice") is None
    assert state.user_look_alikes.similar("Alice") == "\u0430lice"
    assert state.room_look_alikes.similar("rm") == "RM"


def test_two_look_alikes_in_flight_at_once_cannot_both_get_in() -> None:
    bus, leader = cluster()
    # Both reach the leader before either login is committed: the first one sequenced
    # is in the fold the second is judged against.
    # Which of them the bus hands the leader first is the network's choice: whichever it
    # is gets in, and the other is refused for being too similar to it.
    answers = register_by_hand(bus, leader, ["carol", "Carol"])
    welcomed = [name for name, answer in answers.items() if isinstance(answer, Welcome)]
    assert len(welcomed) == 1, answers
    (other,) = {"carol", "Carol"} - set(welcomed)
    refusal = answers[other]
    assert isinstance(refusal, Rejected), answers
    assert f"too similar to {welcomed[0]!r}" in refusal.reason


def test_a_fold_snapshot_keeps_the_look_alikes() -> None:
    import copy

    state = ClusterState("239.0.0.0", 16, 5000)
    state.apply(Entry(Dot(1, 1), VectorClock({1: 1}), 1.0, None, UserOnline("alice", "a", "c")))
    state.apply(Entry(Dot(1, 2), VectorClock({1: 2}), 2.0, None, RoomJoined("dev", "alice")))
    copied = copy.deepcopy(state)
    assert copied.user_look_alikes.similar("al1ce") == "alice"
    assert copied.room_look_alikes.similar("DEV") == "dev"
    copied.user_look_alikes.add("bob")
    assert state.user_look_alikes.similar("B0B") is None  # a copy, not a shared index
