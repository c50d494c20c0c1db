"""The sanitiser makes network text inert: no controls, escapes, bidi overrides or markup."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from tchat.ui.sanitize import safe_line, safe_text, sanitize


def test_escape_sequences_become_visible() -> None:
    assert sanitize("\x1b[31mred\x1b[0m") == "␛[31mred␛[0m"
    assert sanitize("\x1b]0;title\x07") == "␛]0;title␇"
    assert sanitize("a\nb\rc") == "a␊b␍c"
    assert sanitize("\x00\x7f") == "␀␡"
    assert sanitize("tab\there") == "tab here"


def test_c1_controls_are_spelled_out() -> None:
    assert sanitize("\x9b31m") == "\\x9b31m"
    assert sanitize("\x9d0;x\x9c") == "\\x9d0;x\\x9c"
    assert sanitize("\x85") == "\\x85"


def test_bidi_overrides_and_isolates_are_spelled_out() -> None:
    assert sanitize("abc\u202edef") == "abc\\u202edef"
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        out = sanitize(chr(code))
        assert out == f"\\u{code:04x}"


def test_ordinary_text_is_unchanged() -> None:
    text = "héllo wörld — 你好 🎉 [bold]x[/bold] :) <b>"
    assert sanitize(text) == text


def test_safe_text_never_parses_markup() -> None:
    rendered = safe_text("[bold red]x[/bold red] [link=http://evil]y[/link]")
    assert rendered.plain == "[bold red]x[/bold red] [link=http://evil]y[/link]"
    assert rendered.spans == []


def test_safe_line_truncates() -> None:
    assert safe_line("x" * 500, 10) == "x" * 9 + "…"


_DANGEROUS = st.characters(
    codec="utf-8",
    categories=("Cc", "Cf", "Zl", "Zp", "Ll", "Lu", "Nd", "Po", "Ps", "Pe"),
)


@given(st.text(alphabet=_DANGEROUS, max_size=60))
def test_no_control_or_bidi_character_survives(text: str) -> None:
    clean = sanitize(text)
    for char in clean:
        assert unicodedata.category(char) != "Cc", repr(char)
        assert not 0x202A <= ord(char) <= 0x202E
        assert not 0x2066 <= ord(char) <= 0x2069
    # What the terminal receives for it carries no escape introducer of its own making.
    console = Console(width=200, color_system=None, force_terminal=True, legacy_windows=False)
    with console.capture() as capture:
        console.print(Text(clean), end="")
    assert "\x1b" not in capture.get()
    assert "\x9b" not in capture.get()


def test_multiline_keeps_breaks_but_bounds_the_rows() -> None:
    from tchat.ui.sanitize import MAX_LINES, sanitize_multiline

    assert sanitize_multiline("a\r\nb\rc\n\x1b[2J") == "a\nb\nc\n␛[2J"
    flood = "x\n" * 5000
    shown = sanitize_multiline(flood)
    assert shown.count("\n") == MAX_LINES
    assert shown.count("x") == 5000  # nothing lost: the rest joined with a visible mark
    assert "⏎" in shown
