"""Which cluster an unpinned client follows: all that answer are heard, none taken silently.

A client with no pin for its discovery label (and no ``--cluster``) hears discovery replies
for ``CHOICE_WINDOW`` seconds after the first one, grouped by the cluster key they are
signed under. One cluster: pinned on first use (TOFU) and followed. Two keys of one
rotation (one vouches for the other: ``trust.rotations``) are one cluster: the new key is
pinned, the old one taken for the run. More than one: the user chooses (the Textual
client shows them; the headless client reports them and stops), because the first to
answer may be a rogue. A pinned client never gets here: its datagrams from other clusters
are refused by ``ClientDatagrams`` (``unknown-cluster``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tchat.core.effects import ClusterChoiceNeeded, ClusterOffer, ClusterPinned
from tchat.core.messages import DiscoverReply, Message
from tchat.crypto.cluster import ClusterPublicKey
from tchat.crypto.errors import CryptoError
from tchat.crypto.known_clusters import KeyChanged
from tchat.runtime.connection import DropCounters
from tchat.runtime.datagram_auth import Heard
from tchat.runtime.secure import ClusterTrust
from tchat.runtime.trust import rotations

logger = logging.getLogger(__name__)

CHOICE_WINDOW = 0.5  # seconds of listening after the first reply (all of a LAN answers in ms)
MAX_CLUSTERS = 16  # clusters listed at most: more is a flood, not a LAN
MAX_SERVERS_SHOWN = 32


class ChoiceState(enum.Enum):
    LISTENING = "listening"  # no reply yet, or within the window
    ASKING = "asking"  # several clusters: waiting for the user
    DECIDED = "decided"  # pinned: replies pass


@dataclass
class _Heard:
    key: ClusterPublicKey
    reply: DiscoverReply
    peer: str
    servers: set[str]
    vouch: bytes = b""  # a rotating server's vouch (checked by trust.rotations)


def describe(offers: tuple[ClusterOffer, ...]) -> str:
    """The listing a user reads to choose (and how to choose on the command line)."""
    lines = [
        f"{len(offers)} different clusters answered discovery; not picking one silently "
        "(a rogue may answer first). Check the fingerprint on a server host "
        "(`tchat key show`) and run again with --cluster FINGERPRINT:"
    ]
    for offer in offers:
        servers = ", ".join(offer.servers)
        lines.append(
            f"  {offer.fingerprint}  servers: {servers}  leader: {offer.leader_addr or '-'}"
        )
    return "\n".join(lines)


class ClusterChoice:
    """Holds an unpinned client's discovery replies until one cluster is chosen."""

    def __init__(
        self,
        trust: ClusterTrust,
        deliver: Callable[[Message, str], None],
        ask: Callable[[ClusterChoiceNeeded], None],
        drops: DropCounters,
        window: float = CHOICE_WINDOW,
    ) -> None:
        self.trust = trust
        self.deliver = deliver
        self.ask = ask
        self.drops = drops
        self.window = window
        self.heard: dict[str, _Heard] = {}
        self.state = ChoiceState.DECIDED if trust.key is not None else ChoiceState.LISTENING
        self._timer: asyncio.TimerHandle | None = None
        # A pinned client hearing only another cluster: has its cluster's key changed?
        self.key_changed: Callable[[KeyChanged], None] | None = None
        self.pinned: Callable[[ClusterPinned], None] | None = None  # told of a first-use pin
        self._foreign: ClusterPublicKey | None = None
        self._pin_heard = False
        self._key_timer: asyncio.TimerHandle | None = None

    def offer(self, message: Message, peer: str, heard: Heard) -> bool:
        """Whether the node sees ``message`` now (False: held for the choice, or refused)."""
        if self.state is ChoiceState.DECIDED or self.trust.key is not None:
            self._pin_heard = True
            return True
        if heard.cluster is None:
            return False
        if getattr(self.trust, "expected", None) is not None:
            # --cluster named this key (ClientDatagrams refused every other): pin and go.
            return self._take(heard.cluster)
        if not isinstance(message, DiscoverReply):
            # Until a cluster is chosen we follow nobody's announcements.
            self.drops.count("unpinned", peer, type(message).__name__)
            return False
        fingerprint = heard.cluster.fingerprint
        entry = self.heard.get(fingerprint)
        if entry is None:
            if len(self.heard) >= MAX_CLUSTERS:
                self.drops.count("too-many-clusters", peer, fingerprint)
                return False
            entry = self.heard[fingerprint] = _Heard(heard.cluster, message, peer, set())
        if len(entry.servers) < MAX_SERVERS_SHOWN:
            entry.servers.add(message.addr)
        # The latest view of that cluster is the one to follow once chosen.
        entry.reply, entry.peer = message, peer
        entry.vouch = heard.vouch or entry.vouch
        if self._timer is None and self.state is ChoiceState.LISTENING:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._decide)
        return False

    def offers(self) -> tuple[ClusterOffer, ...]:
        return tuple(
            ClusterOffer(
                fp,
                tuple(sorted(entry.servers)),
                entry.reply.leader_addr,
                str(entry.reply.epoch),
            )
            for fp, entry in sorted(self.heard.items())
        )

    def _decide(self) -> None:
        self._timer = None
        if self.state is not ChoiceState.LISTENING:
            return
        if len(self.heard) == 1:
            (entry,) = self.heard.values()
            self._choose(entry)
            return
        joined = rotations(
            {fp: entry.key for fp, entry in self.heard.items()},
            {fp: entry.vouch for fp, entry in self.heard.items() if entry.vouch},
        )
        new_keys = {joined.get(fp, fp) for fp in self.heard}
        if len(new_keys) == 1:
            self._choose_rotating(self.heard[new_keys.pop()])
            return
        self.state = ChoiceState.ASKING
        offers = self.offers()
        text = describe(offers)
        logger.error("%s", text)
        self.ask(ClusterChoiceNeeded(offers, text))

    def choose(self, prefix: str) -> str | None:
        """The user picked the cluster whose fingerprint starts with ``prefix``: its full
        fingerprint once pinned, or None when no single cluster matches."""
        prefix = prefix.strip()
        if not prefix or self.state is not ChoiceState.ASKING:
            return None
        if not prefix.startswith("SHA256:"):
            prefix = "SHA256:" + prefix
        matches = [entry for fp, entry in self.heard.items() if fp.startswith(prefix)]
        if len(matches) != 1:
            return None
        return self._choose(matches[0])

    def _choose_rotating(self, new: _Heard) -> None:
        """A cluster heard in the middle of a secret rotation: pin its new key; the servers
        not switched yet (their step-1 vouch: the new key names theirs the one it replaces)
        are taken for this run, without the pin moving back to a key on its way out."""
        old = [entry for entry in self.heard.values() if entry is not new]
        if self._choose(new) is None:
            return
        for entry in old:
            if not self.trust.take_vouched(entry.key, entry.vouch):
                logger.warning(
                    "cluster %s is rotating from %s, whose servers sent no vouch by the new"
                    " key: they are not followed",
                    new.key.fingerprint,
                    entry.key.fingerprint,
                )

    def _choose(self, entry: _Heard) -> str | None:
        if not self._take(entry.key):
            return None
        self.deliver(entry.reply, entry.peer)
        self.heard.clear()
        return entry.key.fingerprint

    def _take(self, key: ClusterPublicKey) -> bool:
        """Pin ``key`` (first use) and let its replies through."""
        first = self.trust.key is None
        try:
            self.trust.check(key)
        except CryptoError as exc:
            logger.error("cannot take cluster %s: %s", key.fingerprint, exc)
            return False
        if first:
            text = f"pinned cluster {key.fingerprint} (first use)"
            logger.warning("%s", text)
            if self.pinned is not None:
                self.pinned(ClusterPinned(key.fingerprint, text))
        self.state = ChoiceState.DECIDED
        return True

    def foreign(self, key: ClusterPublicKey) -> None:
        """A pinned client heard a genuine, fresh reply from another cluster. If its own
        stays silent for the window, the pinned key may have been replaced (or the real
        cluster is down and an impostor answers): stop and say how to check, like SSH."""
        if self.key_changed is None or self.trust.key is None or self._key_timer is not None:
            return
        self._foreign = key
        self._pin_heard = False
        loop = asyncio.get_running_loop()
        self._key_timer = loop.call_later(2 * self.window, self._check_key)

    def _check_key(self) -> None:
        self._key_timer = None
        pinned, offered = self.trust.key, self._foreign
        if self._pin_heard or pinned is None or offered is None or self.key_changed is None:
            return
        label = getattr(self.trust, "label", "?")
        pins = getattr(self.trust, "pins", None)
        path = pins.path if pins is not None else Path("known_clusters")
        self.key_changed(KeyChanged(label, pinned, offered, path))

    def close(self) -> None:
        for timer in (self._timer, self._key_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._key_timer = None
