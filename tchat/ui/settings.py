"""Remembered choices (theme, user name) in the TOML config file, edited minimally and safely."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import tomllib
from pathlib import Path

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TABLE = re.compile(r"^\s*\[")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config`` when given, else $XDG_CONFIG_HOME/tchat/config.toml."""
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tchat" / "config.toml"


def read_settings(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}


def save_setting(path: Path, key: str, value: str) -> None:
    """Set top-level ``key = "value"``, keeping every other line of the file as it was.

    The new file is written beside the old one and renamed over it, so a crash leaves
    either the old or the new file, never half of one; a file that is not valid TOML
    afterwards is not written at all.
    """
    if not _KEY.match(key):
        raise ValueError(f"bad config key {key!r}")
    # A JSON string of printable text is a valid TOML basic string.
    line = f"{key} = {json.dumps(value, ensure_ascii=True)}\n"
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    lines = old.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    table_at = next((i for i, text in enumerate(lines) if _TABLE.match(text)), len(lines))
    for index in range(table_at):
        if pattern.match(lines[index]):
            lines[index] = line
            break
    else:
        lines.insert(table_at, line)
    new = "".join(lines)
    if tomllib.loads(new).get(key) != value:
        raise ValueError(f"refusing to write {path}: the edit did not round-trip")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(new)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
