"""Account passwords in the core: the runtime verifies, the core decides (issue 15 part 1).

The core never sees a password: it takes a hash the leader's runtime made (``PasswordHashed``)
and the fact that a login's password matched it (``PasswordLogin``). A forger who only sends
bytes (a Register with a password field, a made-up hash) never adds a key to an account.
"""

from __future__ import annotations

import dataclasses

import pytest
from core_bus import Bus, key_for
from test_core_nodes import cluster, leaders, serving

from tchat.core import codec
from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import KeysListed
from tchat.core.errors import LocalProtocolError, RemoteProtocolError
from tchat.core.messages import (
    MAX_KEYS,
    Entry,
    KeyAdded,
    KeyRemoved,
    Message,
    OpError,
    PasswordHashed,
    PasswordLogin,
    PasswordSet,
    Register,
    Rejected,
    RemoveKey,
    SessionFrame,
    SetPassword,
    Submit,
)
from tchat.core.server import ServerNode
from tchat.core.vclock import EMPTY_CLOCK

PHC = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
OTHER_PHC = PHC.replace("aGFz", "b3Ro")


def log_bodies(server: ServerNode, kind: type) -> list[object]:
    return [e.body for e in server.log.entries() if isinstance(e.body, kind)]


def set_password(bus: Bus, client: ClientNode, servers: list[ServerNode], phc: str) -> None:
    """What the leader's runtime does with a SetPassword: hash it, hand the core the hash."""
    (leader,) = leaders(servers)
    cmid = bus.submit(client, SetPassword("unused: the runtime hashes it"))
    bus.run(0)  # the client's Submit is in flight; take it as the runtime would
    taken = [m for _, dst, m in bus.sent if dst == leader.config.addr and isinstance(m, Submit)]
    assert taken and taken[-1].cmid == cmid
    hashed = dataclasses.replace(taken[-1], op=PasswordHashed(phc))
    bus._apply(leader.config.addr, leader.handle(hashed, client.config.addr, bus.now))
    bus.run_until(lambda: all(s.state.passwords.get(client.config.name) == phc for s in servers), 2)


def catch_registers(bus: Bus, addr_prefix: str) -> list[Register]:
    """Hold the Registers of clients at ``addr_prefix`` (the runtime checks their password)."""
    caught: list[Register] = []

    def drop(src: str, dst: str, message: Message) -> bool:
        if src.startswith(addr_prefix) and isinstance(message, Register):
            caught.append(message)
            return True
        return False

    bus.drop = drop
    return caught


def test_an_unhashed_password_never_reaches_the_log() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    (alice,) = serving(bus, "alice")
    bus.submit(alice, SetPassword("hunter2hunter2"))
    bus.run(0.3)
    assert any(isinstance(m, OpError) for _, _, m in bus.sent)
    assert not log_bodies(leader, PasswordSet)
    assert "alice" not in leader.state.passwords


def test_a_hashed_password_is_replicated_and_no_client_sees_it() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    set_password(bus, alice, servers, PHC)
    assert all(s.state.passwords == {"alice": PHC} for s in servers)
    # The hash is the servers' business: no frame to any client carries it.
    for _, dst, message in bus.sent:
        if dst.startswith("c-"):
            assert PHC not in repr(message), f"{type(message).__name__} to {dst}"
    # A bad hash from a runtime is still refused (a PHC string, bounded, argon2id).
    for bad in ("$2b$12$bcrypt", "$argon2id$" + "x" * 300):
        bus.submit(bob, SetPassword("x" * 8))
        bus.run(0)
        submit = [m for _, _, m in bus.sent if isinstance(m, Submit)][-1]
        (leader,) = leaders(servers)
        effects = leader.handle(
            dataclasses.replace(submit, op=PasswordHashed(bad)), bob.config.addr, bus.now
        )
        assert any(getattr(e, "message", None).__class__ is OpError for e in effects)
    assert "bob" not in leaders(servers)[0].state.passwords


def test_the_runtime_only_operations_cannot_cross_the_wire() -> None:
    forged = Submit("cid", 1, PasswordHashed(PHC), EMPTY_CLOCK, 0.0)
    with pytest.raises((LocalProtocolError, RemoteProtocolError, KeyError, TypeError)):
        codec.decode(codec.encode(forged))


