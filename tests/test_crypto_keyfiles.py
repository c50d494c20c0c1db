"""Secret files (0600 in 0700, refused when unsafe) and identities with session-bound proofs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tchat.crypto import identity as identity_mod
from tchat.crypto.errors import CryptoError, Reason
from tchat.crypto.identity import (
    Identity,
    fingerprint,
    load_or_create_identity,
    short_fingerprint,
    sign_binding,
    verify_binding,
)
from tchat.crypto.keyfiles import (
    KeyFileError,
    client_data_dir,
    read_secret_file,
    read_secret_line,
    write_secret_file,
)

HH = bytes(range(32))


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_client_data_dir_follows_xdg_then_home() -> None:
    assert client_data_dir({"XDG_DATA_HOME": "/x/data", "HOME": "/h"}) == Path("/x/data/tchat")
    assert client_data_dir({"HOME": "/h"}) == Path("/h/.local/share/tchat")
    # A relative XDG value is invalid per the spec and must not put keys under the cwd.
    assert client_data_dir({"XDG_DATA_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/share/tchat")


def test_written_file_is_0600_in_a_0700_dir_even_with_a_loose_umask(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "secret.key"
    old = os.umask(0o000)
    try:
        write_secret_file(target, b"s3cret\n")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"s3cret\n"
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700
    # No temporary file is left behind.
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.key"]


def test_exclusive_write_never_replaces_an_existing_key(tmp_path: Path) -> None:
    target = tmp_path / "k"
    write_secret_file(target, b"first")
    with pytest.raises(FileExistsError):
        write_secret_file(target, b"second")
    assert target.read_bytes() == b"first"
    write_secret_file(target, b"third", exclusive=False)
    assert target.read_bytes() == b"third"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_exclusive_write_without_hard_links_still_never_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "k"
    write_secret_file(target, b"first")
    assert target.read_bytes() == b"first"
    assert _mode(target) == 0o600
    with pytest.raises(FileExistsError):
        write_secret_file(target, b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_existing_loose_dir_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "d"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    write_secret_file(loose / "k", b"x")
    assert _mode(loose) == 0o700


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o610])
def test_group_or_other_accessible_file_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "cluster.key"
    write_secret_file(path, b"line\n")
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        read_secret_file(path)
    assert info.value.reason is Reason.UNSAFE_FILE
    assert str(path) in str(info.value)
    assert f"chmod 600 {path}" in str(info.value)


def test_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k"
    write_secret_file(path, b"line\n")
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)
    with pytest.raises(KeyFileError, match="not to you|must be yours"):
        read_secret_file(path)


def test_symlink_and_non_regular_files_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_secret_file(real, b"line\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(KeyFileError):
        read_secret_file(link)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_secret_file(tmp_path)


def test_oversized_file_is_refused_and_missing_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "big"
    write_secret_file(path, b"x" * 5000)
    with pytest.raises(KeyFileError) as info:
        read_secret_line(path, max_size=4096)
    assert info.value.reason is Reason.MALFORMED
    with pytest.raises(KeyFileError) as missing:
        read_secret_file(tmp_path / "absent")
    assert missing.value.reason is Reason.MISSING


def test_identity_created_once_then_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "data" / "identity.key"
    first = load_or_create_identity(path)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    again = load_or_create_identity(path)
    assert again.public_raw == first.public_raw
    assert path.read_text().startswith("tchat-ed25519-v1 ")


def test_identity_default_path_is_the_xdg_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    made = load_or_create_identity()
    assert (tmp_path / "tchat" / "identity.key").exists()
    assert load_or_create_identity().public_raw == made.public_raw


def test_identity_file_readable_by_others_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    made = load_or_create_identity(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_identity(path)
    os.chmod(path, 0o600)
    assert load_or_create_identity(path).public_raw == made.public_raw


def test_corrupt_identity_file_is_an_error_not_a_new_identity(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    write_secret_file(path, b"tchat-ed25519-v1 not-base64!\n")
    with pytest.raises(CryptoError, match=str(path)):
        load_or_create_identity(path)
    assert path.read_bytes() == b"tchat-ed25519-v1 not-base64!\n"


def test_fingerprint_is_openssh_style() -> None:
    # sha256 of 32 zero bytes, base64 without padding (`openssl dgst -sha256 -binary | base64`).
    assert fingerprint(bytes(32)) == "SHA256:Zmh6rfhivXdsj8GLjp+OIAiXFIVu4jOzkCpZHQ1fKSU"
    assert short_fingerprint(fingerprint(bytes(32))) == "Zmh6rfhivXds"


def test_binding_round_trip_and_every_substitution_fails() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    proof = sign_binding(alice, HH, "alice")
    assert len(proof) == 64
    assert verify_binding(alice.public_raw, HH, "alice", proof)
    # Another session (replay), another name, another key, a tampered proof: all refused.
    assert not verify_binding(alice.public_raw, bytes(32), "alice", proof)
    assert not verify_binding(alice.public_raw, HH, "alicE", proof)
    assert not verify_binding(mallory.public_raw, HH, "alice", proof)
    for i in range(64):
        bad = bytearray(proof)
        bad[i] ^= 0x01
        assert not verify_binding(alice.public_raw, HH, "alice", bytes(bad))


def test_binding_is_domain_separated() -> None:
    alice = Identity.generate()
    # A signature over the bare hash (another protocol's message) is no login proof.
    assert not verify_binding(alice.public_raw, HH, "alice", alice.private_key.sign(HH))
    # The proof signs exactly the documented message (so other implementations can check it).
    expected = identity_mod.LOGIN_DOMAIN + b"alice\0" + HH
    alice.private_key.public_key().verify(sign_binding(alice, HH, "alice"), expected)


def test_verify_binding_never_raises_on_garbage() -> None:
    alice = Identity.generate()
    proof = sign_binding(alice, HH, "alice")
    assert not verify_binding(b"short", HH, "alice", proof)
    assert not verify_binding(alice.public_raw, HH, "alice", b"short")
    assert not verify_binding(alice.public_raw, b"h" * 8, "alice", proof)
    assert not verify_binding(alice.public_raw, HH, "a\0b", proof)
    assert not verify_binding(alice.public_raw, HH, "\ud800", proof)
    assert not verify_binding(alice.public_raw, HH, "", proof)
    with pytest.raises(CryptoError):
        sign_binding(alice, HH, "a\0b")
