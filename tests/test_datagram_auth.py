"""datagram_auth without a network: what a server and a client take by UDP, and what it costs."""

from __future__ import annotations

import os

import pytest

from tchat.core import codec
from tchat.core.messages import (
    Discover,
    DiscoverReply,
    Epoch,
    NewLeader,
    ServerInfo,
    StatusRequest,
)
from tchat.crypto.cluster import ClusterSecret, ServerKeys
from tchat.runtime.datagram_auth import (
    NONCE_LIFETIME,
    SEALED_PER_HOST,
    ClientDatagrams,
    DatagramRefused,
    ServerDatagrams,
)
from tchat.runtime.options import NetOptions
from tchat.runtime.secure import ClusterTrust, WireSecurity
from tchat.runtime.transport import Transport


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def server(secret: ClusterSecret, server_id: int, clock: Clock) -> ServerDatagrams:
    security = WireSecurity.for_server(secret, ServerKeys.generate(), server_id, lambda: 1.7e9)
    return ServerDatagrams(security, clock)


def client(key: ClusterSecret | None, clock: Clock, expected: str | None = None) -> ClientDatagrams:
    trust = ClusterTrust(key.public_key if key is not None else None)
    trust.expected = expected  # type: ignore[attr-defined]
    dgram = ClientDatagrams(trust, clock)
    dgram.wall = lambda: 1.7e9
    return dgram


def reply(server_id: int, nonce: int) -> DiscoverReply:
    addr = f"127.0.0.1:{4000 + server_id}"
    servers = (ServerInfo(server_id, addr),)
    return DiscoverReply(server_id, addr, 1, addr, Epoch(1, 1), servers, nonce)


def refusal(dgram: ServerDatagrams | ClientDatagrams, data: bytes, peer: str = "10.0.0.9:1") -> str:
    with pytest.raises(DatagramRefused) as caught:
        heard = dgram.open(data, peer)
        dgram.check(codec.decode(heard.frame, None), heard)
    return caught.value.reason


def test_servers_of_one_cluster_open_each_others_sealed_datagrams_once() -> None:
    secret, clock = ClusterSecret.generate(), Clock()
    one, two = server(secret, 1, clock), server(secret, 2, clock)
    probe = Discover("127.0.0.1:4001", "server", 7, 1)
    data = one.seal(codec.encode(probe))
    heard = two.open(data, "127.0.0.1:4001")
    assert heard.server_id == 1 and codec.decode(heard.frame, None) == probe
    two.check(probe, heard)
    assert two.is_member("127.0.0.1:4001")
    assert refusal(two, data) == "replayed"
    # Sealed by 1, claiming to be 3: the body does not choose its sender.
    liar = one.seal(codec.encode(Discover("127.0.0.1:4003", "server", 8, 3)))
    assert refusal(two, liar) == "sender-mismatch"
    # Another cluster's server, and a flipped byte, do not open.
    stranger = server(ClusterSecret.generate(), 1, clock)
    assert refusal(two, stranger.seal(codec.encode(probe))) == "bad-signature"
    flipped = bytearray(one.seal(codec.encode(probe)))
    flipped[-1] ^= 1
    assert refusal(two, bytes(flipped)) == "bad-signature"


def test_a_server_takes_only_a_clients_requests_plain_and_no_signed_datagram() -> None:
    secret, clock = ClusterSecret.generate(), Clock()
    two = server(secret, 2, clock)
    for request in (Discover("1.2.3.4:5", "client", 1, 0), StatusRequest("1.2.3.4:5", 1)):
        heard = two.open(codec.encode(request), "1.2.3.4:5")
        two.check(request, heard)
    forged = NewLeader(666, "1.2.3.4:5", Epoch(2**40, 666), ())
    assert refusal(two, codec.encode(forged)) == "unsealed"
    assert refusal(two, codec.encode(Discover("1.2.3.4:5", "server", 1, 666))) == "unsealed"
    one = server(secret, 1, clock)
    assert refusal(two, one.sign(codec.encode(reply(1, 5)))) == "udp-refused"


