"""tchat.crypto.noise against the published cacophony test vectors (both sides, every message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tchat.crypto.noise import HandshakeState
from tchat.crypto.session import NX_PROTOCOL, XX_PROTOCOL

VECTORS_FILE = Path(__file__).parent / "data" / "noise_vectors.json"
MIN_VECTORS = 20


def _load() -> list[dict[str, Any]]:
    data = json.loads(VECTORS_FILE.read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


def _opt(vector: dict[str, Any], key: str) -> bytes | None:
    value = vector.get(key)
    return bytes.fromhex(value) if value is not None else None


def _run(vector: dict[str, Any]) -> None:
    name = vector["protocol_name"]
    init = HandshakeState(
        name,
        initiator=True,
        prologue=bytes.fromhex(vector["init_prologue"]),
        static=_opt(vector, "init_static"),
        remote_static=_opt(vector, "init_remote_static"),
        psks=[bytes.fromhex(p) for p in vector.get("init_psks", [])],
        fixed_ephemeral=_opt(vector, "init_ephemeral"),
    )
    resp = HandshakeState(
        name,
        initiator=False,
        prologue=bytes.fromhex(vector["resp_prologue"]),
        static=_opt(vector, "resp_static"),
        remote_static=_opt(vector, "resp_remote_static"),
        psks=[bytes.fromhex(p) for p in vector.get("resp_psks", [])],
        fixed_ephemeral=_opt(vector, "resp_ephemeral"),
    )
    one_way = init.protocol.pattern.one_way
    transport: tuple[Any, ...] | None = None
    for i, msg in enumerate(vector["messages"]):
        payload = bytes.fromhex(msg["payload"])
        expected = bytes.fromhex(msg["ciphertext"])
        from_init = one_way or i % 2 == 0
        if transport is None:
            writer, reader = (init, resp) if from_init else (resp, init)
            assert writer.our_turn_to_write() and not reader.our_turn_to_write()
            assert writer.write_message(payload) == expected, f"{name} message {i}"
            assert reader.read_message(expected) == payload, f"{name} message {i}"
            if init.finished:
                assert resp.finished
                assert init.handshake_hash == resp.handshake_hash
                assert init.handshake_hash == bytes.fromhex(vector["handshake_hash"])
                i_send, i_recv = init.split()
                r_send, r_recv = resp.split()
                transport = (i_send, i_recv, r_send, r_recv)
        else:
            i_send, i_recv, r_send, r_recv = transport
            send, recv = (i_send, r_recv) if from_init else (r_send, i_recv)
            assert send.encrypt_with_ad(b"", payload) == expected, f"{name} transport {i}"
            assert recv.decrypt_with_ad(b"", expected) == payload, f"{name} transport {i}"
    assert transport is not None, f"{name}: the handshake never finished"


def test_vector_file_names_its_source() -> None:
    source = json.loads(VECTORS_FILE.read_text())["source"]
    assert source["repository"] and source["path"] and len(source["commit"]) == 40


def test_every_stored_vector() -> None:
    vectors = _load()
    ran = 0
    for vector in vectors:
        _run(vector)
        ran += 1
    assert ran >= MIN_VECTORS, f"only {ran} vectors ran"
    names = {v["protocol_name"] for v in vectors}
    # The protocols tchat itself uses must be among them.
    assert NX_PROTOCOL in names
    assert XX_PROTOCOL in names


@pytest.mark.parametrize("cipher", ["ChaChaPoly", "AESGCM"])
@pytest.mark.parametrize("hash_name", ["SHA256", "SHA512", "BLAKE2s", "BLAKE2b"])
def test_each_primitive_combination_is_covered(cipher: str, hash_name: str) -> None:
    suffix = f"_25519_{cipher}_{hash_name}"
    matching = [v for v in _load() if v["protocol_name"].endswith(suffix)]
    assert len(matching) >= 15
    _run(matching[0])