def test_a_forger_with_a_password_field_is_never_added_to_the_account() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    set_password(bus, alice, servers, PHC)
    (leader,) = leaders(servers)
    # A modified client sends the password field and any key; no runtime vouches for it.
    mallory = bus.add_client("alice", identity=key_for("mallory"))
    bus.run_until(lambda: mallory.state is ClientState.FAILED, 2)
    forged = Register(
        "alice", "cid-m", "c-x", None, True, True, 1, key_for("mallory"), password="guess1234"
    )
    bus._post("c-x", leader.config.addr, forged)
    bus.run(0.3)
    for server in servers:
        assert not log_bodies(server, KeyAdded)
        assert not server.state.holds_key("alice", key_for("mallory"))
    reasons = [m.reason for _, dst, m in bus.sent if isinstance(m, Rejected)]
    assert reasons and all("belongs to another key" in r for r in reasons)
    assert "--password-prompt" in reasons[0]


def test_a_verified_password_adds_the_new_machines_key_and_later_logins_use_it() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    set_password(bus, alice, servers, PHC)
    caught = catch_registers(bus, "c-alice-")
    laptop_key = key_for("alice's laptop")
    laptop = bus.add_client("alice", identity=laptop_key)
    bus.run(0.05)
    assert caught
    (leader,) = leaders(servers)
    login = PasswordLogin(caught[-1], PHC)
    bus.drop = None
    bus._apply(leader.config.addr, leader.password_login(login, bus.now))
    bus.run_until(lambda: laptop.state is ClientState.SERVING, 2)
    bus.run_until(lambda: all(s.state.holds_key("alice", laptop_key) for s in servers), 2)
    assert alice.state is ClientState.SERVING  # both machines online at once
    assert [b.identity for b in log_bodies(leader, KeyAdded)] == [laptop_key]  # type: ignore[attr-defined]
    # Next time, from the laptop, the key alone does.
    again = bus.add_client("alice", identity=laptop_key)
    bus.run_until(lambda: again.state is ClientState.SERVING, 2)
    assert len(log_bodies(leader, KeyAdded)) == 1


def test_a_password_login_is_refused_without_a_password_or_with_a_stale_hash() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    set_password(bus, alice, servers, PHC)
    (leader,) = leaders(servers)
    key = key_for("elsewhere")
    for name, phc, want in (
        ("bob", PHC, "this account has no password; copy the key or set one with /password"),
        ("alice", OTHER_PHC, "the account's password changed: try again"),
    ):
        register = Register(name, f"cid-{name}", "c-y", None, True, True, 1, key)
        effects = leader.password_login(PasswordLogin(register, phc), bus.now)
        refusals = [getattr(e, "message", None) for e in effects]
        assert any(isinstance(r, Rejected) and want in r.reason for r in refusals), refusals
    assert not any(s.state.holds_key(n, key) for s in servers for n in ("alice", "bob"))
    assert leader.counters["password-none"] == 1
    assert leader.counters["password-stale"] == 1


def test_an_account_holds_at_most_max_keys() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    set_password(bus, alice, servers, PHC)
    (leader,) = leaders(servers)
    for n in range(MAX_KEYS + 3):
        register = Register("alice", f"cid-{n}", f"c-z{n}", None, True, True, 1, key_for(f"d{n}"))
        bus._apply(leader.config.addr, leader.password_login(PasswordLogin(register, PHC), bus.now))
        bus.run(0.05)
    assert all(s.state.key_count("alice") == MAX_KEYS for s in servers)
    assert leader.counters["keys-full"] == 4
    # The fold keeps the bound too (two partitions that each added keys, merged).
    last = leader.log.entries()[-1].dot
    extra = Entry(last, EMPTY_CLOCK, 0.0, None, KeyAdded("alice", b"k" * 32))
    leader.state.apply(extra)
    assert leader.state.key_count("alice") == MAX_KEYS


def test_releasing_a_name_forgets_its_password_and_devices() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    set_password(bus, alice, servers, PHC)
    (leader,) = leaders(servers)
    register = Register("alice", "cid-l", "c-l", None, True, True, 1, key_for("laptop"))
    bus._apply(leader.config.addr, leader.password_login(PasswordLogin(register, PHC), bus.now))
    bus.run(0.1)
    bus._apply(leader.config.addr, leader.leadership.desk.release_name("alice", bus.now))  # type: ignore[union-attr]
    bus.run_until(lambda: all("alice" not in s.state.claims for s in servers), 2)
    assert all("alice" not in s.state.passwords for s in servers)
    assert all(not s.state.holds_key("alice", key_for("laptop")) for s in servers)


def test_session_frames_never_carry_account_entries() -> None:
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    set_password(bus, alice, servers, PHC)
    frames = [m for _, _, m in bus.sent if isinstance(m, SessionFrame)]
    assert not [f for f in frames if isinstance(f.entry.body, PasswordSet | KeyAdded)]


