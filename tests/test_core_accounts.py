"""Accounts in the core: a name is bound to a key, a client ID is no credential (issue 15)."""

from __future__ import annotations

from core_bus import key_for
from test_core_nodes import chats, cluster, leaders, serving

from tchat.core.client import ClientState
from tchat.core.effects import Failed
from tchat.core.messages import (
    Admit,
    Append,
    Entry,
    HistoryReply,
    HistoryRequest,
    JoinRoom,
    Logout,
    NameClaimed,
    Register,
    Rejected,
    Replay,
    SendChat,
    SessionFrame,
    Submit,
    UserOffline,
    UserOnline,
    Welcome,
)
from tchat.core.projection import client_tag
from tchat.core.vclock import EMPTY_CLOCK

STRANGER = "10.66.6.6:666"  # an address of the attacker's own


def test_a_stranger_with_alices_client_id_neither_posts_reads_nor_takes_her_session() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(alice, SendChat(None, "bob", "for bob only", False))
    bus.run_until(lambda: chats(bus, bob) == ["for bob only"], 2)
    here = leader.config.addr

    def frames_to_stranger() -> list[object]:
        return [m for _, dst, m in bus.sent if dst == STRANGER]

    # Posts as her (a PM to bob), from its own address, with her client ID.
    forged = SendChat(None, "bob", "forged", False)
    bus._post(STRANGER, here, Submit(alice.client_id, 999, forged, EMPTY_CLOCK, bus.now))
    # Reads her PMs with bob.
    bus._post(STRANGER, here, HistoryRequest(alice.client_id, 1, None, "bob", None, 50))
    # Takes her session over: her client ID, its own key, her name or another.
    for name in ("alice", "mallory"):
        takeover = Register(
            name, alice.client_id, STRANGER, EMPTY_CLOCK, True, True, 99, key_for("mallory")
        )
        bus._post(STRANGER, here, takeover)
    bus.run(0.5)

    got = frames_to_stranger()
    assert not [m for m in got if isinstance(m, HistoryReply | Welcome | Replay)]
    assert got.count(Rejected("this client ID belongs to another key's session")) == 2
    assert leader.counters["foreign-session"] == 2
    assert "forged" not in chats(bus, bob)
    # She still has her session and gets what is hers.
    bus.submit(bob, SendChat(None, "alice", "still yours", False))
    bus.run_until(lambda: "still yours" in chats(bus, alice), 2)
    assert alice.state is ClientState.SERVING


def test_a_name_whose_owner_is_offline_is_not_anyones_to_take() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(bob, SendChat(None, "alice", "history", False))
    bus.run_until(lambda: chats(bus, alice) == ["history"], 2)
    bus.submit(alice, Logout())
    bus.run_until(lambda: "alice" not in bob.users, 2)
    bus.submit(bob, SendChat(None, "alice", "while you were out", False))
    bus.run(0.3)

    impostor = bus.add_client("alice", identity=key_for("mallory"))
    bus.run_until(lambda: impostor.state is ClientState.FAILED, 2)
    reasons = [e.reason for e in bus.events[impostor.config.addr] if isinstance(e, Failed)]
    assert reasons == ["the name 'alice' belongs to another key"]
    assert chats(bus, impostor) == []
    assert not [
        m for _, dst, m in bus.sent if dst == impostor.config.addr and isinstance(m, Replay)
    ]
    # Her own key gets her in, and her mail.
    (back,) = serving(bus, "alice")
    bus.run_until(lambda: "while you were out" in chats(bus, back), 2)
    assert leader.state.claims["alice"] == key_for("alice")


