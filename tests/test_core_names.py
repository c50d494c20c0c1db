"""The name rules on their own: NFKC, no invisible, bidi or mixed-script names, look-alikes."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tchat.core.messages import MAX_NAME
from tchat.core.names import (
    INVISIBLE,
    LookAlikes,
    checked_name,
    name_problem,
    room_problem,
    skeleton,
)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("\u0430lice", ["Latin", "Cyrillic", "U+0430 CYRILLIC SMALL LETTER A"]),
        ("al\u03bfce", ["Latin", "Greek", "U+03BF GREEK SMALL LETTER OMICRON"]),
        ("\u3164", ["U+3164 HANGUL FILLER", "invisible"]),
        ("bob\u3164", ["U+3164 HANGUL FILLER"]),
        ("\u2800", ["U+2800 BRAILLE PATTERN BLANK"]),
        ("al\u200bice", ["U+200B ZERO WIDTH SPACE"]),
        ("ali\u00adce", ["U+00AD SOFT HYPHEN"]),
        ("\u0301alice", ["U+0301 COMBINING ACUTE ACCENT", "starts with"]),
        ("x\u0301\u0302\u0303", ["combining marks in a row"]),
        ("bob\u202eevil", ["U+202E RIGHT-TO-LEFT OVERRIDE", "bidi"]),
        ("bob\u2067", ["U+2067 RIGHT-TO-LEFT ISOLATE", "bidi"]),
        ("bob\u061c", ["U+061C ARABIC LETTER MARK", "bidi"]),
        ("bob\U000e0041", ["U+E0041 TAG LATIN CAPITAL LETTER A"]),
        ("bob\ufe0f", ["U+FE0F VARIATION SELECTOR-16"]),
        ("bob\u115f", ["U+115F HANGUL CHOSEONG FILLER"]),
        ("bob\u17b4", ["U+17B4 KHMER VOWEL INHERENT AQ"]),
        ("bob\ue000", ["U+E000", "private"]),
        ("bob\U000e0fff", ["U+E0FFF"]),
        ("bo b", ["U+0020 SPACE"]),
        ("bob\u2028", ["U+2028 LINE SEPARATOR"]),
        ("bob\x1b", ["U+001B"]),
        ("bob\u0378", ["U+0378", "unassigned"]),
    ],
)
def test_deceptive_names_are_refused_naming_the_character(name: str, words: list[str]) -> None:
    _normal, problem = checked_name(name)
    assert problem is not None, name
    for word in words:
        assert word in problem, problem
    assert name_problem(name) is not None


def test_fullwidth_and_compatibility_forms_become_their_normal_form() -> None:
    assert checked_name("\uff41\uff4c\uff49\uff43\uff45") == ("alice", None)  # ａｌｉｃｅ
    assert checked_name("\u2168x") == ("IXx", None)  # ROMAN NUMERAL NINE
    assert checked_name("\ufb01sh") == ("fish", None)  # the fi ligature
    # The form on the wire must be the normal one: the leader says which it is.
    problem = name_problem("\uff41\uff4c\uff49\uff43\uff45")
    assert problem is not None and "'alice'" in problem


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "Bob_2",
        "d.e-f",
        "\u00e9lodie",  # é composed
        "zo\u00eb",
        "\u0438\u0432\u0430\u043d",  # иван, all Cyrillic
        "\u03b1\u03b8\u03b7\u03bd\u03ac",  # αθηνά, all Greek
        "\u7530\u4e2d\u305f\u308d\u3046",  # 田中たろう: Han and Hiragana are one set
        "tanaka\u7530\u4e2d",  # Latin with Han: UTS #39 "highly restrictive" allows it
        "\ud55c\uad6d\uc5b4",  # 한국어
        "\u05d3\u05d5\u05d3",  # Hebrew
        "\u0645\u062d\u0645\u062f",  # Arabic
        "\u0926\u0947\u0935",  # Devanagari with a vowel sign (a spacing mark)
        "\U0001f642bob",  # an emoji is Common
        "x\u0301",  # one combining mark after a letter with no precomposed form
        "a" * MAX_NAME,
    ],
)
def test_honest_names_pass(name: str) -> None:
    assert checked_name(name) == (name, None)
    assert name_problem(name) is None
    assert room_problem(name) is None


def test_length_is_checked_before_any_work() -> None:
    _, problem = checked_name("a" * (MAX_NAME + 1))
    assert problem is not None and "longer than" in problem
    # U+FDFA expands to 18 characters under NFKC: the normal form is measured too.
    _, problem = checked_name("\ufdfa" * 2)
    assert problem is not None and "longer than" in problem


def test_scripts_that_do_not_mix() -> None:
    for name in ("\u0430b", "b\u03b1", "\u0430\u03b1", "ab\u05d0", "a\u0968"):
        _, problem = checked_name(name)
        assert problem is not None and "mixes" in problem, (name, problem)


def test_skeletons_catch_look_alikes() -> None:
    alike = [
        ("alice", "Alice", "ALICE", "al1ce", "aIice", "\u0430\u04cfice"),  # the last: Cyrillic
        ("ace", "\u0430\u0441\u0435"),  # асе, all Cyrillic
        ("bob", "B0B", "\u0412\u041e\u0412"),  # ВОВ, all Cyrillic capitals
        ("poo", "\u03c1\u03bf\u03bf"),  # ροο, all Greek
        ("dev-team", "dev\u2010team", "DEV\u2212TEAM"),
        ("carol", "caro1", "carol"),
        ("zo\u00eb", "zo\u0451"),  # ë and Cyrillic ё
    ]
    for group in alike:
        keys = {skeleton(n) for n in group}
        assert len(keys) == 1, (group, keys)
    assert skeleton("alice") != skeleton("alicia")
    assert skeleton("ann") != skeleton("anna")


def test_look_alikes_index_names_the_older_name_and_lets_it_back() -> None:
    seen = LookAlikes()
    seen.add("alice")
    assert seen.similar("alice") is None  # the same name is not a look-alike of itself
    assert seen.similar("al1ce") == "alice"
    assert seen.similar("ALICE") == "alice"
    assert seen.similar("bob") is None
    # An old log may hold two names that look alike (before these rules): both go on.
    seen.add("Alice")
    assert seen.similar("Alice") is None and seen.similar("alice") is None
    assert seen.similar("aLice") == "alice"
    assert len(seen) == 2


def test_a_released_name_lets_its_look_alikes_come() -> None:
    seen = LookAlikes()
    for name in ("alice", "Alice", "bob"):
        seen.add(name)
    seen.discard("alice")
    assert seen.similar("aLice") == "Alice" and len(seen) == 2
    seen.discard("Alice")
    seen.discard("carol")  # never known: nothing happens
    assert seen.similar("aLice") is None and len(seen) == 1
    assert seen.similar("B0B") == "bob"


_ANY = st.text(st.characters(codec="utf-8"), max_size=40)
# Names people type: letters of a few scripts, digits, marks, punctuation, an emoji, some
# look-alikes and invisible ones, so that both answers come up often.
_TYPED = st.text(
    st.sampled_from(
        "abcxyzABC019_-.\u00e9\u00eb\u0301\u0308\u0430\u0435\u043e\u0456\u03b1\u03bf"
        "\u7530\u305f\u30bf\ud55c\u05d0\u0645\u0915\u094d\uff41\uff21\ufb01\u2168"
        "\U0001f642\u200b\u3164\u2800\u202e "
    ),
    min_size=1,
    max_size=12,
)


@given(st.one_of(_ANY, _TYPED))
def test_any_string_is_a_valid_name_or_gets_a_reason(raw: str) -> None:
    normal, problem = checked_name(raw)
    if problem is None:
        assert normal == unicodedata.normalize("NFKC", raw)
        assert name_problem(normal) is None
        assert checked_name(normal) == (normal, None)  # idempotent on its own output
        assert 0 < len(normal) <= MAX_NAME
        assert not any(ord(c) in INVISIBLE for c in normal)
        assert skeleton(skeleton(normal)) == skeleton(normal)
    else:
        assert isinstance(problem, str) and problem
        assert name_problem(raw) is not None


@given(st.text(st.sampled_from("aAbB0oO1lIi|\u0430\u043e\u03bf\u0456-\u2010_."), max_size=12))
def test_skeleton_is_stable(raw: str) -> None:
    assert skeleton(skeleton(raw)) == skeleton(raw)
    assert skeleton(raw.upper()) == skeleton(raw.lower())