def _laptop(bus: Bus, servers: list[ServerNode], key: bytes) -> ClientNode:
    """alice's second machine, let in by a verified password (as the runtime would)."""
    caught = catch_registers(bus, "c-alice-")
    laptop = bus.add_client("alice", identity=key)
    bus.run(0.05)
    (leader,) = leaders(servers)
    bus.drop = None
    bus._apply(leader.config.addr, leader.password_login(PasswordLogin(caught[-1], PHC), bus.now))
    bus.run_until(lambda: laptop.state is ClientState.SERVING, 2)
    return laptop


def test_devices_lists_the_accounts_keys_and_a_removed_key_is_logged_out() -> None:
    bus, servers = cluster()
    (desk,) = serving(bus, "alice")
    set_password(bus, desk, servers, PHC)
    laptop_key = key_for("alice's laptop")
    laptop = _laptop(bus, servers, laptop_key)
    _, effects = laptop.request_keys(bus.now)
    bus._apply(laptop.config.addr, effects)
    bus.run(0.05)
    (listing,) = [e for e in bus.events[laptop.config.addr] if isinstance(e, KeysListed)]
    assert listing.keys == (key_for("alice"), laptop_key)
    assert listing.yours == 1
    # Its own key is not a session's to remove, nor is a key of no one's.
    bus.submit(laptop, RemoveKey(laptop_key))
    bus.submit(laptop, RemoveKey(key_for("nobody")))
    bus.run(0.3)
    refusals = [m.reason for _, dst, m in bus.sent if isinstance(m, OpError)]
    assert any("the key this session logged in with" in r for r in refusals)
    assert any("not one of this account's" in r for r in refusals)
    # The desk removes the (lost) laptop: its session ends, its key logs in no more.
    bus.submit(desk, RemoveKey(laptop_key))
    bus.run_until(lambda: all(not s.state.holds_key("alice", laptop_key) for s in servers), 2)
    bus.run_until(lambda: laptop.state is not ClientState.SERVING, 2)
    (leader,) = leaders(servers)
    assert list(leader.state.users["alice"].sessions) == [desk.client_id]
    thief = bus.add_client("alice", identity=laptop_key)
    bus.run_until(lambda: thief.state is ClientState.FAILED, 2)
    assert desk.state is ClientState.SERVING


def test_removing_the_claims_key_leaves_the_account_to_the_other() -> None:
    bus, servers = cluster()
    (desk,) = serving(bus, "alice")
    set_password(bus, desk, servers, PHC)
    laptop_key = key_for("alice's laptop")
    laptop = _laptop(bus, servers, laptop_key)
    bus.submit(laptop, RemoveKey(key_for("alice")))
    bus.run_until(lambda: all(s.state.keys_of("alice") == (laptop_key,) for s in servers), 2)
    bus.run_until(lambda: desk.state is not ClientState.SERVING, 2)
    assert laptop.state is ClientState.SERVING
    # The fold never leaves an account keyless.
    (leader,) = leaders(servers)
    last = leader.log.entries()[-1].dot
    leader.state.apply(Entry(last, EMPTY_CLOCK, 0.0, None, KeyRemoved("alice", laptop_key)))
    assert leader.state.keys_of("alice") == (laptop_key,)


def test_both_machines_of_an_account_resume_after_failover() -> None:
    """A new leader learns each session's key from the log: the laptop's resume is checked
    against the laptop's key, not the desk's (else it would be refused as another key's)."""
    bus, servers = cluster()
    (desk,) = serving(bus, "alice")
    set_password(bus, desk, servers, PHC)
    laptop = _laptop(bus, servers, key_for("alice's laptop"))
    bus.run(0.2)
    (old,) = leaders(servers)
    bus.crash(old.config.addr)
    # The laptop is slow to notice: the new leader meets its session in the log first.
    bus.paused.add(laptop.config.addr)
    rest = [s for s in servers if s is not old]
    bus.run_until(lambda: len(leaders(rest)) == 1, 5)
    (new,) = leaders(rest)
    lead = new.leadership
    assert lead is not None
    bus.run_until(lambda: laptop.client_id in lead.streams.sessions, 5)  # its placeholder
    bus.resume(laptop.config.addr)
    bus.run(3.0)  # the resumes
    assert desk.state is ClientState.SERVING
    assert laptop.state is ClientState.SERVING
    assert sorted(new.state.users["alice"].sessions) == sorted([desk.client_id, laptop.client_id])
    refused = [m for _, dst, m in bus.sent if dst == laptop.config.addr and isinstance(m, Rejected)]
    assert not refused, refused
