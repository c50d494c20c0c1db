"""Colour themes: TOML files in themes/ turned into Textual ``Theme`` objects at start."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path

from textual.theme import Theme

log = logging.getLogger(__name__)

DEFAULT_THEME = "dark"
_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
# Variables every tchat theme must define, so .tcss can use them whatever the theme.
SENDER_VARIABLES = tuple(f"sender-{i}" for i in range(8))


def themes_dir() -> Path:
    """$TCHAT_THEMES_DIR, else the repository's themes/ next to the package."""
    override = os.environ.get("TCHAT_THEMES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "themes"


def theme_from_toml(data: dict[str, object]) -> Theme:
    name = data.get("name")
    primary = data.get("primary")
    if not isinstance(name, str) or not isinstance(primary, str):
        raise ValueError("a theme needs string 'name' and 'primary'")
    colours = {k: str(data[k]) for k in _FIELDS if k in data}
    raw_vars = data.get("variables", {})
    if not isinstance(raw_vars, dict):
        raise ValueError("'variables' must be a table")
    variables = {str(k): str(v) for k, v in raw_vars.items()}
    # A theme without sender colours borrows its named colours for them.
    borrowed = ("primary", "secondary", "accent", "success", "warning", "error", "foreground")
    for index, var in enumerate(SENDER_VARIABLES):
        variables.setdefault(var, colours.get(borrowed[index % len(borrowed)], primary))
    return Theme(
        name=name,
        primary=primary,
        secondary=colours.get("secondary"),
        warning=colours.get("warning"),
        error=colours.get("error"),
        success=colours.get("success"),
        accent=colours.get("accent"),
        foreground=colours.get("foreground"),
        background=colours.get("background"),
        surface=colours.get("surface"),
        panel=colours.get("panel"),
        boost=colours.get("boost"),
        dark=bool(data.get("dark", True)),
        variables=variables,
    )


def load_themes(directory: Path | None = None) -> list[Theme]:
    """Every ``*.toml`` theme in ``directory``; a broken file is logged and skipped."""
    folder = directory or themes_dir()
    themes: list[Theme] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            with path.open("rb") as handle:
                themes.append(theme_from_toml(tomllib.load(handle)))
        except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
            log.warning("skipping theme %s: %s", path, exc)
    if not any(t.name == DEFAULT_THEME for t in themes):
        themes.append(_FALLBACK)
    return themes


# Used when the themes folder is missing (an installed wheel without the repository).
_FALLBACK = theme_from_toml(
    {
        "name": DEFAULT_THEME,
        "primary": "#4f9fe6",
        "secondary": "#7aa2f7",
        "accent": "#e0af68",
        "background": "#11151c",
        "surface": "#181d26",
        "panel": "#232a36",
        "foreground": "#d8dee9",
    }
)
