"""A session renamed after a name clash must end up online under its new name."""

from __future__ import annotations

import pytest
from core_bus import Bus, key_for
from test_core_nodes import leaders, settled

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import Send
from tchat.core.messages import PasswordHashed, PasswordLogin, Register, Rejected, SendChat
from tchat.core.server import ServerNode

PHC = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"


def online_as_itself(leader: ServerNode, client: ClientNode) -> bool:
    user = leader.state.users.get(client.name)
    return user is not None and client.client_id in user.sessions


def grow_the_majority(bus: Bus, old: ServerNode) -> ClientNode:
    """Carol, cut off from the minority's leader ``old``, writes six notes on the majority:
    its log grows first, so a claim made there sorts after one made on the minority."""
    carol = bus.add_client("carol")
    bus.cut.add(frozenset((carol.config.addr, old.config.addr)))
    bus.run_until(lambda: carol.state is ClientState.SERVING, 3)
    for i in range(6):
        bus.submit(carol, SendChat(None, "carol", f"note {i}", False))
    bus.run_until(lambda: not carol.pending, 3)
    return carol


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_client_renamed_on_the_other_side_before_the_merge_shows_online(seed: int) -> None:
    """Seed 1508767615 of the simulator: a client logged in as ``alice`` on a minority leader
    moves to the majority, where another key holds ``alice``, and renames to ``alice_2``.
    The merge orders its first login before the other key's (the earlier claim keeps the
    name), so the merged log has its session online as ``alice`` when ``alice_2`` logs in:
    that login must first leave ``alice``, or the fold refuses it as one session under two
    names and the client, though welcomed, is in nobody's user list."""
    bus = Bus(seed=seed)
    servers = [bus.add_server(i) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    (old,) = leaders(servers)
    minority = [old]
    majority = [s for s in servers if s is not old]
    bus.split([s.config.addr for s in minority], [s.config.addr for s in majority])
    bus.run_until(lambda: settled(majority), 3)
    (new,) = leaders(majority)
    # The majority's log grows first, so its claim of "alice" sorts after the minority's.
    carol = grow_the_majority(bus, old)
    left = bus.add_client("alice")
    right = bus.add_client("alice", identity=key_for("another alice"))
    bus.split([left.config.addr], [s.config.addr for s in majority])
    bus.split([right.config.addr], [s.config.addr for s in minority])
    bus.run_until(lambda: left.state is right.state is ClientState.SERVING, 3)
    assert old.state.users["alice"].sessions.keys() == {left.client_id}
    minority_clock = old.log.clock
    # The minority leader goes out of the left client's reach: it moves to the majority,
    # where "alice" is the other key's, and renames.
    for s in majority:
        bus.cut.discard(frozenset((left.config.addr, s.config.addr)))
    bus.cut.add(frozenset((left.config.addr, old.config.addr)))
    bus.run_until(
        lambda: (
            left.name == "alice_2"
            and left.state is ClientState.SERVING
            and online_as_itself(new, left)
        ),
        5,
    )
    bus.cut.clear()
    bus.run_until(
        lambda: (
            settled(servers)
            and all(minority_clock <= s.log.clock for s in servers)
            and len({s.log.clock for s in servers}) == 1
        ),
        5,
    )

    def converged() -> bool:
        lead = leaders(servers)
        return (
            len(lead) == 1
            and all(c.state is ClientState.SERVING for c in (left, right, carol))
            and all(online_as_itself(lead[0], c) for c in (left, right, carol))
        )

    bus.run_until(converged, 10)
    (final,) = leaders(servers)
    assert len({left.name, right.name, carol.name}) == 3
    # Every replica folds the same user list.
    assert {tuple(sorted(s.state.users)) for s in servers} == {tuple(sorted(final.state.users))}


def test_another_key_of_the_account_cannot_rename_a_session_away() -> None:
    """A re-registration under another name logs the session out of its old one: only the
    key that session proved may do that, not another device of the same account."""
    bus = Bus(seed=1)
    servers = [bus.add_server(i) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    alice = bus.add_client("alice")
    bus.run_until(lambda: alice.state is ClientState.SERVING, 3)
    (leader,) = leaders(servers)
    # What the runtime makes of a SetPassword (it hashes it) is what the core sees.
    bus.submit(alice, PasswordHashed(PHC))
    bus.run_until(lambda: all(s.state.passwords.get("alice") == PHC for s in servers), 2)
    laptop = key_for("laptop")
    login = Register("alice", "cid-laptop", "c-laptop", None, True, True, 1, laptop)
    bus._apply(leader.config.addr, leader.password_login(PasswordLogin(login, PHC), bus.now))
    bus.run_until(lambda: all(s.state.holds_key("alice", laptop) for s in servers), 2)
    # As after a leader change: the leader knows alice's session from the log only.
    assert leader.leadership is not None
    leader.leadership.streams.detach(alice.client_id)
    forged = Register("alice_2", alice.client_id, "c-evil", None, True, True, 9, laptop)
    replies = leader.handle(forged, "c-evil", bus.now)
    assert [type(r.message) for r in replies if isinstance(r, Send)] == [Rejected]
    assert leader.counters["foreign-client-id"] == 1
    assert alice.client_id in leader.state.users["alice"].sessions
    assert "alice_2" not in leader.state.claims
