"""The client's pin file: first use pins, a changed key stops with advice, bad lines reported."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tchat.crypto.cluster import ClusterSecret, ServerKeys, parse_secret
from tchat.crypto.errors import CryptoError
from tchat.crypto.identity import Identity
from tchat.crypto.keyfiles import KeyFileError, write_secret_file
from tchat.crypto.known_clusters import MAX_FILE, KeyChanged, KnownClusters

WHEN = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
KEY_A = ClusterSecret(bytes(range(32))).public_key
KEY_B = ClusterSecret(bytes(32)).public_key


def test_first_use_pins_then_the_same_key_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tchat" / "known_clusters"
    known = KnownClusters.load(path)
    assert known.check("lan", KEY_A) is None
    pin = known.pin("lan", KEY_A, WHEN)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    line = path.read_text().strip()
    encoded = base64.b64encode(KEY_A.raw).decode()
    assert line == f"lan {KEY_A.fingerprint} {encoded} 2026-12-03T06:00:00+00:00"
    again = KnownClusters.load(path)
    assert again.lookup("lan") == pin
    assert again.check("lan", KEY_A) == pin
    assert again.find_fingerprint(KEY_A.fingerprint) == pin
    assert again.problems == []


def test_default_path_is_the_xdg_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    KnownClusters.load().pin("default", KEY_A, WHEN)
    assert (tmp_path / "tchat" / "known_clusters").exists()


def test_changed_key_stops_with_how_to_check_and_accept(tmp_path: Path) -> None:
    path = tmp_path / "known_clusters"
    KnownClusters.load(path).pin("lan", KEY_A, WHEN)
    known = KnownClusters.load(path)
    with pytest.raises(KeyChanged) as info:
        known.check("lan", KEY_B)
    message = str(info.value)
    for needed in (
        KEY_A.fingerprint,
        KEY_B.fingerprint,
        "tchat status",
        "tchat key show",
        "tchat key forget lan",
        str(path),
    ):
        assert needed in message
    with pytest.raises(KeyChanged):
        known.pin("lan", KEY_B, WHEN)
    assert KnownClusters.load(path).lookup("lan").key == KEY_A  # type: ignore[union-attr]


def test_forget_then_accept_the_new_key(tmp_path: Path) -> None:
    path = tmp_path / "known_clusters"
    known = KnownClusters.load(path)
    known.pin("lan", KEY_A, WHEN)
    known.pin("office", KEY_B, WHEN)
    assert known.forget("lan")
    assert not known.forget("lan")
    reloaded = KnownClusters.load(path)
    assert reloaded.lookup("lan") is None
    assert reloaded.lookup("office") is not None
    reloaded.pin("lan", KEY_B, WHEN)
    assert KnownClusters.load(path).lookup("lan").key == KEY_B  # type: ignore[union-attr]


def test_malformed_lines_are_reported_not_fatal_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "known_clusters"
    good = f"lan {KEY_A.fingerprint} {base64.b64encode(KEY_A.raw).decode()} 2026-12-03"
    wrong_fp = f"evil {KEY_A.fingerprint} {base64.b64encode(KEY_B.raw).decode()} 2026-12-03"
    lines = [
        "# my clusters",
        "",
        "garbage",
        wrong_fp,
        f"short {KEY_A.fingerprint} AAAA 2026-12-03",
        f"bad-date {KEY_A.fingerprint} {base64.b64encode(KEY_A.raw).decode()} yesterday",
        good,
        good.replace("lan", "lan", 1),
        "\udcff",
    ]
    write_secret_file(path, "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    known = KnownClusters.load(path)
    assert len(known) == 1
    assert known.lookup("lan") is not None
    assert known.lookup("evil") is None  # a fingerprint that does not match its key
    assert len(known.problems) == 6
    assert all(str(path) in p for p in known.problems)
    known.pin("office", KEY_B, WHEN)
    text = path.read_text(errors="replace")
    assert "garbage" in text and "# my clusters" in text


def test_pin_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "known_clusters"
    KnownClusters.load(path).pin("lan", KEY_A, WHEN)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KnownClusters.load(path)


def test_pin_file_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "known_clusters"
    write_secret_file(path, b"#" * (MAX_FILE + 1), max_size=2 * MAX_FILE)
    with pytest.raises(KeyFileError):
        KnownClusters.load(path)


@pytest.mark.parametrize("label", ["", "two words", "#x", "x" * 65, "é"])
def test_bad_labels_are_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError):
        KnownClusters.load(tmp_path / "k").pin(label, KEY_A, WHEN)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=8))
def test_any_file_content_loads_with_problems_never_an_exception(lines: list[str]) -> None:
    known = KnownClusters(Path("/nonexistent/known_clusters"), lines)
    assert len(known) + len(known.problems) <= len(lines)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_key_file_parsers_raise_only_crypto_error(text: str) -> None:
    for parse in (
        lambda: parse_secret(text, "env"),
        lambda: Identity.parse_line(text),
        lambda: ServerKeys.parse_line(text, "server.key"),
    ):
        with contextlib.suppress(CryptoError):
            parse()


def test_two_clients_pinning_at_once_keep_both_pins(tmp_path: Path) -> None:
    path = tmp_path / "known_clusters"
    first, second = KnownClusters.load(path), KnownClusters.load(path)
    first.pin("lan", KEY_A, WHEN)
    second.pin("office", KEY_B, WHEN)
    both = KnownClusters.load(path)
    assert both.lookup("lan") is not None and both.lookup("office") is not None
    # The second client's stale view does not let it pin another key over the first's.
    stale = KnownClusters(path, [])
    with pytest.raises(KeyChanged):
        stale.pin("lan", KEY_B, WHEN)
