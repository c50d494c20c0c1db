"""Test-wide fixtures: every test gets its own XDG dirs (identity keys, cluster pins)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_xdg_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client pins the cluster key it meets first: tests that start clusters with fresh
    # secrets must never share (or write) the user's known_clusters.
    root: Path = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(root / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
