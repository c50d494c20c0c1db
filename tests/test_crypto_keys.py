"""The cluster secret and where it is found, derivations, server certificates, signed datagrams."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.crypto import certificate as cert_mod
from tchat.crypto.certificate import (
    CERT_SIZE,
    MAX_SIGNED_DATAGRAM,
    SIGNED_OVERHEAD,
    CertificateCache,
    issue_certificate,
    sign_datagram,
    verify_certificate,
    verify_datagram,
    verify_server_static,
)
from tchat.crypto.cluster import (
    ClusterPublicKey,
    ClusterSecret,
    ServerKeys,
    load_cluster_secret,
    load_or_create_server_keys,
)
from tchat.crypto.errors import CryptoError, Reason
from tchat.crypto.keyfiles import KeyFileError, write_secret_file

NOW = 1_800_000_000.0
DAY = 86400.0
# Module-level for hypothesis tests, which cannot take function-scoped fixtures.
_KEYS = ServerKeys.generate()


@pytest.fixture(scope="module")
def secret() -> ClusterSecret:
    return ClusterSecret(bytes(range(32)))


@pytest.fixture(scope="module")
def keys() -> ServerKeys:
    return ServerKeys.generate()


# --- the secret: where it comes from ----------------------------------------------------


def test_a_key_file_is_preferred_over_env_and_env_over_data_dir(tmp_path: Path) -> None:
    """The same order as options.py (the command line over the environment): one rule."""
    env_secret, file_secret = ClusterSecret.generate(), ClusterSecret.generate()
    key_file = tmp_path / "given.key"
    write_secret_file(key_file, file_secret.export_line().encode() + b"\n")
    env = {"TCHAT_CLUSTER_KEY": env_secret.export_line()}
    assert load_cluster_secret(env, key_file, tmp_path, create=True) == file_secret
    got = load_cluster_secret(env, None, tmp_path, create=True)
    assert got == env_secret
    assert not got.created
    assert not (tmp_path / "cluster.key").exists()


def test_server_creates_secret_in_data_dir_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = load_cluster_secret({}, None, data, create=True)
    assert made.created
    path = data / "cluster.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    again = load_cluster_secret({}, None, data, create=True)
    assert again == made and not again.created
    assert path.read_text().strip() == made.export_line()


def test_no_secret_without_create_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="TCHAT_CLUSTER_KEY"):
        load_cluster_secret({}, None, None, create=True)
    with pytest.raises(KeyFileError) as info:
        load_cluster_secret({}, None, tmp_path, create=False)
    assert info.value.reason is Reason.MISSING
    # A given key file that does not exist is never replaced by a fresh secret.
    with pytest.raises(KeyFileError):
        load_cluster_secret({}, tmp_path / "absent.key", tmp_path, create=True)
    assert not (tmp_path / "cluster.key").exists()


def test_wrong_mode_secret_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "given.key"
    write_secret_file(key_file, ClusterSecret.generate().export_line().encode())
    os.chmod(key_file, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_cluster_secret({}, key_file, None, create=False)


@pytest.mark.parametrize("value", ["", "  ", "short", "A" * 44, "zz" * 32, "QUJD"])
def test_bad_env_secret_is_refused(value: str) -> None:
    with pytest.raises(CryptoError):
        load_cluster_secret({"TCHAT_CLUSTER_KEY": value}, None, None, create=False)


def test_secret_line_forms_are_accepted(secret: ClusterSecret) -> None:
    line = secret.export_line()
    for form in (line, line.rstrip("="), secret.raw.hex(), secret.raw.hex().upper(), f" {line}\n"):
        got = load_cluster_secret({"TCHAT_CLUSTER_KEY": form}, None, None, create=False)
        assert got.raw == secret.raw


def test_secret_never_shows_in_repr(secret: ClusterSecret) -> None:
    assert secret.export_line() not in repr(secret)
    assert secret.raw.hex() not in repr(secret)


# --- derivations --------------------------------------------------------------------------


def test_derivations_are_distinct_stable_and_secret_specific(secret: ClusterSecret) -> None:
    other = ClusterSecret(bytes(32))
    derived = [secret.datagram_root, secret.admin_mac_key, secret.public_key.raw]
    assert len(set(derived)) == 3
    assert ClusterSecret(secret.raw).public_key == secret.public_key
    assert other.public_key != secret.public_key
    assert other.datagram_root != secret.datagram_root
    assert secret.public_key.fingerprint.startswith("SHA256:")
    assert len(secret.public_key.fingerprint) == 7 + 43


def test_admin_mac(secret: ClusterSecret) -> None:
    tag = secret.admin_mac(b"release-name alice 17")
    assert secret.check_admin_mac(b"release-name alice 17", tag)
    assert not secret.check_admin_mac(b"release-name alice 18", tag)
    assert not ClusterSecret(bytes(32)).check_admin_mac(b"release-name alice 17", tag)


def test_server_keys_created_once(tmp_path: Path) -> None:
    made = load_or_create_server_keys(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "server.key").st_mode) == 0o600
    again = load_or_create_server_keys(tmp_path)
    assert again.ed25519_public == made.ed25519_public
    assert again.x25519_public == made.x25519_public


# --- certificates -------------------------------------------------------------------------


def test_certificate_round_trip(secret: ClusterSecret, keys: ServerKeys) -> None:
    blob = issue_certificate(secret, 7, keys, NOW, DAY)
    assert len(blob) == CERT_SIZE
    cert = verify_certificate(secret.public_key, blob, NOW + 10)
    assert (cert.server_id, cert.issued_at, cert.not_after) == (7, int(NOW), int(NOW + DAY))
    assert cert.x25519_public == keys.x25519_public
    assert cert.ed25519_public == keys.ed25519_public
    assert cert.blob == blob
    assert not cert.needs_renewal(NOW + DAY / 4)
    assert cert.needs_renewal(NOW + DAY / 2)


def test_certificate_of_another_cluster_is_refused(keys: ServerKeys) -> None:
    theirs = issue_certificate(ClusterSecret.generate(), 7, keys, NOW)
    with pytest.raises(CryptoError) as info:
        verify_certificate(ClusterSecret.generate().public_key, theirs, NOW)
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_expired_and_future_certificates_are_refused(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    blob = issue_certificate(secret, 7, keys, NOW, DAY)
    verify_certificate(secret.public_key, blob, NOW + DAY)
    with pytest.raises(CryptoError) as late:
        verify_certificate(secret.public_key, blob, NOW + DAY + 1)
    assert late.value.reason is Reason.EXPIRED
    verify_certificate(secret.public_key, blob, NOW - cert_mod.CLOCK_SKEW)
    with pytest.raises(CryptoError) as early:
        verify_certificate(secret.public_key, blob, NOW - cert_mod.CLOCK_SKEW - 1)
    assert early.value.reason is Reason.EXPIRED


def test_every_flipped_certificate_byte_is_refused(secret: ClusterSecret, keys: ServerKeys) -> None:
    blob = issue_certificate(secret, 7, keys, NOW, DAY)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x40
        with pytest.raises(CryptoError):
            verify_certificate(secret.public_key, bytes(bad), NOW)


def test_unknown_version_truncated_and_padded_certificates(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    blob = issue_certificate(secret, 7, keys, NOW)
    with pytest.raises(CryptoError) as version:
        verify_certificate(secret.public_key, b"\x02" + blob[1:], NOW)
    assert version.value.reason is Reason.UNKNOWN_VERSION
    for bad in (b"", blob[:-1], blob + b"\0", blob * 2):
        with pytest.raises(CryptoError) as info:
            verify_certificate(secret.public_key, bad, NOW)
        assert info.value.reason is Reason.MALFORMED


def test_issue_refuses_out_of_range_inputs(secret: ClusterSecret, keys: ServerKeys) -> None:
    for server_id in (-1, 2**53):
        with pytest.raises(ValueError):
            issue_certificate(secret, server_id, keys, NOW)
    with pytest.raises(ValueError):
        issue_certificate(secret, 1, keys, NOW, 400 * DAY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_verify_certificate_raises_only_crypto_error(blob: bytes) -> None:
    pinned = ClusterSecret(bytes(range(32))).public_key
    try:
        verify_certificate(pinned, blob, NOW)
    except CryptoError:
        return
    raise AssertionError("random bytes verified as a certificate")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, CERT_SIZE - 1), st.integers(1, 255), st.floats(0, 2**40))
def test_mutated_certificates_raise_only_crypto_error(index: int, xor: int, now: float) -> None:
    secret = ClusterSecret(bytes(range(32)))
    blob = bytearray(issue_certificate(secret, 3, _KEYS, NOW, DAY))
    blob[index] ^= xor
    with pytest.raises(CryptoError):
        verify_certificate(secret.public_key, bytes(blob), now)


# --- signed datagrams (what a client verifies) ------------------------------------------


def test_signed_datagram_round_trip(secret: ClusterSecret, keys: ServerKeys) -> None:
    cert = issue_certificate(secret, 7, keys, NOW)
    blob = sign_datagram(keys.signing_key, cert, b"NewLeader epoch 9")
    assert len(blob) == SIGNED_OVERHEAD + len(b"NewLeader epoch 9")
    got = verify_datagram(secret.public_key, blob, NOW + 1)
    assert got.body == b"NewLeader epoch 9"
    assert got.cert.server_id == 7


def test_every_flipped_signed_datagram_byte_is_refused(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    blob = sign_datagram(keys.signing_key, issue_certificate(secret, 7, keys, NOW), b"body!")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(CryptoError):
            verify_datagram(secret.public_key, bytes(bad), NOW)


def test_another_servers_certificate_cannot_be_borrowed(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    # Server 8 attaches server 7's certificate to speak as 7, signing with its own key.
    other = ServerKeys.generate()
    cert_of_7 = issue_certificate(secret, 7, keys, NOW)
    with pytest.raises(CryptoError) as info:
        verify_datagram(secret.public_key, sign_datagram(other.signing_key, cert_of_7, b"x"), NOW)
    assert info.value.reason is Reason.BAD_SIGNATURE


def test_client_key_cannot_forge_a_server_datagram(secret: ClusterSecret) -> None:
    # A rogue with its own cluster: a valid-looking datagram, not under the pinned key.
    rogue_secret, rogue_keys = ClusterSecret.generate(), ServerKeys.generate()
    forged = sign_datagram(
        rogue_keys.signing_key, issue_certificate(rogue_secret, 1, rogue_keys, NOW), b"x"
    )
    verify_datagram(rogue_secret.public_key, forged, NOW)
    with pytest.raises(CryptoError):
        verify_datagram(secret.public_key, forged, NOW)


def test_signed_datagram_with_expired_certificate_is_refused(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    blob = sign_datagram(keys.signing_key, issue_certificate(secret, 7, keys, NOW, DAY), b"x")
    with pytest.raises(CryptoError) as info:
        verify_datagram(secret.public_key, blob, NOW + 2 * DAY)
    assert info.value.reason is Reason.EXPIRED


def test_signed_datagram_size_is_bounded(secret: ClusterSecret, keys: ServerKeys) -> None:
    cert = issue_certificate(secret, 7, keys, NOW)
    fits = b"b" * (MAX_SIGNED_DATAGRAM - SIGNED_OVERHEAD)
    assert len(sign_datagram(keys.signing_key, cert, fits)) == MAX_SIGNED_DATAGRAM
    with pytest.raises(ValueError):
        sign_datagram(keys.signing_key, cert, fits + b"b")
    with pytest.raises(CryptoError, match="too large"):
        verify_datagram(secret.public_key, b"\x01" * (MAX_SIGNED_DATAGRAM + 1), NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_verify_datagram_raises_only_crypto_error(blob: bytes) -> None:
    pinned = ClusterSecret(bytes(range(32))).public_key
    with pytest.raises(CryptoError):
        verify_datagram(pinned, blob, NOW)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_any_pinned_key_bytes_give_only_crypto_error(raw: bytes) -> None:
    secret = ClusterSecret(bytes(range(32)))
    blob = sign_datagram(_KEYS.signing_key, issue_certificate(secret, 1, _KEYS, NOW), b"x")
    try:
        verify_datagram(ClusterPublicKey(raw), blob, NOW)
    except CryptoError:
        return
    assert raw == secret.public_key.raw


def test_certificate_cache_saves_the_cert_check_but_not_the_datagram_check(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    cache = CertificateCache(secret.public_key, max_entries=2)
    cert = issue_certificate(secret, 7, keys, NOW, DAY)
    blob = sign_datagram(keys.signing_key, cert, b"frame")
    assert verify_datagram(secret.public_key, blob, NOW, cache).body == b"frame"
    assert len(cache) == 1
    # The cached certificate does not excuse a bad datagram signature...
    forged = sign_datagram(ServerKeys.generate().signing_key, cert, b"forged")
    with pytest.raises(CryptoError):
        verify_datagram(secret.public_key, forged, NOW, cache)
    # ...nor an expiry, and it is bounded.
    with pytest.raises(CryptoError) as info:
        verify_datagram(secret.public_key, blob, NOW + 2 * DAY, cache)
    assert info.value.reason is Reason.EXPIRED
    for server_id in range(5):
        cache.verify(issue_certificate(secret, server_id, keys, NOW), NOW)
    assert len(cache) == 2
    # A forged certificate never enters the cache.
    rogue = issue_certificate(ClusterSecret.generate(), 7, keys, NOW)
    with pytest.raises(CryptoError):
        cache.verify(rogue, NOW)
    assert rogue not in cache._certs
    with pytest.raises(ValueError):
        verify_datagram(ClusterSecret.generate().public_key, blob, NOW, cache)


def test_noise_static_key_must_be_the_certified_one(
    secret: ClusterSecret, keys: ServerKeys
) -> None:
    cert = issue_certificate(secret, 7, keys, NOW)
    got = verify_server_static(secret.public_key, cert, keys.x25519_public, NOW)
    assert got.server_id == 7
    # A rogue that completed a handshake with its own static key, showing server 7's cert.
    rogue = ServerKeys.generate()
    with pytest.raises(CryptoError) as info:
        verify_server_static(secret.public_key, cert, rogue.x25519_public, NOW)
    assert info.value.reason is Reason.BAD_SIGNATURE
    with pytest.raises(CryptoError):
        verify_server_static(ClusterSecret.generate().public_key, cert, keys.x25519_public, NOW)
    cache = CertificateCache(secret.public_key)
    assert verify_server_static(secret.public_key, cert, keys.x25519_public, NOW, cache) == got
    with pytest.raises(CryptoError):
        verify_server_static(secret.public_key, cert, rogue.x25519_public, NOW, cache)
