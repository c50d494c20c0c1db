"""What asks for the user's attention: the connection's outages and notifications (no Textual)."""

from __future__ import annotations

from dataclasses import dataclass

from tchat.ui.sanitize import sanitize

OUTAGE_GRACE = 1.0  # seconds of RESUMING before it counts as an outage (a gap repair is quicker)
NOTIFY_LEVELS = ("all", "mentions", "none")
DESKTOP_KINDS = ("off", "osc9", "osc777")
_NOTE_MAX = 160  # characters of a desktop notification's body


@dataclass(slots=True)
class ConnectionWatch:
    """Tracks whether a leader answers; says when an outage starts and ends, once each."""

    served: bool = False  # welcomed at least once: before that, silence is just startup
    since: float | None = None  # when the leader stopped answering
    announced: bool = False  # the outage line was written
    detail: str = ""

    def changed(self, state: str, detail: str, now: float) -> str | None:
        """A ConnectionChanged: returns the line to write in the conversations, if any."""
        state = state.lower()
        if state == "serving":
            line = None
            if self.since is not None and self.announced:
                line = f"-- reconnected after {now - self.since:.0f}s --"
            self.served, self.since, self.announced = True, None, False
            return line
        if state in ("failed", "closed"):
            self.since, self.announced = None, False
            return None
        if not self.served or self.since is not None:
            return None
        self.since, self.detail = now, detail
        # DISCOVERING means the leader is gone; RESUMING may be a quick repair: wait a little.
        return self._announce() if state == "discovering" else None

    def tick(self, now: float) -> str | None:
        if self.since is not None and not self.announced and now - self.since >= OUTAGE_GRACE:
            return self._announce()
        return None

    def _announce(self) -> str:
        self.announced = True
        why = f" ({self.detail})" if self.detail else ""
        return f"-- disconnected{why}, retrying --"

    def status(self, now: float) -> str | None:
        """The status bar's state while disconnected, else None."""
        if self.since is None or not self.announced:
            return None
        return f"disconnected, retrying ({max(0.0, now - self.since):.0f}s)"


def should_alert(level: str, *, mention: bool, private: bool) -> bool:
    """Bell (and desktop note) for a message from someone else, by the conversation's level."""
    if level == "all":
        return True
    if level == "mentions":
        return mention or private
    return False


def desktop_note(kind: str, title: str, body: str) -> str:
    """The OSC 9 or OSC 777 sequence for a notification, or "" when off.

    Network text goes into a terminal escape here: it is sanitised (no ESC, BEL or C1 can
    end the sequence early), ';' is replaced (OSC 777 splits fields on it) and it is cut short.
    """
    if kind not in ("osc9", "osc777"):
        return ""

    def clean(text: str) -> str:
        flat = sanitize(text.replace("\n", " ")).replace(";", ",")
        flat = "".join(ch for ch in flat if ch.isprintable())
        return flat if len(flat) <= _NOTE_MAX else flat[: _NOTE_MAX - 1] + "…"

    if kind == "osc9":
        return f"\x1b]9;{clean(title)}: {clean(body)}\x07"
    return f"\x1b]777;notify;{clean(title)};{clean(body)}\x07"