def test_the_same_key_logs_in_again_at_once_and_every_terminal_gets_the_users_messages() -> None:
    """A restarted client (its old session not timed out yet) or a second terminal is
    admitted at once as another session of the user; the user stays online until its
    last session goes, and the user list shows it once."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    first, bob = serving(bus, "alice", "bob")
    (second,) = serving(bus, "alice")  # at once: no "taken", no wait for a timeout
    bus.submit(bob, SendChat(None, "alice", "to both", False))
    bus.run_until(lambda: chats(bus, first) == chats(bus, second) == ["to both"], 2)
    assert sorted(bob.users) == ["alice", "bob"]
    assert list(leader.state.users["alice"].sessions) == [first.client_id, second.client_id]

    # The first terminal dies: its session times out, alice stays online.
    bus.crash(first.config.addr)
    bus.run_until(lambda: list(leader.state.users["alice"].sessions) == [second.client_id], 5)
    assert "alice" in bob.users
    bus.submit(bob, SendChat(None, "alice", "still here", False))
    bus.run_until(lambda: "still here" in chats(bus, second), 2)
    offline = [e.body for e in leader.log.entries() if isinstance(e.body, UserOffline | UserOnline)]
    assert sum(isinstance(b, UserOffline) for b in offline) == 1  # the dead terminal's


def test_the_first_login_of_a_free_name_claims_it_once() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    serving(bus, "alice")
    serving(bus, "alice")
    claims = [e.body for e in leader.log.entries() if isinstance(e.body, NameClaimed)]
    assert claims == [NameClaimed("alice", key_for("alice"))]
    bus.run(0.3)
    assert all(s.state.claims == {"alice": key_for("alice")} for s in servers)


def test_an_operator_releases_a_name_for_another_key() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(bob, SendChat(None, "alice", "old mail", False))
    bus.run_until(lambda: chats(bus, alice) == ["old mail"], 2)
    # She lost her key (her client is gone; her session has not timed out yet).
    bus.crash(alice.config.addr)
    assert leader.leadership is not None
    bus._apply(leader.config.addr, leader.leadership.desk.release_name("alice", bus.now))
    bus.run_until(lambda: all("alice" not in s.state.claims for s in servers), 2)
    bus.run_until(lambda: "alice" not in bob.users, 2)
    newcomer = bus.add_client("alice", identity=key_for("the new alice"))
    bus.run_until(lambda: newcomer.state is ClientState.SERVING, 3)
    bus.run(0.5)
    assert chats(bus, newcomer) == []  # nothing of the old owner's
    assert leader.state.claims["alice"] == key_for("the new alice")


def test_no_frame_to_a_client_carries_a_client_id() -> None:
    """Lobby frames carried every login's client ID and room frames every sender's, and
    the ID was the key to the session: clients now see a one-way tag, and still know
    their own operations by their own."""
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("room"))
    bus.run_until(lambda: not alice.pending and not bob.pending, 2)
    bus.submit(alice, SendChat("room", None, "in the room", False))
    bus.submit(alice, SendChat(None, "bob", "in private", False))
    bus.run_until(lambda: not alice.pending and len(chats(bus, bob)) == 2, 2)
    bus.submit(bob, Logout())
    bus.run_until(lambda: "bob" not in alice.users, 2)
    (back,) = serving(bus, "bob")  # a Replay of what he missed
    bus.submit(back, JoinRoom("room"))  # a member again: history is for members only
    bus.run_until(lambda: not back.pending, 2)
    bus._post(
        back.config.addr,
        leaders(servers)[0].config.addr,
        HistoryRequest(back.client_id, 7, "room", None, None, 50),
    )
    bus.run(0.5)

    ids = {alice.client_id, bob.client_id, back.client_id}
    servers_addrs = {s.config.addr for s in servers}
    seen: list[str] = []
    for _, dst, message in bus.sent:
        if dst in servers_addrs:
            continue
        for entry in _entries(message):
            if entry.origin is not None:
                seen.append(entry.origin.client_id)
            seen.append(getattr(entry.body, "client_id", ""))
    assert seen and not ids & set(seen)
    assert client_tag(alice.client_id) in seen
    assert any(
        isinstance(m, HistoryReply) and m.entries for _, d, m in bus.sent if d == back.config.addr
    )


def _entries(message: object) -> list[Entry]:
    if isinstance(message, SessionFrame):
        return [message.entry]
    found = getattr(message, "entries", ())
    return [e for e in found if isinstance(e, Entry)]


def test_a_released_owner_online_is_told_and_does_not_take_the_name_back() -> None:
    """The owner's client was online when an operator released its name: it stops with a
    notice that says so, instead of logging in again (its key would claim the name back
    at once, which made the release useless against a squatter)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    outcome, effects = leader.release_name("alice", bus.now)
    assert outcome == "released"
    bus._apply(leader.config.addr, effects)
    bus.run_until(lambda: alice.state is ClientState.FAILED, 2)
    bus.run(0.5)
    assert "alice" not in leader.state.claims
    notices = [e for e in bus.events[alice.config.addr] if isinstance(e, Failed)]
    assert notices and "released" in notices[-1].reason
    newcomer = bus.add_client("alice", identity=key_for("the new alice"))
    bus.run_until(lambda: newcomer.state is ClientState.SERVING, 3)
    assert leader.state.claims["alice"] == key_for("the new alice")


