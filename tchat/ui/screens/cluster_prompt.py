"""Several clusters answered and none is pinned: list them and let the user pick one."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tchat.core.effects import ClusterOffer
from tchat.ui.sanitize import sanitize

MAX_PREFIX = 64  # "SHA256:" and 43 base64 characters, with room to spare


def offer_line(offer: ClusterOffer) -> str:
    servers = ", ".join(offer.servers)
    return sanitize(f"{offer.fingerprint}  servers: {servers}  leader: {offer.leader_addr or '-'}")


class ClusterPrompt(ModalScreen[str]):
    """Dismisses with the chosen cluster's fingerprint once ``choose`` accepted a prefix.

    ``choose`` is the service's (``ClusterChooserLike.choose_cluster``): it pins the cluster
    whose fingerprint starts with the prefix, or returns None when no single one does.
    """

    def __init__(
        self, offers: tuple[ClusterOffer, ...], choose: Callable[[str], str | None]
    ) -> None:
        super().__init__()
        self.offers = offers
        self.choose = choose

    def compose(self) -> ComposeResult:
        with Vertical(id="cluster-box"):
            yield Label(
                f"{len(self.offers)} clusters answered. A rogue may answer first: check the "
                "fingerprint on a server host (`tchat key show`), then type its start:",
                id="cluster-title",
            )
            for offer in self.offers:
                yield Label(Text(offer_line(offer)), classes="cluster-offer")
            yield Input(placeholder="fingerprint prefix", id="cluster-input", max_length=MAX_PREFIX)
            yield Label("", id="cluster-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _chosen(self, message: Input.Submitted) -> None:
        chosen = self.choose(message.value.strip())
        if chosen is None:
            self.query_one("#cluster-error", Label).update(
                "no single cluster above starts with that: type more of its fingerprint"
            )
            return
        self.dismiss(chosen)
