"""Names people read (users and rooms): NFKC, visible, single-script, never another's look-alike.

One set of rules for the leader (authoritative: it refuses a Register or a room creation) and
the client (early: it normalises what the user typed and refuses before sending anything).
Pure and deterministic, stdlib ``unicodedata`` only.

Determinism across machines: every answer here depends on the Unicode database of the
running Python (``unicodedata.unidata_version``: 14.0.0 on 3.11, 15.0.0 on 3.12). A newer
database assigns code points an older one calls unassigned and may move a character's
category or script, so two leaders on different Python minors could judge one name
differently. Run every server of a cluster on the same Python minor version; entries already
in the log are never judged again (only new Registers and room creations are), so an
upgrade never stops an old log from loading.

The confusable table is a small hand-picked subset of UTS #39's confusables.txt (Unicode
Security Mechanisms, https://www.unicode.org/Public/security/latest/confusables.txt) for
Latin, Cyrillic, Greek and digits, not the whole file.
"""

from __future__ import annotations

import unicodedata

from tchat.core.messages import MAX_NAME, MAX_ROOM, MAX_TEXT

MAX_MARKS = 2  # combining marks in a row: more stacks them into an unreadable smear (Zalgo)

# Bidirectional controls: they reorder what a terminal shows ("bob\u202eeve" reads "bobeve"
# backwards). All are Cf too: listed apart for a clearer refusal.
BIDI = frozenset(
    [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)],
)

# Code points that render as nothing. Unicode's Default_Ignorable_Code_Point property
# (DerivedCoreProperties.txt; most are Cf, but the Hangul fillers are letters, the
# variation selectors marks), plus blanks that are neither but draw an empty cell.
INVISIBLE = frozenset(
    [
        0x00AD,  # SOFT HYPHEN
        0x034F,  # COMBINING GRAPHEME JOINER
        0x061C,
        0x115F,  # HANGUL CHOSEONG FILLER
        0x1160,  # HANGUL JUNGSEONG FILLER
        0x17B4,  # KHMER VOWEL INHERENT AQ
        0x17B5,  # KHMER VOWEL INHERENT AA
        *range(0x180B, 0x1810),  # Mongolian free variation selectors, vowel separator
        *range(0x200B, 0x2010),  # zero-width space, (non-)joiners, directional marks
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),  # word joiner, invisible operators, isolates, deprecated
        0x2800,  # BRAILLE PATTERN BLANK
        0x3164,  # HANGUL FILLER
        *range(0xFE00, 0xFE10),  # variation selectors
        0xFEFF,  # ZERO WIDTH NO-BREAK SPACE (BOM)
        0xFFA0,  # HALFWIDTH HANGUL FILLER
        *range(0xFFF0, 0xFFF9),
        *range(0x1BCA0, 0x1BCA4),  # shorthand format controls
        *range(0x1D173, 0x1D17B),  # musical format controls
        *range(0xE0000, 0xE1000),  # tags, variation selectors supplement, reserved
    ]
)

_CATEGORY_WHY = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Zs": "a space",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a surrogate",
    "Co": "a private-use character (it looks like whatever a font makes of it)",
    "Cn": "an unassigned code point",
}

# Scripts that UTS #39 "highly restrictive" lets be written together in one identifier:
# Han with Hiragana, Katakana, Bopomofo or Hangul (here one "CJK" set), and Latin with it.
_CJK = "CJK"
_SCRIPT_ALIASES = {
    "CJK": _CJK,
    "HIRAGANA": _CJK,
    "KATAKANA": _CJK,
    "KATAKANA-HIRAGANA": _CJK,
    "HANGUL": _CJK,
    "BOPOMOFO": _CJK,
    "IDEOGRAPHIC": _CJK,
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED ARABIC-INDIC": "ARABIC",
}
_MAY_MIX = frozenset({frozenset({"LATIN", _CJK})})
# A character's name starts with its script ("CYRILLIC SMALL LETTER A", "ARABIC FATHA"),
# in one word but for these, which take two ("OLD ITALIC", "TAI THAM").
_TWO_WORD_SCRIPTS = frozenset(
    {"OLD", "NEW", "TAI", "INSCRIPTIONAL", "IMPERIAL", "CAUCASIAN", "EXTENDED", "MEETEI"}
)