def test_a_flood_of_junk_sealed_datagrams_is_cut_before_any_crypto() -> None:
    secret, clock = ClusterSecret.generate(), Clock()
    two = server(secret, 2, clock)
    reasons: dict[str, int] = {}
    for _ in range(3000):  # one host, no time passing: its burst, then nothing
        junk = b"\xd1\x01" + os.urandom(60)
        reason = refusal(two, junk)
        reasons[reason] = reasons.get(reason, 0) + 1
    burst = int(SEALED_PER_HOST[1])
    assert sum(two.openers[0].rejected.values()) == burst  # AEAD attempts: the burst only
    assert reasons["sealed-limited"] == 3000 - burst
    assert len(two.openers[0]) == 0  # nothing unverified is kept
    # A member on another host is not starved by it.
    one = server(secret, 1, clock)
    two.open(one.seal(codec.encode(Discover("10.0.0.1:4001", "server", 1, 1))), "10.0.0.1:4001")


def test_a_client_takes_signed_fresh_replies_from_its_cluster_only() -> None:
    secret, clock = ClusterSecret.generate(), Clock()
    one = server(secret, 1, clock)
    pinned = client(secret, clock)
    pinned.sent(Discover("127.0.0.1:5000", "client", 42, 0))
    good = one.sign(codec.encode(reply(1, 42)))
    heard = pinned.open(good, "127.0.0.1:4001")
    pinned.check(codec.decode(heard.frame, None), heard)
    assert heard.cluster == secret.public_key
    assert refusal(pinned, one.sign(codec.encode(reply(1, 43)))) == "stale-reply"
    assert refusal(pinned, codec.encode(reply(1, 42))) == "unsigned"
    flipped = bytearray(good)
    flipped[-5] ^= 1
    assert refusal(pinned, bytes(flipped)) == "bad-signature"
    rogue = server(ClusterSecret.generate(), 1, clock)
    assert refusal(pinned, rogue.sign(codec.encode(reply(1, 42)))) == "unknown-cluster"
    # Certified as 1, claiming to be 2.
    assert refusal(pinned, one.sign(codec.encode(reply(2, 42)))) == "sender-mismatch"
    clock.now += NONCE_LIFETIME + 1
    assert refusal(pinned, good) == "stale-reply"


def test_an_unpinned_client_verifies_under_the_key_offered_and_cluster_limits_it() -> None:
    secret, other, clock = ClusterSecret.generate(), ClusterSecret.generate(), Clock()
    anyone = client(None, clock)
    anyone.sent(StatusRequest("127.0.0.1:5000", 9))
    for key in (secret, other):
        heard = anyone.open(server(key, 1, clock).sign(codec.encode(reply(1, 9))), "p:1")
        assert heard.cluster == key.public_key
    named = client(None, clock, expected=secret.public_key.fingerprint)
    assert refusal(named, server(other, 1, clock).sign(codec.encode(reply(1, 9)))) == (
        "unknown-cluster"
    )


def test_a_new_leader_below_the_followed_epoch_is_a_replay() -> None:
    secret, clock = ClusterSecret.generate(), Clock()
    one = server(secret, 1, clock)
    pinned = client(secret, clock)
    pinned.current_epoch = lambda: Epoch(5, 2)
    old = one.sign(codec.encode(NewLeader(1, "127.0.0.1:4001", Epoch(4, 1), ())))
    assert refusal(pinned, old) == "stale-epoch"
    same = server(secret, 2, clock).sign(
        codec.encode(NewLeader(2, "127.0.0.1:4002", Epoch(5, 2), ()))
    )
    assert refusal(pinned, same) == "stale-epoch"  # the current leader's, replayed
    new = NewLeader(1, "127.0.0.1:4001", Epoch(6, 1), ())
    heard = pinned.open(one.sign(codec.encode(new)), "127.0.0.1:4001")
    pinned.check(new, heard)


async def test_a_datagram_too_big_for_its_envelope_is_counted_not_sent() -> None:
    secret = ClusterSecret.generate()
    security = WireSecurity.for_server(secret, ServerKeys.generate(), 1, lambda: 1.7e9)
    transport = Transport(NetOptions(host="127.0.0.1"), lambda _m, _s: None, security=security)
    servers = tuple(ServerInfo(i, f"127.0.0.1:{10000 + i}" + "x" * 30) for i in range(1, 1400))
    big = DiscoverReply(1, "127.0.0.1:4001", 1, "127.0.0.1:4001", Epoch(1, 1), servers, 5)
    assert len(codec.encode(big)) > 65507 - 50
    assert transport.encode_datagram(big, "127.0.0.1:5000") == b""  # signed: too big
    assert transport.encode_datagram(Discover("127.0.0.1:4001", "server", 1, 1)) != b""
    assert transport.drops.counts["too-big-to-send"] == 1
