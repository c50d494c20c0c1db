"""``/password``: the new password, asked twice in masked fields (never in the composer, its
history or the scrollback), checked for length before anything is sent."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tchat.core.messages import password_problem


class PasswordPrompt(ModalScreen[str]):
    """Dismisses with the new password, or "" when the user gives up (Escape)."""

    BINDINGS = [Binding("escape", "give_up", "cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="password-box"):
            yield Label(
                "New password for this account (it lets you log in from another machine "
                "with --password-prompt). Escape cancels.",
                id="password-title",
            )
            yield Input(placeholder="new password", password=True, id="password-new")
            yield Input(placeholder="the same again", password=True, id="password-again")
            yield Label("", id="password-error")

    def on_mount(self) -> None:
        self.query_one("#password-new", Input).focus()

    @on(Input.Submitted, "#password-new")
    def _next(self) -> None:
        self.query_one("#password-again", Input).focus()

    @on(Input.Submitted, "#password-again")
    def _chosen(self) -> None:
        first = self.query_one("#password-new", Input).value
        second = self.query_one("#password-again", Input).value
        problem = password_problem(first) or (
            None if first == second else "the two passwords differ: type them again"
        )
        if problem:
            self.query_one("#password-error", Label).update(Text(problem))
            for field in self.query(Input):
                field.value = ""
            self.query_one("#password-new", Input).focus()
            return
        self.dismiss(first)

    def action_give_up(self) -> None:
        self.dismiss("")
