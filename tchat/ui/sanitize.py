"""Neutralise network text before the terminal sees it: no controls, escapes, bidi tricks or
invisible characters.

Names, rooms and messages come from other people. A terminal would act on an ESC or OSC
sequence, a C1 control or a bidirectional override, and Rich/Textual would act on markup;
here every such character becomes a visible stand-in and text is only ever wrapped in
``rich.text.Text`` (which never parses markup).

Invisible characters (every format character, Cf, and the other default-ignorable ones:
zero-width space, soft hyphen, tag characters, variation selectors, Hangul fillers, U+2800)
are spelled out as ``\\u200b`` (``\\U000e0041`` past the BMP), as the bidi controls were
already: an escape is plain ASCII of a known width, survives copy and paste, and tells the
reader exactly which character hid there (a "�" would say only that something did). Three
are kept where they do their honest job, in emoji sequences: U+200D ZERO WIDTH JOINER
between two emoji (families, professions, the rainbow flag), U+FE0E/U+FE0F right after an
emoji (or a keycap's digit), and a flag's tag run (U+1F3F4, tags, U+E007F CANCEL TAG); an
ideographic variation selector right after the ideograph it picks a glyph of; and the
joiners where writing needs them (after a virama; the non-joiner inside an Arabic-script
word, as in Persian), as IDNA's CONTEXTJ rules allow.
"""

from __future__ import annotations

import re
import sys
import unicodedata

from rich.style import Style
from rich.text import Text

from tchat.core.names import INVISIBLE

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


def _scan() -> tuple[list[int], list[int]]:
    """Every format character (Cf) and every virama of this Python's Unicode, in one pass:
    planes 0 and 1 and the tag plane hold them all (planes 2 and 3 are ideographs, 15 and
    16 private use, the rest unassigned). The full blocks of ideographs and Hangul
    syllables, the surrogates and the private-use area are skipped: 40% of the scan, and
    Unicode puts no format character among them."""
    category, combining = unicodedata.category, unicodedata.combining
    formats: list[int] = []
    viramas: list[int] = []
    planes = (
        range(0x3400),
        range(0xA000, 0xAC00),  # past CJK Ext A and the Unified Ideographs
        range(0xD7A4, 0xD800),  # past the Hangul syllables
        range(0xF900, 0x20000),  # past the surrogates and the private-use area
        range(0xE0000, min(0xF0000, sys.maxunicode + 1)),
    )
    for plane in planes:
        for code in plane:
            kind = category(chr(code))
            if kind == "Cf":
                formats.append(code)
            elif kind == "Mn" and combining(chr(code)) == 9:
                viramas.append(code)
    return formats, viramas


_FORMATS, _VIRAMAS = _scan()


def _spelled(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


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
    for code in [*_SPELLED_OUT, *_FORMATS, *sorted(INVISIBLE)]:
        table[code] = _spelled(code)
    # Lone surrogates cannot be encoded for the terminal at all.
    for code in range(0xD800, 0xE000):
        table[code] = "\ufffd"
    return table


_TABLE = _build_table()
# Chat text keeps its line breaks: the view draws each as a new row, never sends it raw.
_MULTILINE = {code: out for code, out in _TABLE.items() if code != 0x0A}


# Where emoji live: the blocks of Unicode's emoji-data.txt (Emoji=Yes) below U+1F000, then
# the emoji planes' blocks. An approximation: a symbol wrongly taken for an emoji only lets
# a joiner or selector stand next to a visible character, never hide one.
_EMOJI_RANGES = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x21AA),
    (0x231A, 0x23FF),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25FE),
    (0x2600, 0x27BF),
    (0x2934, 0x2935),
    (0x2B05, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3299),
    (0x1F000, 0x1FAFF),
)
# Letters of the scripts whose letters join (Arabic, Syriac, N'Ko, Mongolian, and the Arabic
# presentation forms): between two of them a non-joiner is spelling, not a trick.
_JOINING_RANGES = (
    (0x0620, 0x06FF),
    (0x0700, 0x074F),
    (0x0750, 0x077F),
    (0x07C0, 0x07FF),
    (0x0860, 0x08FF),
    (0x1820, 0x18AF),
    (0xFB50, 0xFDFF),
    (0xFE70, 0xFEFC),
)
# Ideographs an ideographic variation selector may follow (Ideographic Variation Database).
_IDEOGRAPH_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges)


