"""A rotation's trust rules without a network: servers take two secrets, clients follow a
vouched key and nothing else (docs/SECURITY.md, "Rotating the cluster secret")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tchat.core import codec
from tchat.core.messages import DiscoverReply, Epoch, ServerInfo
from tchat.crypto.cluster import VOUCH_DOMAIN, ClusterSecret, ServerKeys
from tchat.crypto.known_clusters import KeyChanged, KnownClusters
from tchat.runtime.datagram_auth import ClientDatagrams, DatagramRefused, ServerDatagrams
from tchat.runtime.secure import PinnedTrust, WireSecurity

OLD, NEW, ROGUE = (ClusterSecret(bytes([i]) * 32) for i in (1, 2, 3))
WALL = 1.7e9


def server(current: ClusterSecret, following: ClusterSecret | None, sid: int) -> ServerDatagrams:
    keys = ServerKeys.generate()
    security = WireSecurity.for_server(current, keys, sid, lambda: WALL, following)
    return ServerDatagrams(security, lambda: 10.0)


def pinned(tmp_path: Path, key: ClusterSecret) -> PinnedTrust:
    trust = PinnedTrust(KnownClusters.load(tmp_path / "known_clusters"), "lan", None)
    trust.check(key.public_key)  # first use: pinned
    return trust


def test_a_server_in_rotation_opens_what_either_secret_sealed() -> None:
    switched = server(NEW, OLD, 1)  # step 2: the new key current, the old one still taken
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
    heard = dgram.open(signed_reply(server(NEW, OLD, 1), 7), "10.0.0.1:1")
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