def test_release_name_says_what_it_did() -> None:
    """The operator's command hears whether the name was released, free already, or sent to
    a server that does not lead (only the leader sequences entries)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    serving(bus, "alice")
    backup = next(s for s in servers if s is not leader)
    assert backup.release_name("alice", bus.now) == ("not-leader", [])
    assert leader.release_name("nobody", bus.now) == ("not-claimed", [])
    outcome, effects = leader.release_name("alice", bus.now)
    assert outcome == "released" and effects


def test_a_terminal_welcomed_after_another_logs_out_still_gets_what_came_meanwhile() -> None:
    """A second terminal's login is in the log, but its Welcome comes late (lost, resent):
    meanwhile bob writes to alice and her first terminal logs out. The catch-up of the
    second must not start at the first's logout cursor: the first saw that message, the
    second never did (busy simulator seed 3011 lost it so)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    first, bob = serving(bus, "alice", "bob")
    second = bus.add_client("alice")
    late = second.config.addr

    def welcome_late(src: str, dst: str, message: object) -> bool:
        return dst == late and isinstance(message, Welcome | Replay | SessionFrame)

    bus.drop = welcome_late
    bus.run_until(lambda: second.client_id in leader.state.users["alice"].sessions, 3)
    bus.submit(bob, SendChat(None, "alice", "while you logged in", False))
    bus.run_until(lambda: chats(bus, first) == ["while you logged in"], 2)
    bus.submit(first, Logout())
    bus.run_until(lambda: list(leader.state.users["alice"].sessions) == [second.client_id], 2)
    assert second.state is not ClientState.SERVING

    bus.drop = None  # the second's resent Register is answered now
    bus.run_until(lambda: second.state is ClientState.SERVING, 5)
    bus.run_until(lambda: chats(bus, second) == ["while you logged in"], 2)


def test_a_second_terminal_resending_its_register_is_welcomed_only_once_its_login_commits() -> None:
    """Bob's first terminal joins ops; then his second logs in while the backups hold
    neither entry yet, and resends its Register meanwhile. Taking that resend for a resume
    (the sequencing state already names the session) welcomed it before its login, and the
    join before it, were committed: no ops in its Welcome, and when the join committed the
    streams (whose committed view did not list the new session yet) sent it to the first
    terminal only. The second was never in ops, and missed its messages (seed 69)."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    here = leader.config.addr
    (first,) = serving(bus, "bob")
    stalled = [True]

    def stall(src: str, dst: str, message: object) -> bool:
        # The backups get no entry (heartbeats still flow: nobody times out).
        return stalled[0] and src == here and isinstance(message, Append | Admit)

    bus.drop = stall
    bus.submit(first, JoinRoom("ops"))
    bus.run_until(lambda: "ops" in leader.state.rooms_of.get("bob", ()), 1)
    second = bus.add_client("bob")
    mine = second.config.addr

    def registers() -> int:
        return sum(1 for src, _, m in bus.sent if src == mine and isinstance(m, Register))

    bus.run_until(lambda: registers() >= 2, 2)  # resent while its login is not committed
    bus.run(0.05)
    early = [m for _, dst, m in bus.sent if dst == mine and isinstance(m, Welcome)]
    assert early == [], "welcomed before its login was committed"

    stalled[0] = False
    bus.run_until(lambda: second.state is ClientState.SERVING and "ops" in second.rooms, 3)
    bus.submit(first, SendChat("ops", None, "for both terminals", False))
    # One room frame for both terminals; which of them the bus hands it to first is not
    # the point.
    bus.run_until(lambda: all("for both terminals" in chats(bus, t) for t in (first, second)), 2)
    assert chats(bus, first) == chats(bus, second) == ["for both terminals"]
