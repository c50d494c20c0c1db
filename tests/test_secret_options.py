"""The cluster secret never on the command line, and only from files no one else can read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tchat.crypto.cluster import ClusterSecret
from tchat.runtime.modes import build_parser
from tchat.runtime.options import NetOptions, options_from_args

# Imported where used, so each test also runs (and fails) on the tree before this module.


def parse(argv: list[str]) -> NetOptions:
    return options_from_args(build_parser().parse_args(argv), "daemon")


@pytest.fixture(autouse=True)
def _no_ambient_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TCHAT_CLUSTER_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def key_file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_key_on_the_command_line_is_refused_with_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every local user reads a process's arguments (ps, /proc/PID/cmdline).
    for argv in (["--cluster-key", "sekrit"], ["--cluster-key=sekrit"]):
        with pytest.raises(SystemExit) as stopped:
            parse(["--host", "127.0.0.1", *argv])
        assert stopped.value.code == 2
        said = capsys.readouterr().err
        assert "TCHAT_CLUSTER_KEY" in said and "--cluster-key-file" in said
        assert "sekrit" not in said


def test_a_private_key_file_is_read_and_a_readable_one_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = key_file(
        tmp_path / "good.key", "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= \n", 0o600
    )
    opts = parse(["--host", "127.0.0.1", "--cluster-key-file", str(good)])
    assert opts.cluster_key == b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert str(good) in opts.key_source
    capsys.readouterr()
    for mode in (0o644, 0o640, 0o604):
        loose = key_file(tmp_path / f"loose-{mode:o}.key", "a secret others can read\n", mode)
        with pytest.raises(SystemExit) as stopped:
            parse(["--host", "127.0.0.1", "--cluster-key-file", str(loose)])
        assert stopped.value.code == 2
        said = capsys.readouterr().err
        assert f"mode {mode:04o}" in said and "chmod 600" in said
        assert "others can read" not in said  # the key itself is never echoed


def test_key_files_that_are_not_one_short_line_of_a_regular_file_are_refused(
    tmp_path: Path,
) -> None:
    from tchat.crypto.cluster import read_cluster_secret
    from tchat.crypto.errors import CryptoError

    os.mkfifo(tmp_path / "fifo", 0o600)  # would block a start that read it
    (tmp_path / "dir").mkdir(mode=0o700)
    cases = {
        tmp_path / "fifo": "not a regular file",
        tmp_path / "dir": "not a regular file",
        key_file(tmp_path / "empty", "\n\n", 0o600): "one line, not 0",
        key_file(tmp_path / "two", "one\ntwo\n", 0o600): "one line, not 2",
        key_file(tmp_path / "big", "k" * 5000, 0o600): "more than the 4096",
        key_file(tmp_path / "long", "k" * 2000, 0o600): "32 bytes as one line",
        key_file(tmp_path / "ctl", "a\x1bkey\n", 0o600): "32 bytes as one line",
        key_file(tmp_path / "utf8", "clé\n", 0o600): "not an ASCII key file",
        tmp_path / "missing": "does not exist",
    }
    for path, reason in cases.items():
        with pytest.raises(CryptoError, match=reason):
            read_cluster_secret(path)


def test_a_config_holding_the_key_must_be_private_one_without_may_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = key_file(tmp_path / "plain.toml", 'host = "127.0.0.1"\n', 0o644)
    assert parse(["--config", str(plain)]).cluster_key is None
    secret = key_file(
        tmp_path / "secret.toml",
        'cluster_key = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="\n',
        0o644,
    )
    with pytest.raises(SystemExit) as stopped:
        parse(["--host", "127.0.0.1", "--config", str(secret)])
    assert stopped.value.code == 2
    assert "mode 0644" in capsys.readouterr().err
    secret.chmod(0o600)
    assert parse(["--host", "127.0.0.1", "--config", str(secret)]).cluster_key == (
        b"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
    )


def test_insecure_is_explicit_and_cannot_go_with_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = parse(["--host", "127.0.0.1", "--insecure"])
    assert opts.insecure and opts.cluster_key is None
    assert not parse(["--host", "127.0.0.1"]).insecure
    monkeypatch.setenv("TCHAT_CLUSTER_KEY", ClusterSecret(bytes(32)).export_line())
    with pytest.raises(SystemExit) as stopped:
        parse(["--host", "127.0.0.1", "--insecure"])
    assert stopped.value.code == 2 and "--insecure" in capsys.readouterr().err


def test_a_data_dir_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    from tchat.crypto.cluster import load_cluster_secret
    from tchat.crypto.keyfiles import KeyFileError, write_secret_file

    made = load_cluster_secret({}, None, tmp_path, create=True)
    assert made.created and len(made.export_line()) == 44  # 32 random bytes in base64
    path = tmp_path / "cluster.key"
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_cluster_secret({}, None, tmp_path, create=True)
    assert again == made and not again.created
    with pytest.raises(FileExistsError):  # never over an existing key
        write_secret_file(path, b"another\n")
    path.chmod(0o644)  # someone loosened it: it may have leaked, the operator decides
    with pytest.raises(KeyFileError, match="mode 0644"):
        load_cluster_secret({}, None, tmp_path, create=True)


def test_a_server_refuses_a_phrase_that_is_no_cluster_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its signing and sealing keys come from 32 bytes of secret: a phrase stopped the
    # daemon with a traceback at its first handshake; now the command line says why.
    monkeypatch.setenv("TCHAT_CLUSTER_KEY", "an environment secret")
    with pytest.raises(SystemExit) as stopped:
        parse(["--host", "127.0.0.1"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "32 bytes" in err and "tchat key new" in err
    monkeypatch.setenv("TCHAT_CLUSTER_KEY", ClusterSecret.generate().export_line())
    assert parse(["--host", "127.0.0.1"]).cluster_key is not None


def test_a_rotation_names_its_step_by_the_other_key_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 1 gives the next secret, step 2 the previous one: which way the server's vouch
    points (clients move their pin forward only). Both at once is no step; the other
    secret's file obeys the same rules as the current one's."""
    old, new = ClusterSecret.generate(), ClusterSecret.generate()
    old_file = key_file(tmp_path / "old.key", old.export_line() + "\n", 0o600)
    new_file = key_file(tmp_path / "new.key", new.export_line() + "\n", 0o600)
    base = ["--host", "127.0.0.1"]
    step1 = parse(
        [*base, "--cluster-key-file", str(old_file), "--next-cluster-key-file", str(new_file)]
    )
    assert step1.other_cluster_key == new.export_line().encode()
    assert not step1.other_key_is_previous
    step2 = parse(
        [*base, "--cluster-key-file", str(new_file), "--previous-cluster-key-file", str(old_file)]
    )
    assert step2.other_cluster_key == old.export_line().encode() and step2.other_key_is_previous
    monkeypatch.setenv("TCHAT_PREVIOUS_CLUSTER_KEY", old.export_line())
    from_env = parse([*base, "--cluster-key-file", str(new_file)])
    assert from_env.other_key_is_previous and "previous" in from_env.other_key_source
    monkeypatch.delenv("TCHAT_PREVIOUS_CLUSTER_KEY")
    capsys.readouterr()
    with pytest.raises(SystemExit) as both:
        parse(
            [*base, "--cluster-key-file", str(new_file), "--next-cluster-key-file", str(old_file),
             "--previous-cluster-key-file", str(old_file)]
        )  # fmt: skip
    assert both.value.code == 2 and "not both" in capsys.readouterr().err
    loose = key_file(tmp_path / "loose.key", old.export_line() + "\n", 0o644)
    with pytest.raises(SystemExit):
        parse(
            [*base, "--cluster-key-file", str(new_file), "--previous-cluster-key-file", str(loose)]
        )