# Look-alikes, from UTS #39 confusables.txt (the "MA" mappings) for Latin, Cyrillic, Greek
# and digits, plus dashes. Applied before case folding (capitals) and after it (small
# letters), so "ВОВ", "B0B" and "bob" share one skeleton. Dotted i is put with l, 1 and
# capital I: case folding turns I into i, so without it "Ivan" would pass next to "lvan".
_LOOKS_LIKE: dict[str, str] = {
    # digits and ASCII
    "0": "o",
    "1": "l",
    "I": "l",
    "i": "l",
    "|": "l",
    # Cyrillic capitals (after folding they would differ from the Latin capitals' folds)
    "\u0410": "a",  # А
    "\u0412": "b",  # В
    "\u0415": "e",  # Е
    "\u041a": "k",  # К
    "\u041c": "m",  # М
    "\u041d": "h",  # Н
    "\u041e": "o",  # О
    "\u0420": "p",  # Р
    "\u0421": "c",  # С
    "\u0422": "t",  # Т
    "\u0425": "x",  # Х
    "\u0405": "s",  # Ѕ
    "\u0406": "l",  # І
    "\u0408": "j",  # Ј
    "\u04c0": "l",  # Ӏ
    "\u0423": "y",  # У
    # Cyrillic small letters
    "\u0430": "a",  # а
    "\u0435": "e",  # е
    "\u043e": "o",  # о
    "\u0440": "p",  # р
    "\u0441": "c",  # с
    "\u0443": "y",  # у
    "\u0445": "x",  # х
    "\u0455": "s",  # ѕ
    "\u0456": "l",  # і (with i)
    "\u0458": "j",  # ј
    "\u04bb": "h",  # һ
    "\u0501": "d",  # ԁ
    "\u051b": "q",  # ԛ
    "\u051d": "w",  # ԝ
    "\u04cf": "l",  # ӏ
    # Greek capitals
    "\u0391": "a",  # Α
    "\u0392": "b",  # Β
    "\u0395": "e",  # Ε
    "\u0396": "z",  # Ζ
    "\u0397": "h",  # Η
    "\u0399": "l",  # Ι
    "\u039a": "k",  # Κ
    "\u039c": "m",  # Μ
    "\u039d": "n",  # Ν
    "\u039f": "o",  # Ο
    "\u03a1": "p",  # Ρ
    "\u03a4": "t",  # Τ
    "\u03a5": "y",  # Υ
    "\u03a7": "x",  # Χ
    # Greek small letters
    "\u03b1": "a",  # α
    "\u03b3": "y",  # γ
    "\u03b9": "l",  # ι (with i)
    "\u03bd": "v",  # ν
    "\u03bf": "o",  # ο
    "\u03c1": "p",  # ρ
    "\u03c5": "u",  # υ
    "\u03c7": "x",  # χ
    # Latin look-alikes of Latin letters
    "\u0131": "l",  # ı dotless i
    "\u01c0": "l",  # ǀ dental click
    "\u0261": "g",  # ɡ script g
    # dashes and minus signs
    "\u2010": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u02d7": "-",
    "\u06d4": "-",
}
_SKELETON_TABLE = str.maketrans(_LOOKS_LIKE)


def describe(char: str) -> str:
    """``U+0430 CYRILLIC SMALL LETTER A``: how every refusal names a character."""
    return f"U+{ord(char):04X} {unicodedata.name(char, '(no name)')}"


def normal_name(raw: str) -> str:
    """The name ``raw`` stands for: its NFKC form ("ａｌｉｃｅ" is "alice")."""
    return unicodedata.normalize("NFKC", raw)


def checked_name(raw: str, *, what: str = "name", limit: int = MAX_NAME) -> tuple[str, str | None]:
    """``raw`` normalised, and why that is no acceptable name (None when it is)."""
    if not raw:
        return raw, f"{what} is empty"
    # Measured before normalising too: NFKC may make a character 18, never work for 1 MB.
    if len(raw) > limit:
        return raw, f"{what} is longer than {limit} characters"
    if raw.isascii():  # the common case, in one pass: printable ASCII is all Latin or Common
        for char in raw:
            if not "!" <= char <= "~":
                return raw, _char_problem(char, what)
        return raw, None
    normal = normal_name(raw)
    if normal != raw:
        # The characters typed first: NFKC turns some invisible ones into others (U+3164
        # HANGUL FILLER into U+1160), and the refusal should name the one the user sent.
        for char in raw:
            problem = _char_problem(char, what)
            if problem is not None:
                return raw, problem
    return normal, _problem(normal, what, limit)


def name_problem(name: str, *, what: str = "name", limit: int = MAX_NAME) -> str | None:
    """Why ``name``, exactly as given (the wire takes only the normal form), is no acceptable
    name, or None when it is."""
    normal, problem = checked_name(name, what=what, limit=limit)
    if problem is None and normal != name:
        return f"{what} {name!r} is not in its normal form (NFKC): it is {normal!r}"
    return problem


def room_problem(room: str) -> str | None:
    """``name_problem`` for a room name."""
    return name_problem(room, what="room name", limit=MAX_ROOM)


