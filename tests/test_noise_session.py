"""tchat.crypto.session: the NX/XX handshake over records, as the runtime will drive it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.crypto.noise import NoiseError, public_bytes
from tchat.crypto.records import frame
from tchat.crypto.session import (
    MAX_RESPONDER_PAYLOAD,
    PROLOGUE,
    NoiseInitiator,
    NoiseResponder,
)

CERT = b"cluster certificate of the server key"


def _handshake(
    client: NoiseInitiator, server: NoiseResponder
) -> tuple[NoiseInitiator, NoiseResponder]:
    first = server.step(client.start())
    assert first.out
    second = client.step(first.out)
    assert second.done
    if second.out:  # XX: the client's static goes in a third message
        assert not first.done
        assert server.step(second.out) == (b"", True)
    else:
        assert first.done
    return client, server


def test_nx_handshake_proves_the_server_key_and_carries_its_payload() -> None:
    key = X25519PrivateKey.generate()
    client, server = _handshake(NoiseInitiator(), NoiseResponder(key, payload=CERT))
    assert client.done and server.done
    assert client.remote_static == public_bytes(key)
    assert client.remote_payload == CERT
    assert server.remote_static is None
    assert client.handshake_hash == server.handshake_hash
    assert len(client.handshake_hash) == 32
    c_seal, c_open = client.transport()
    s_seal, s_open = server.transport()
    assert s_open.feed(c_seal.seal(b"login")) == [b"login"]
    assert c_open.feed(s_seal.seal(b"welcome")) == [b"welcome"]


def test_each_session_has_its_own_handshake_hash() -> None:
    key = X25519PrivateKey.generate()
    first, _ = _handshake(NoiseInitiator(), NoiseResponder(key, payload=CERT))
    second, _ = _handshake(NoiseInitiator(), NoiseResponder(key, payload=CERT))
    assert first.handshake_hash != second.handshake_hash  # a login signature cannot be replayed


def test_xx_handshake_authenticates_both_sides() -> None:
    server_key, peer_key = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    client, server = _handshake(
        NoiseInitiator(static_private=peer_key, payload=b"peer cert"),
        NoiseResponder(server_key, payload=CERT, mutual=True),
    )
    assert client.remote_static == public_bytes(server_key)
    assert server.remote_static == public_bytes(peer_key)
    assert client.remote_payload == CERT and server.remote_payload == b"peer cert"
    assert client.handshake_hash == server.handshake_hash


def test_byte_at_a_time_handshake() -> None:
    client = NoiseInitiator()
    server = NoiseResponder(X25519PrivateKey.generate(), payload=CERT)
    first = client.start()
    outs = [server.step(first[i : i + 1]) for i in range(len(first))]
    assert [o.done for o in outs] == [False] * (len(first) - 1) + [True]
    reply = outs[-1].out
    results = [client.step(reply[i : i + 1]) for i in range(len(reply))]
    assert results[-1].done and client.remote_payload == CERT


def test_records_behind_the_last_handshake_message_reach_the_transport() -> None:
    client = NoiseInitiator()
    server = NoiseResponder(X25519PrivateKey.generate(), payload=CERT)
    reply = server.step(client.start()).out
    s_seal, _ = server.transport()
    early = s_seal.seal(b"welcome") + s_seal.seal(b"history")
    assert client.step(reply + early[:10]).done
    _, c_open = client.transport()
    assert c_open.feed(b"") == []
    assert c_open.feed(early[10:]) == [b"welcome", b"history"]


def test_prologue_mismatch_fails_at_the_client() -> None:
    client = NoiseInitiator(prologue=PROLOGUE)
    server = NoiseResponder(X25519PrivateKey.generate(), prologue=b"tchat v0", payload=CERT)
    reply = server.step(client.start()).out
    with pytest.raises(NoiseError, match="tag"):
        client.step(reply)


def test_tampered_server_message_fails_and_stays_failed() -> None:
    client = NoiseInitiator()
    server = NoiseResponder(X25519PrivateKey.generate(), payload=CERT)
    reply = bytearray(server.step(client.start()).out)
    reply[40] ^= 0x01
    with pytest.raises(NoiseError):
        client.step(bytes(reply))
    with pytest.raises(NoiseError, match="already failed"):
        client.step(b"")


def test_wrong_order_of_handshake_messages() -> None:
    client = NoiseInitiator()
    with pytest.raises(NoiseError, match="start"):
        client.step(b"\x00\x20" + bytes(32))  # the initiator speaks first
    first = client.start()
    with pytest.raises(NoiseError, match="already called"):
        client.start()
    # The client's own first message reflected back is not a server reply.
    with pytest.raises(NoiseError):
        client.step(first)


def test_handshake_message_after_done_is_refused() -> None:
    client, server = _handshake(
        NoiseInitiator(), NoiseResponder(X25519PrivateKey.generate(), payload=CERT)
    )
    with pytest.raises(NoiseError, match="after the handshake"):
        server.step(frame(bytes(32)))
    with pytest.raises(NoiseError, match="after the handshake"):
        client.step(frame(bytes(32)))


def test_transport_only_once_and_only_after_done() -> None:
    client = NoiseInitiator()
    server = NoiseResponder(X25519PrivateKey.generate())
    with pytest.raises(NoiseError, match="before the handshake"):
        client.transport()
    with pytest.raises(NoiseError, match="not final"):
        _ = client.handshake_hash
    _handshake(client, server)
    client.transport()
    with pytest.raises(NoiseError, match="only once"):
        client.transport()


def test_cleartext_payload_in_the_first_message_is_refused() -> None:
    server = NoiseResponder(X25519PrivateKey.generate())
    e = public_bytes(X25519PrivateKey.generate())
    with pytest.raises(NoiseError, match="cleartext"):
        server.step(frame(e + b"smuggled"))


def test_payload_limits_are_checked_up_front() -> None:
    key = X25519PrivateKey.generate()
    with pytest.raises(NoiseError):
        NoiseResponder(key, payload=bytes(MAX_RESPONDER_PAYLOAD + 1))
    with pytest.raises(NoiseError):
        NoiseInitiator(payload=b"no static, no payload")
    # The largest payload still makes a legal handshake.
    client, _ = _handshake(
        NoiseInitiator(), NoiseResponder(key, payload=bytes(MAX_RESPONDER_PAYLOAD))
    )
    assert client.remote_payload is not None and len(client.remote_payload) == MAX_RESPONDER_PAYLOAD


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=300), as_server=st.booleans())
def test_hostile_handshake_bytes_raise_only_noise_error(junk: bytes, as_server: bool) -> None:
    if as_server:
        side: NoiseInitiator | NoiseResponder = NoiseResponder(X25519PrivateKey.generate())
    else:
        side = NoiseInitiator()
        side.start()
    try:
        side.step(junk)
    except NoiseError:
        return
    assert not side.done or as_server  # only a server can finish on one (forged) message
