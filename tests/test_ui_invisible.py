"""The sanitiser shows every invisible format character, and keeps emoji sequences whole."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tchat.ui.sanitize import sanitize, sanitize_multiline

# Invisible characters that are not of category Cf (Unicode's Default_Ignorable_Code_Point
# list, DerivedCoreProperties.txt, plus blanks that render as nothing).
_FILLERS = [
    0x034F,  # COMBINING GRAPHEME JOINER
    0x115F,  # HANGUL CHOSEONG FILLER
    0x1160,  # HANGUL JUNGSEONG FILLER
    0x17B4,  # KHMER VOWEL INHERENT AQ
    0x17B5,  # KHMER VOWEL INHERENT AA
    *range(0x180B, 0x1810),  # Mongolian free variation selectors, vowel separator
    0x2800,  # BRAILLE PATTERN BLANK
    0x3164,  # HANGUL FILLER
    0xFFA0,  # HALFWIDTH HANGUL FILLER
    *range(0xFE00, 0xFE10),  # variation selectors
    *range(0xE0100, 0xE01F0),  # variation selectors supplement
    *range(0xE0000, 0xE0080),  # tags
]
_FORMAT = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
_EMOJI = "\U0001f469"  # WOMAN


def _spelled(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@pytest.mark.parametrize("code", sorted(set(_FORMAT) | set(_FILLERS)), ids=hex)
def test_no_invisible_character_passes_unmarked(code: int) -> None:
    char = chr(code)
    texts = [f"a{char}b", f"{char}", f"{char}{_EMOJI}"]
    if code not in (0xFE0E, 0xFE0F):  # a presentation selector after an emoji is its own
        texts.append(f"{_EMOJI}{char}")
    if not 0xE0100 <= code <= 0xE01EF:  # an ideographic variation selector after a Han one
        texts.append(f"\u845b{char}")
    for text in texts:
        shown = sanitize(text)
        assert char not in shown, (hex(code), text, shown)
        assert char not in sanitize_multiline(text)
    # Spelled as an escape, as the bidi controls were already: plain ASCII, a known width.
    assert sanitize(f"a{char}b") == f"a{_spelled(code)}b"


def test_the_issue_counted_them() -> None:
    # At least the 129 the issue found getting through: every Cf of this Unicode and the fillers.
    assert len(set(_FORMAT) | set(_FILLERS)) >= 129


@pytest.mark.parametrize(
    "emoji",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # family
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
        "\u2764\ufe0f\u200d\U0001f525",  # heart on fire
        "\U0001f469\U0001f3fd\u200d\U0001f4bb",  # woman technologist, skin tone
        "\U0001f441\ufe0f\u200d\U0001f5e8\ufe0f",  # eye in speech bubble
        "\u2764\ufe0f",  # red heart, emoji presentation
        "\u263a\ufe0e",  # smiling face, text presentation
        "1\ufe0f\u20e3",  # keycap one
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # England
    ],
)
def test_emoji_sequences_survive(emoji: str) -> None:
    assert sanitize(f"hi {emoji} there") == f"hi {emoji} there"
    assert sanitize_multiline(f"{emoji}\n{emoji}") == f"{emoji}\n{emoji}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\u200db", "a\\u200db"),  # a joiner between letters joins nothing visible
        ("\u200d\U0001f469", "\\u200d\U0001f469"),  # nothing before it
        ("\U0001f469\u200d", "\U0001f469\\u200d"),  # nothing after it
        ("\U0001f469\u200d\u200d\U0001f469", "\U0001f469\\u200d\\u200d\U0001f469"),
        ("a\ufe0f", "a\\ufe0f"),  # a presentation selector on a letter
        ("\u2764\ufe0f\ufe0f", "\u2764\ufe0f\\ufe0f"),  # a second one hides something
        ("x\U000e0041\U000e007f", "x\\U000e0041\\U000e007f"),  # tags smuggling text
        ("\U0001f3f4\U000e0041", "\U0001f3f4\\U000e0041"),  # a tag run never ended
        ("\u2066\U0001f469\u2069", "\\u2066\U0001f469\\u2069"),
    ],
)
def test_joiners_and_selectors_outside_an_emoji_sequence_are_shown(text: str, shown: str) -> None:
    assert sanitize(text) == shown


def test_han_variation_sequences_stay() -> None:
    # An ideographic variation selector picks a glyph of the ideograph it follows (IVD).
    assert sanitize("\u845b\U000e0100") == "\u845b\U000e0100"
    assert sanitize("a\U000e0100") == "a\\U000e0100"


@given(st.text(st.characters(codec="utf-8"), max_size=40))
def test_nothing_invisible_survives_anywhere(text: str) -> None:
    shown = sanitize(text)
    kept = set(_FORMAT) | set(_FILLERS)
    for i, char in enumerate(shown):
        if ord(char) not in kept:
            continue
        # Only inside an emoji sequence: a joiner or a presentation selector after an emoji,
        # a tag run of a flag, an ideographic variation selector after an ideograph; or a
        # joiner spelling a word.
        assert ord(char) in (0x200C, 0x200D, 0xFE0E, 0xFE0F) or 0xE0020 <= ord(char) <= 0xE01EF, (
            text,
            shown,
        )
        assert i > 0


@pytest.mark.parametrize(
    "word",
    [
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian: a non-joiner in a word
        "\u0915\u094d\u200d\u0937",  # Devanagari: a joiner after a virama (half form)
        "\u0d28\u0d4d\u200c",  # Malayalam: a non-joiner after a virama
    ],
)
def test_joiners_that_spell_words_stay(word: str) -> None:
    assert sanitize(word) == word


def test_joiners_between_letters_of_other_scripts_are_shown() -> None:
    assert sanitize("a\u200cb") == "a\\u200cb"
    assert sanitize("\u0430\u200c\u0430") == "\u0430\\u200c\u0430"
    assert sanitize("\u0645\u200c") == "\u0645\\u200c"


def test_a_format_character_inside_a_kept_sequence_is_still_shown() -> None:
    # U+06DD ARABIC END OF AYAH is a format character among Arabic letters.
    assert sanitize("\u06dd\u200c\u0628") == "\\u06dd\\u200c\u0628"
    assert sanitize("\u0628\u200c\u0628\u06dd") == "\u0628\u200c\u0628\\u06dd"