def _problem(name: str, what: str, limit: int) -> str | None:
    if len(name) > limit:
        return f"{what} is longer than {limit} characters"
    marks = 0
    for index, char in enumerate(name):
        problem = _char_problem(char, what)
        if problem is not None:
            return problem
        if unicodedata.category(char)[0] == "M":
            if index == 0:
                return f"{what} starts with a combining mark, {describe(char)}"
            marks += 1
            if marks > MAX_MARKS:
                return (
                    f"{what} has more than {MAX_MARKS} combining marks in a row "
                    f"(the last {describe(char)})"
                )
        else:
            marks = 0
    return _script_problem(name, what)


def _char_problem(char: str, what: str) -> str | None:
    code = ord(char)
    if code in BIDI:
        return f"{what} contains a bidi control, {describe(char)}: it reorders what is shown"
    if code in INVISIBLE:
        return f"{what} contains an invisible character, {describe(char)}"
    why = _CATEGORY_WHY.get(unicodedata.category(char))
    if why is not None:
        return f"{what} contains {why}, {describe(char)}"
    return None


def script_of(char: str) -> str | None:
    """The script of a letter, digit or mark, roughly as UTS #24 says; None for Common and
    Inherited (punctuation, symbols, ASCII digits, combining marks shared by scripts)."""
    category = unicodedata.category(char)
    if category[0] not in "LMN" or category in ("Nl", "No"):
        return None
    if char < "\x80":
        return "LATIN" if char.isalpha() else None
    name = unicodedata.name(char, "")
    if not name or name.startswith(("COMBINING ", "MODIFIER ")):
        return None
    if name.startswith("CJK "):
        return _CJK
    words = name.split(" ", 2)
    script = " ".join(words[:2]) if words[0] in _TWO_WORD_SCRIPTS else words[0]
    return _SCRIPT_ALIASES.get(script, script)


def _script_problem(name: str, what: str) -> str | None:
    first: dict[str, str] = {}  # script -> its first character in the name
    for char in name:
        script = script_of(char)
        if script is not None and script not in first:
            first[script] = char
            if len(first) > 1 and frozenset(first) not in _MAY_MIX:
                shown = " and ".join(f"{s.title()} ({describe(c)})" for s, c in first.items())
                return f"{what} mixes scripts, {shown}: that is how look-alikes are made"
    return None


def skeleton(name: str) -> str:
    """What ``name`` looks like, after UTS #39's skeleton: two names with one skeleton are
    too alike for a reader to tell apart (case, 0/o, 1/l/I, Cyrillic and Greek look-alikes,
    accents on look-alikes)."""
    decomposed = unicodedata.normalize("NFKD", name).translate(_SKELETON_TABLE)
    folded = unicodedata.normalize("NFKD", decomposed.casefold()).translate(_SKELETON_TABLE)
    return unicodedata.normalize("NFC", folded)


class LookAlikes:
    """Known names by skeleton: which of them a new name would be taken for.

    One entry per name added, so it is bounded as the table it mirrors (accounts, rooms).
    Names an old log holds that look alike (accepted before these rules) all stay known, and
    each may come back: only a name not yet known is checked.
    """

    __slots__ = ("_by_skeleton", "_count")

    def __init__(self) -> None:
        # skeleton -> its name, or its names (only an old log has more than one)
        self._by_skeleton: dict[str, str | tuple[str, ...]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, name: str) -> None:
        key = skeleton(name)
        known = self._by_skeleton.get(key)
        if known is None:
            # The name itself when it is its own skeleton: no second string kept.
            self._by_skeleton[name if key == name else key] = name
        elif isinstance(known, str):
            if known == name:
                return
            self._by_skeleton[key] = (known, name)
        elif name in known:
            return
        else:
            self._by_skeleton[key] = (*known, name)
        self._count += 1

    def discard(self, name: str) -> None:
        """Forget ``name`` (an account released by the operator): its look-alikes may come."""
        key = skeleton(name)
        known = self._by_skeleton.get(key)
        if known == name:
            del self._by_skeleton[key]
        elif isinstance(known, tuple) and name in known:
            rest = tuple(n for n in known if n != name)
            self._by_skeleton[key] = rest[0] if len(rest) == 1 else rest
        else:
            return
        self._count -= 1

    def similar(self, name: str) -> str | None:
        """The earliest known name that ``name`` looks like, unless ``name`` is known."""
        known = self._by_skeleton.get(skeleton(name))
        if known is None or known == name:
            return None
        if isinstance(known, str):
            return known
        return None if name in known else known[0]


def look_alike_problem(name: str, known: LookAlikes, *, what: str = "name") -> str | None:
    """Why ``name`` may not be taken next to the names ``known`` holds, or None."""
    twin = known.similar(name)
    if twin is None:
        return None
    return f"{what} {name!r} is too similar to {twin!r}, which exists: choose another"


def text_problem(text: str) -> str | None:
    if len(text) > MAX_TEXT:
        return f"message is longer than {MAX_TEXT} characters"
    if not text.strip():
        return "message is empty"
    return None
