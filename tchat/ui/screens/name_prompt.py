"""First start without --user: ask for a name (validated like the protocol validates it)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tchat.core.messages import MAX_NAME
from tchat.ui.commands import name_or_problem
from tchat.ui.sanitize import sanitize


class NamePrompt(ModalScreen[str]):
    """Dismisses with the chosen name; ``problem`` says why a previous name was refused."""

    def __init__(self, problem: str = "") -> None:
        super().__init__()
        self.problem = problem

    def compose(self) -> ComposeResult:
        with Vertical(id="name-box"):
            yield Label("Welcome to tchat. Pick a user name:", id="name-title")
            yield Input(
                placeholder="name (no spaces, no leading # @ /)",
                id="name-input",
                max_length=MAX_NAME,
            )
            yield Label(Text(sanitize(self.problem)), id="name-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _chosen(self, message: Input.Submitted) -> None:
        name, problem = name_or_problem(message.value.strip(), MAX_NAME)
        if problem:
            # The reason names the character (U+XXXX and its name): the input may hide it.
            self.query_one("#name-error", Label).update(Text(sanitize(problem)))
            return
        self.dismiss(name)  # its normal form: "ａｌｉｃｅ" is "alice"
