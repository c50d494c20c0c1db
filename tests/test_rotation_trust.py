"""A rotation's trust rules without a network: servers take two secrets, clients follow a
vouched key and nothing else (docs/SECURITY.md, "Rotating the cluster secret")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tchat.core import codec
from tchat.core.messages import DiscoverReply, Epoch, ServerInfo
from tchat.crypto.cluster import VOUCH_DOMAIN, ClusterSecret, ServerKeys
from tchat.crypto.known_clusters import KeyChanged, KnownClusters
from tchat.runtime.cluster_choice import ChoiceState, ClusterChoice
from tchat.runtime.connection import DropCounters
from tchat.runtime.datagram_auth import ClientDatagrams, DatagramRefused, ServerDatagrams
from tchat.runtime.secure import PinnedTrust, WireSecurity
from tchat.runtime.trust import rotations

OLD, NEW, ROGUE = (ClusterSecret(bytes([i]) * 32) for i in (1, 2, 3))
WALL = 1.7e9


def server(
    current: ClusterSecret, other: ClusterSecret | None, sid: int, previous: bool = False
) -> ServerDatagrams:
    keys = ServerKeys.generate()
    security = WireSecurity.for_server(current, keys, sid, lambda: WALL, other, previous)
    return ServerDatagrams(security, lambda: 10.0)


def pinned(tmp_path: Path, key: ClusterSecret) -> PinnedTrust:
    trust = PinnedTrust(KnownClusters.load(tmp_path / "known_clusters"), "lan", None)
    trust.check(key.public_key)  # first use: pinned
    return trust


def test_a_server_in_rotation_opens_what_either_secret_sealed() -> None:
    # step 2: the new key current, the old one still taken
    switched = server(NEW, OLD, 1, previous=True)
    behind = server(OLD, NEW, 2)  # step 1: the old key current, the new one taken
    alone = server(OLD, None, 3)  # never given the new key
    frame = b"\x08\x00hello"
    assert behind.open(switched.seal(frame), "10.0.0.1:1").frame == frame
    assert switched.open(behind.seal(frame), "10.0.0.2:1").frame == frame
    with pytest.raises(DatagramRefused) as refused:
        alone.open(switched.seal(frame), "10.0.0.1:1")
    assert refused.value.reason == "bad-signature"
    # A switched peer's datagrams go straight to the opener that verified its first one.
    for _ in range(5):
        behind.open(switched.seal(frame), "10.0.0.1:1")
    assert sum(behind.openers[0].rejected.values()) == 1  # the first one's failed attempt
    sealed = behind.seal(frame)
    switched.open(sealed, "10.0.0.2:1")
    with pytest.raises(DatagramRefused) as replayed:  # each opener's window still holds
        switched.open(sealed, "10.0.0.2:1")
    assert replayed.value.reason == "replayed"


def signed_reply(dgram: ServerDatagrams, nonce: int) -> bytes:
    addr = "127.0.0.1:4001"
    reply = DiscoverReply(1, addr, 1, addr, Epoch(1, 1), (ServerInfo(1, addr),), nonce)
    return dgram.sign(codec.encode(reply, None))


def client(trust: PinnedTrust) -> ClientDatagrams:
    dgram = ClientDatagrams(trust, lambda: 10.0)
    dgram.wall = lambda: WALL
    return dgram


def test_a_pinned_client_follows_a_vouched_key_and_keeps_the_old_for_this_run(
    tmp_path: Path,
) -> None:
    trust = pinned(tmp_path, OLD)
    dgram = client(trust)
    heard = dgram.open(signed_reply(server(NEW, OLD, 1, previous=True), 7), "10.0.0.1:1")
    assert heard.cluster == NEW.public_key
    assert trust.key == NEW.public_key
    pin = KnownClusters.load(tmp_path / "known_clusters").lookup("lan")
    assert pin is not None and pin.key == NEW.public_key
    # A server not switched yet still answers this client.
    assert dgram.open(signed_reply(server(OLD, NEW, 2), 7), "10.0.0.2:1").cluster is not None
    trust.check(OLD.public_key)


def test_no_vouch_a_forged_vouch_or_one_by_a_stranger_moves_no_pin(tmp_path: Path) -> None:
    trust = pinned(tmp_path, OLD)
    dgram = client(trust)
    for data in (
        signed_reply(server(ROGUE, None, 1), 7),  # no vouch: another cluster
        signed_reply(server(ROGUE, NEW, 1), 7),  # vouched for by a key we never trusted
    ):
        with pytest.raises(DatagramRefused) as refused:
            dgram.open(data, "10.0.0.1:1")
        assert refused.value.reason == "unknown-cluster"
    forged = bytearray(signed_reply(server(ROGUE, OLD, 1), 7))
    forged[1:33] = OLD.public_key.raw  # claims our pin vouched, with the rogue's signature
    forged[33:97] = ROGUE.signing_key.sign(VOUCH_DOMAIN + ROGUE.public_key.raw)
    with pytest.raises(DatagramRefused):
        dgram.open(bytes(forged), "10.0.0.1:1")
    assert trust.key == OLD.public_key
    with pytest.raises(KeyChanged):
        trust.check(ROGUE.public_key)
    assert not trust.take_vouched(ROGUE.public_key, NEW.vouch_for(ROGUE.public_key))


def test_a_step_one_server_never_moves_a_pin_back_to_the_old_key(tmp_path: Path) -> None:
    """A client that pinned the new key (it followed the rotation, or first used the cluster
    after a switched server answered) then hears a server not switched yet (step 1: the old
    key current, the new one next): it takes that server for this run, and its pin stays on
    the new key. Moving the pin back would stop it with a key-changed message once the old
    key is dropped (step 3)."""
    trust = pinned(tmp_path, NEW)
    dgram = client(trust)
    heard = dgram.open(signed_reply(server(OLD, NEW, 2), 7), "10.0.0.2:1")
    assert heard.cluster == OLD.public_key
    assert trust.key == NEW.public_key
    pin = KnownClusters.load(tmp_path / "known_clusters").lookup("lan")
    assert pin is not None and pin.key == NEW.public_key
    trust.check(OLD.public_key)  # taken for this run
    # Step 3 (the new key alone, no vouch) is still this client's cluster.
    assert dgram.open(signed_reply(server(NEW, None, 3), 7), "10.0.0.3:1").cluster is not None


def test_two_keys_are_one_cluster_only_when_one_vouches_for_the_other() -> None:
    switched = OLD.vouch_for(NEW.public_key)  # step 2: the old key names the new its successor
    behind = NEW.vouch_for(OLD.public_key, forward=False)  # step 1: the new names the old
    keys = {k.public_key.fingerprint: k.public_key for k in (OLD, NEW, ROGUE)}
    old, new, rogue = (k.public_key.fingerprint for k in (OLD, NEW, ROGUE))
    assert rotations(keys, {new: switched}) == {old: new, new: new}
    assert rotations(keys, {old: behind}) == {old: new, new: new}
    assert rotations(keys, {new: switched, old: behind}) == {old: new, new: new}
    # A rogue that copies a real vouch into its own datagrams joins nobody's group.
    assert rotations(keys, {rogue: switched}) == {}
    assert rotations(keys, {rogue: ROGUE.vouch_for(ROGUE.public_key)}) == {}


async def test_an_unpinned_client_pins_the_new_key_of_a_rotation(tmp_path: Path) -> None:
    trust = PinnedTrust(KnownClusters.load(tmp_path / "known_clusters"), "lan", None)
    dgram = client(trust)
    decided = asyncio.Event()
    delivered: list[str] = []
    choice = ClusterChoice(
        trust, lambda m, peer: delivered.append(peer), lambda e: None, DropCounters(), 0.01
    )
    choice.pinned = lambda event: decided.set()
    for peer, sender in (
        ("10.0.0.1:1", server(NEW, OLD, 1, previous=True)),  # switched (step 2)
        ("10.0.0.2:1", server(OLD, NEW, 2)),  # not yet (step 1)
    ):
        data = signed_reply(sender, 7)
        heard = dgram.open(data, peer)
        assert not choice.offer(codec.decode(heard.frame, None), peer, heard)
    await asyncio.wait_for(decided.wait(), 5)
    assert choice.state is ChoiceState.DECIDED and delivered == ["10.0.0.1:1"]
    assert trust.key == NEW.public_key
    trust.check(OLD.public_key)  # the servers not switched yet, for this run
    pin = KnownClusters.load(tmp_path / "known_clusters").lookup("lan")
    assert pin is not None and pin.key == NEW.public_key


async def test_an_unrelated_second_key_still_makes_the_user_choose(tmp_path: Path) -> None:
    trust = PinnedTrust(KnownClusters.load(tmp_path / "known_clusters"), "lan", None)
    dgram = client(trust)
    asked = asyncio.Event()
    choice = ClusterChoice(trust, lambda m, p: None, lambda e: asked.set(), DropCounters(), 0.01)
    for peer, sender in (
        ("10.0.0.1:1", server(NEW, OLD, 1, previous=True)),
        ("10.0.0.3:1", server(ROGUE, None, 3)),  # another cluster: no vouch links it
    ):
        heard = dgram.open(signed_reply(sender, 7), peer)
        choice.offer(codec.decode(heard.frame, None), peer, heard)
    await asyncio.wait_for(asked.wait(), 5)
    assert choice.state is ChoiceState.ASKING and trust.key is None