_EMOJI = f"[{_char_class(_EMOJI_RANGES)}]"
_VIRAMA = "".join(re.escape(chr(code)) for code in _VIRAMAS)
_SELECTOR = "[\ufe0e\ufe0f]"
_JOINING = "[{}]".format(
    "".join(
        re.escape(chr(code))
        for low, high in _JOINING_RANGES
        for code in range(low, high + 1)
        if unicodedata.category(chr(code))[0] in "LM"  # letters and their marks, no Cf
    )
)
# Honest uses of the characters kept in context; the sanitiser keeps only what these match
# (the regex engine scans, so a flood of 16 KB of joiners costs a scan, not a loop in Python).
_HONEST = re.compile(
    "|".join(
        [
            # an emoji, a presentation selector, then joined emoji (family, rainbow flag)
            f"{_EMOJI}{_SELECTOR}?(?:\u200d{_EMOJI}{_SELECTOR}?)+",
            f"{_EMOJI}{_SELECTOR}",
            "[0-9#*]\ufe0f\u20e3",  # keycap
            # a subdivision flag (England): black flag, tags spelling its code, cancel tag
            "\U0001f3f4[\U000e0020-\U000e007e]{1,32}\U000e007f",
            f"[{_VIRAMA}][\u200c\u200d]",  # Indic half forms (IDNA CONTEXTJ, RFC 5892)
            f"{_JOINING}\u200c(?={_JOINING})",  # Persian, Arabic: a non-joiner inside a word
            f"[{_char_class(_IDEOGRAPH_RANGES)}][\U000e0100-\U000e01ef]",
        ]
    )
)
_CONTEXTUAL = frozenset("\u200c\u200d\ufe0e\ufe0f") | frozenset(
    chr(code) for code in (*range(0xE0020, 0xE0080), *range(0xE0100, 0xE01F0))
)


def _clean(text: str, table: dict[int, str], in_sequence: dict[int, str]) -> str:
    # Substring tests and max() run in C: a regex over the text was 6x the translate.
    if not (
        "\u200d" in text
        or "\ufe0f" in text
        or "\u200c" in text
        or "\ufe0e" in text
        or (not text.isascii() and max(text) >= "\U000e0020")
    ):
        return text.translate(table)
    parts: list[str] = []
    start = 0
    for match in _HONEST.finditer(text):
        # Inside an honest sequence its joiners, selectors and tags stay; anything else in
        # it (a format character the ranges above take in) is translated as anywhere.
        parts.append(text[start : match.start()].translate(table))
        parts.append(match.group().translate(in_sequence))
        start = match.end()
    parts.append(text[start:].translate(table))
    return "".join(parts)


def _keeping_contextual(table: dict[int, str]) -> dict[int, str]:
    return {code: out for code, out in table.items() if chr(code) not in _CONTEXTUAL}


_TABLE_IN_SEQUENCE = _keeping_contextual(_TABLE)
_MULTILINE_IN_SEQUENCE = _keeping_contextual(_MULTILINE)


def sanitize(text: str) -> str:
    """Return ``text`` with every control, escape, bidi and invisible character made visible
    and inert (joiners and selectors inside emoji sequences stay)."""
    return _clean(text, _TABLE, _TABLE_IN_SEQUENCE)


MAX_LINES = 100  # line breaks kept per message; past them "⏎" stands in (nothing is lost)


def sanitize_multiline(text: str, max_lines: int = MAX_LINES) -> str:
    """``sanitize`` but line feeds stay (a CR becomes one): for chat text, shown row by row.

    A message of thousands of empty lines would push everything off the screen: after
    ``max_lines`` lines the rest is joined with a visible "⏎" instead.
    """
    flat = text.replace("\r\n", "\n").replace("\r", "\n")
    clean = _clean(flat, _MULTILINE, _MULTILINE_IN_SEQUENCE)
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
