"""Neutralise network text before the terminal sees it: no controls, escapes or bidi tricks.

Names, rooms and messages come from other people. A terminal would act on an ESC or OSC
sequence, a C1 control or a bidirectional override, and Rich/Textual would act on markup;
here every such character becomes a visible stand-in and text is only ever wrapped in
``rich.text.Text`` (which never parses markup).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

# Unicode bidi embeddings/overrides/isolates and directional marks, plus line separators:
# they can reorder or hide what is shown, so they are spelled out instead.
_SPELLED_OUT = [
    *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO
    *range(0x2066, 0x206A),  # LRI RLI FSI PDI
    0x200E,  # LRM
    0x200F,  # RLM
    0x061C,  # ALM
    0x2028,  # line separator
    0x2029,  # paragraph separator
    0xFEFF,  # BOM / zero-width no-break space
]


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    # C0 controls become their Control Pictures (U+2400 block): ESC shows as a visible "␛".
    for code in range(0x20):
        table[code] = chr(0x2400 + code)
    table[0x09] = " "  # a tab is harmless but would break column maths
    table[0x7F] = "\u2421"  # DEL -> ␡
    # C1 controls (CSI 0x9B, OSC 0x9D, ...) have no pictures: spell them as \x9b.
    for code in range(0x80, 0xA0):
        table[code] = f"\\x{code:02x}"
    for code in _SPELLED_OUT:
        table[code] = f"\\u{code:04x}"
    # Lone surrogates cannot be encoded for the terminal at all.
    for code in range(0xD800, 0xE000):
        table[code] = "\ufffd"
    return table


_TABLE = _build_table()
# Chat text keeps its line breaks: the view draws each as a new row, never sends it raw.
_MULTILINE = {code: out for code, out in _TABLE.items() if code != 0x0A}


def sanitize(text: str) -> str:
    """Return ``text`` with every control, escape and bidi character made visible and inert."""
    return text.translate(_TABLE)


MAX_LINES = 100  # line breaks kept per message; past them "⏎" stands in (nothing is lost)


def sanitize_multiline(text: str, max_lines: int = MAX_LINES) -> str:
    """``sanitize`` but line feeds stay (a CR becomes one): for chat text, shown row by row.

    A message of thousands of empty lines would push everything off the screen: after
    ``max_lines`` lines the rest is joined with a visible "⏎" instead.
    """
    clean = text.replace("\r\n", "\n").replace("\r", "\n").translate(_MULTILINE)
    if clean.count("\n") < max_lines:
        return clean
    head = clean.split("\n", max_lines)
    return "\n".join(head[:-1]) + "\n" + head[-1].replace("\n", " ⏎ ")


def safe_text(text: str, style: str | Style = "") -> Text:
    """Network text as a Rich ``Text``: sanitised, and markup shown literally."""
    return Text(sanitize(text), style=style, end="")


def safe_line(text: str, limit: int = 200) -> str:
    """A sanitised one-line excerpt for notifications and titles (never markup-parsed)."""
    clean = sanitize(text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
