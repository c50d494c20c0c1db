"""The Clocks tab: this node's vector clock and a space-time diagram of recent messages."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from tchat.core.messages import Chat, Entry
from tchat.core.vclock import VectorClock
from tchat.ui.causality import causal_relation, clock_text, happened_before
from tchat.ui.sanitize import sanitize
from tchat.ui.widgets.message_view import sender_slot

LANES = 6  # senders drawn as lanes; more share the last one
SHOWN = 14  # messages in the diagram


class ClockView(Widget):
    """Set ``clock`` and ``entries`` (attributes down), then ``refresh()``."""

    COMPONENT_CLASSES = {
        "clock-view--title",
        "clock-view--concurrent",
        "clock-view--before",
        *(f"clock-view--sender-{i}" for i in range(8)),
    }

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.clock = VectorClock()
        self.entries: Sequence[Entry] = ()
        self.title = "this node's vector clock"

    def render(self) -> Text:
        style = self.get_component_rich_style
        out = Text(end="")
        out.append(self.title + ": ", style("clock-view--title"))
        out.append(clock_text(self.clock) + "\n\n")
        entries = [e for e in self.entries if isinstance(e.body, Chat)][-SHOWN:]
        if not entries:
            out.append("no messages yet")
            return out
        senders: list[str] = []
        for entry in entries:
            name = entry.body.sender  # type: ignore[attr-defined]
            if name not in senders:
                senders.append(name)
        lanes = senders[:LANES]
        out.append(
            "space-time (one lane per sender, time flows down)\n", style("clock-view--title")
        )
        header = "".join(sanitize(n)[:9].ljust(10) for n in lanes)
        out.append("      " + header + "\n")
        for index, entry in enumerate(entries):
            body = entry.body
            assert isinstance(body, Chat)
            lane = lanes.index(body.sender) if body.sender in lanes else LANES - 1
            knows = [f"m{j}" for j in range(index) if happened_before(entries[j], entry)]
            conc = [
                f"m{j}"
                for j in range(len(entries))
                if j != index and causal_relation(entries[j], entry) == "||"
            ]
            out.append(f"m{index:<3}  ")
            for col in range(len(lanes)):
                if col == lane:
                    out.append("●", style(f"clock-view--sender-{sender_slot(body.sender)}"))
                    out.append(" " * 9)
                else:
                    out.append("│" + " " * 9)
            out.append(f"{entry.id:<7} sent at {clock_text(body.sender_clock)}")
            if knows:
                out.append("  after " + ",".join(knows[-3:]), style("clock-view--before"))
            if conc:
                out.append("  ‖ " + ",".join(conc[:4]), style("clock-view--concurrent"))
            out.append("\n")
        pairs = [
            (i, j)
            for i in range(len(entries))
            for j in range(i + 1, len(entries))
            if causal_relation(entries[i], entries[j]) == "||"
        ]
        out.append(f"\nconcurrent pairs: {len(pairs)}", style("clock-view--concurrent"))
        if pairs:
            out.append("  " + " ".join(f"m{i}‖m{j}" for i, j in pairs[:12]))
        return out
