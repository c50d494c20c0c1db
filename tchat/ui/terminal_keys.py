"""Two keys a chat client needs that Textual's xterm parser reads otherwise: Alt+1..9, Alt+Enter.

In xterm and tmux (no kitty keyboard protocol) Alt+key arrives as ESC followed by the key.
Textual maps ESC 1..9 to the characters macOS's Option key types on WezTerm ("¡", "™",
"£"...), so Alt+1 typed "¡" instead of opening conversation 1 as in irssi and weechat; and
it drops the Alt of ESC CR, so Alt+Enter was a plain Enter and sent the line. Both are
remapped here, once per process, in Textual's sequence table. A literal "£" from a UK
keyboard comes without the ESC and is untouched; an Escape then an Enter pressed within
Textual's escape delay (0.1 s) reads as Alt+Enter.
"""

from __future__ import annotations

from enum import Enum


class ChatKey(Enum):
    """Key names for sequences Textual has no ``Keys`` member for (its table wants ``.value``)."""

    ALT_ENTER = "alt+enter"


def fix_terminal_keys() -> None:
    from textual._ansi_sequences import ANSI_SEQUENCES_KEYS

    table = ANSI_SEQUENCES_KEYS  # a plain dict in Textual, typed as a Mapping
    for digit in "123456789":
        table.pop(f"\x1b{digit}", None)  # type: ignore[attr-defined]
    table["\x1b\r"] = (ChatKey.ALT_ENTER,)  # type: ignore[index]
