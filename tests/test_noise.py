"""tchat.crypto.noise: the state machines' error paths, limits and hostile-input fuzzing."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tchat.crypto.noise import (
    MAX_MESSAGE,
    MAX_NONCE,
    CipherState,
    HandshakeState,
    NoiseError,
    public_bytes,
)
from tchat.crypto.patterns import parse_pattern, parse_protocol_name

NX = "Noise_NX_25519_ChaChaPoly_SHA256"


def _pair(
    name: str = NX, prologue: bytes = b"p"
) -> tuple[HandshakeState, HandshakeState, X25519PrivateKey]:
    server_key = X25519PrivateKey.generate()
    init = HandshakeState(name, initiator=True, prologue=prologue)
    resp = HandshakeState(name, initiator=False, prologue=prologue, static=server_key)
    return init, resp, server_key


def test_noise_error_is_a_value_error() -> None:
    assert issubclass(NoiseError, ValueError)


@pytest.mark.parametrize(
    "name",
    [
        "Noise_NX_448_ChaChaPoly_SHA256",
        "Noise_NX_25519_Salsa_SHA256",
        "Noise_NX_25519_ChaChaPoly_MD5",
        "Noise_QQ_25519_ChaChaPoly_SHA256",
        "Noise_NXpsk9_25519_ChaChaPoly_SHA256",
        "Noise_NNpsk0+psk0_25519_ChaChaPoly_SHA256",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256",
        "Noise_NX_25519_ChaChaPoly",
        "Nois_NX_25519_ChaChaPoly_SHA256",
    ],
)
def test_unsupported_protocol_names_are_refused(name: str) -> None:
    with pytest.raises(NoiseError):
        HandshakeState(name, initiator=True)


def test_protocol_name_parts_and_psk_placement() -> None:
    parsed = parse_protocol_name("Noise_XXpsk3_25519_AESGCM_BLAKE2s")
    assert (parsed.dh, parsed.cipher, parsed.hash) == ("25519", "AESGCM", "BLAKE2s")
    assert parsed.pattern.messages[-1] == ("s", "se", "psk")
    assert parse_pattern("NNpsk0+psk2").messages == (("psk", "e"), ("e", "ee", "psk"))


def test_missing_keys_and_bad_psks_are_refused() -> None:
    with pytest.raises(NoiseError, match="remote static"):
        HandshakeState("Noise_NK_25519_ChaChaPoly_SHA256", initiator=True)
    with pytest.raises(NoiseError, match="psk"):
        HandshakeState("Noise_NNpsk0_25519_ChaChaPoly_SHA256", initiator=True, psks=[b"x"])
    with pytest.raises(NoiseError):
        HandshakeState(NX, initiator=False, static=b"short")


def test_cipher_state_refuses_the_reserved_nonce() -> None:
    cipher = CipherState("ChaChaPoly", bytes(32))
    cipher.n = MAX_NONCE - 1
    cipher.encrypt_with_ad(b"", b"last one")
    assert cipher.n == MAX_NONCE
    with pytest.raises(NoiseError, match="nonce"):
        cipher.encrypt_with_ad(b"", b"one too many")
    receiver = CipherState("ChaChaPoly", bytes(32))
    receiver.n = MAX_NONCE
    with pytest.raises(NoiseError, match="nonce"):
        receiver.decrypt_with_ad(b"", bytes(32))


def test_failed_decrypt_leaves_the_nonce_and_a_replay_fails() -> None:
    send = CipherState("ChaChaPoly", bytes(range(32)))
    recv = CipherState("ChaChaPoly", bytes(range(32)))
    first = send.encrypt_with_ad(b"", b"hello")
    assert recv.decrypt_with_ad(b"", first) == b"hello"
    with pytest.raises(NoiseError, match="tag"):
        recv.decrypt_with_ad(b"", first)  # replay: the nonce moved on
    assert recv.n == 1
    with pytest.raises(NoiseError, match="shorter than its tag"):
        recv.decrypt_with_ad(b"", b"tiny")


def test_aesgcm_cipher_round_trips() -> None:
    send = CipherState("AESGCM", bytes(32))
    recv = CipherState("AESGCM", bytes(32))
    assert recv.decrypt_with_ad(b"ad", send.encrypt_with_ad(b"ad", b"x")) == b"x"


def test_handshake_round_trip_and_state() -> None:
    init, resp, server_key = _pair()
    assert init.our_turn_to_write() and not resp.our_turn_to_write()
    assert resp.read_message(init.write_message()) == b""
    assert init.read_message(resp.write_message(b"cert")) == b"cert"
    assert init.finished and resp.finished
    assert init.remote_static == public_bytes(server_key)
    assert init.handshake_hash == resp.handshake_hash
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"up")) == b"up"
    assert i_recv.decrypt_with_ad(b"", r_send.encrypt_with_ad(b"", b"down")) == b"down"


def test_out_of_turn_and_after_finish_are_refused() -> None:
    init, resp, _ = _pair()
    with pytest.raises(NoiseError, match="out of turn"):
        resp.write_message()
    with pytest.raises(NoiseError, match="out of turn"):
        init.read_message(bytes(48))
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    with pytest.raises(NoiseError, match="after the handshake"):
        init.write_message()
    with pytest.raises(NoiseError, match="after the handshake"):
        resp.read_message(bytes(64))


def test_split_before_finish_is_refused() -> None:
    init, _, _ = _pair()
    with pytest.raises(NoiseError, match="not finished"):
        init.split()


def test_a_failed_read_poisons_the_handshake() -> None:
    init, resp, _ = _pair()
    resp.read_message(init.write_message())
    message = bytearray(resp.write_message())
    message[-1] ^= 1
    with pytest.raises(NoiseError, match="tag"):
        init.read_message(bytes(message))
    with pytest.raises(NoiseError, match="already failed"):
        init.read_message(bytes(message))


def test_prologue_mismatch_fails_the_handshake() -> None:
    server_key = X25519PrivateKey.generate()
    init = HandshakeState(NX, initiator=True, prologue=b"tchat v1")
    resp = HandshakeState(NX, initiator=False, prologue=b"tchat v0", static=server_key)
    resp.read_message(init.write_message())
    with pytest.raises(NoiseError, match="tag"):
        init.read_message(resp.write_message())


def test_message_size_limit_on_both_sides() -> None:
    init, resp, _ = _pair("Noise_NN_25519_ChaChaPoly_SHA256")
    with pytest.raises(NoiseError, match="exceeds"):
        init.write_message(bytes(MAX_MESSAGE))
    init2, resp2, _ = _pair("Noise_NN_25519_ChaChaPoly_SHA256")
    with pytest.raises(NoiseError, match="exceeds"):
        resp2.read_message(bytes(MAX_MESSAGE + 1))
    # The largest legal first message still passes.
    assert len(resp.read_message(init2.write_message(bytes(MAX_MESSAGE - 32)))) == MAX_MESSAGE - 32


def test_low_order_ephemeral_key_is_a_noise_error() -> None:
    _, resp, _ = _pair()
    resp.read_message(bytes(32))  # the all-zero point: accepted as bytes...
    with pytest.raises(NoiseError, match="public key"):
        resp.write_message()  # ...but the DH with it is refused, as NoiseError


def test_short_messages_are_refused() -> None:
    _, resp, _ = _pair()
    with pytest.raises(NoiseError, match="too short"):
        resp.read_message(bytes(31))
    init, resp, _ = _pair()
    resp.read_message(init.write_message())
    with pytest.raises(NoiseError, match="too short"):
        init.read_message(resp.write_message()[:60])


_HOSTILE = st.one_of(
    st.binary(max_size=200),
    st.binary(min_size=60, max_size=140),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from([NX, "Noise_XX_25519_ChaChaPoly_BLAKE2s", "Noise_IK_25519_AESGCM_SHA256"]),
    data=st.data(),
)
def test_hostile_handshake_messages_raise_only_noise_error(name: str, data: st.DataObject) -> None:
    server_key = X25519PrivateKey.generate()
    client_key = X25519PrivateKey.generate()
    needs_rs = "_IK_" in name
    init = HandshakeState(
        name,
        initiator=True,
        static=client_key if "_NX_" not in name else None,
        remote_static=public_bytes(server_key) if needs_rs else None,
    )
    resp = HandshakeState(name, initiator=False, static=server_key)
    first = init.write_message()
    mode = data.draw(st.sampled_from(["random", "truncate", "flip", "extend"]))
    if mode == "random":
        hostile = data.draw(_HOSTILE)
    elif mode == "truncate":
        hostile = first[: data.draw(st.integers(0, len(first) - 1))]
    elif mode == "flip":
        bit = data.draw(st.integers(0, len(first) * 8 - 1))
        hostile = bytearray(first)
        hostile[bit // 8] ^= 1 << (bit % 8)
        hostile = bytes(hostile)
    else:
        hostile = first + data.draw(st.binary(min_size=1, max_size=40))
    try:
        resp.read_message(hostile)
        reply = resp.write_message(b"payload")
    except NoiseError:
        return
    # The responder took it; the initiator must then refuse or accept the reply cleanly.
    tampered = bytearray(reply)
    tampered[data.draw(st.integers(0, len(reply) - 1))] ^= 0x20
    for message in (bytes(tampered), reply[: data.draw(st.integers(0, len(reply)))]):
        probe = HandshakeState(
            name,
            initiator=True,
            static=client_key if "_NX_" not in name else None,
            remote_static=public_bytes(server_key) if needs_rs else None,
        )
        probe.write_message()
        with pytest.raises(NoiseError):
            probe.read_message(message)
