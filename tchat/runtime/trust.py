"""Which cluster keys a node takes: a server its own (and during a rotation the other
secret's), a client its pin, pinned on first use, and the keys that pin vouches for (a rotation)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from tchat.crypto.certificate import CertificateCache, ServerCertificate
from tchat.crypto.cluster import BACK, FORWARD, VOUCH_SIZE, ClusterPublicKey
from tchat.crypto.errors import CryptoError
from tchat.crypto.known_clusters import KeyChanged, KnownClusters

logger = logging.getLogger(__name__)

MAX_VOUCHED_KEYS = 4  # keys a client takes on vouches in one run (a rotation needs one)


class ClusterTrust:
    """Which cluster key an initiator accepts from a server: ``key``, and during a
    rotation a server also takes the ``also`` keys (its other secret's)."""

    def __init__(
        self, key: ClusterPublicKey | None = None, also: tuple[ClusterPublicKey, ...] = ()
    ) -> None:
        self.key = key
        self.also = also
        self._caches: dict[bytes, CertificateCache] = {}

    @property
    def accepted(self) -> tuple[ClusterPublicKey, ...]:
        """Every cluster key taken, ``key`` first."""
        return (self.key, *self.also) if self.key is not None else self.also

    def certificates(self, key: ClusterPublicKey) -> CertificateCache:
        """Certificates verified under ``key``: a process of many clients (a load
        generator) or a server meeting its peers again checks each signature once."""
        cache = self._caches.get(key.raw)
        if cache is None:
            if len(self._caches) > len(self.also):  # the keys taken, plus the last offered
                self._caches.clear()
            cache = self._caches[key.raw] = CertificateCache(key)
        return cache

    def check(self, offered: ClusterPublicKey) -> None:
        """Raises CryptoError (KeyChanged for a pinned key) if ``offered`` is not ours."""
        if all(offered.raw != key.raw for key in self.accepted):
            raise CryptoError(f"the server belongs to cluster {offered.fingerprint}, not ours")

    def take_vouched(self, offered: ClusterPublicKey, vouch: bytes) -> bool:
        """A key we trust vouches for ``offered``: take it too (clients; a server takes
        only the keys of the secrets it holds). True if ``offered`` is now taken."""
        return False


class PinnedTrust(ClusterTrust):
    """A client's trust: the pin for this cluster, pinned on first use (or ``--cluster``)."""

    def __init__(self, pins: KnownClusters, label: str, expected: str | None) -> None:
        pin = pins.lookup(label)
        super().__init__(pin.key if pin is not None else None)
        self.pins = pins
        self.label = label
        self.expected = expected  # --cluster FINGERPRINT: only this key, pinned if new

    def check(self, offered: ClusterPublicKey) -> None:
        if self.expected is not None and offered.fingerprint != self.expected:
            raise CryptoError(
                f"the server's cluster key {offered.fingerprint} is not the one given with "
                f"--cluster ({self.expected})"
            )
        if self.key is None or (self.expected is not None and offered.raw != self.key.raw):
            # First use, or the user named this key with --cluster: it replaces the pin.
            if self.key is not None:
                self.pins.forget(self.label)
            self.pins.pin(self.label, offered, datetime.now(UTC))  # KeyChanged if raced
            self.key = offered
            logger.warning(
                "pinned cluster %s with key %s in %s (first use)",
                self.label,
                offered.fingerprint,
                self.pins.path,
            )
            return
        if offered.raw != self.key.raw and all(offered.raw != k.raw for k in self.also):
            raise KeyChanged(self.label, self.key, offered, self.pins.path)

    def take_vouched(self, offered: ClusterPublicKey, vouch: bytes) -> bool:
        """The cluster is rotating its secret: ``offered`` comes with a vouch by a key we
        trust (our pin, or one taken in this run). Forward (a switched server: the key we
        trust names ``offered`` its successor): take it, pin it, and keep taking the keys
        trusted before (servers not yet switched still present them). Back (a server not
        switched yet: the key we trust names ``offered`` the key it replaces): take it for
        this run only; the pin never moves back to a key on its way out."""
        if len(vouch) != VOUCH_SIZE or self.key is None or self.expected is not None:
            return False
        if any(offered.raw == k.raw for k in self.accepted):
            return True
        voucher = vouch[:32]
        trusted = next((k for k in self.accepted if k.raw == voucher), None)
        if trusted is None:
            return False
        direction = trusted.vouch_direction(offered, vouch[32:])
        if direction is None:
            return False
        if len(self.also) >= MAX_VOUCHED_KEYS:
            return False  # a rotation needs one; more in one run is not one
        if direction == BACK:
            self.also = (*self.also, offered)
            logger.info(
                "cluster %s: taking %s for this run, the key %s replaces (a server not"
                " switched yet); the pin stays",
                self.label,
                offered.fingerprint,
                trusted.fingerprint,
            )
            return True
        assert direction == FORWARD
        previous = self.key
        self.pins.forget(self.label)
        self.pins.pin(self.label, offered, datetime.now(UTC))
        self.key, self.also = offered, (*self.also, previous)
        logger.warning(
            "cluster %s rotated its key: %s, vouched for by %s that was pinned; pinned the"
            " new key in %s",
            self.label,
            offered.fingerprint,
            previous.fingerprint,
            self.pins.path,
        )
        return True


_trusts: dict[tuple[Path, str, str | None], PinnedTrust] = {}


def pinned_trust(label: str, expected: str | None, path: Path | None = None) -> PinnedTrust:
    """The process's trust for ``label``: clients of one process share their pin."""
    pins = KnownClusters.load(path)
    key = (pins.path, label, expected)
    trust = _trusts.get(key)
    if trust is None:
        trust = _trusts[key] = PinnedTrust(pins, label, expected)
    return trust


def rotations(keys: Mapping[str, ClusterPublicKey], vouches: Mapping[str, bytes]) -> dict[str, str]:
    """Clusters heard under the two keys of one rotation (an unpinned client or ``tchat
    status`` hears both while servers restart): fingerprint -> the fingerprint of the
    rotation's new key (the new key maps to itself). A pair counts only when one key's
    vouch for the other verifies: the holder of the one secret endorsed the other, so a
    rogue cannot join a real cluster's group, nor the real cluster a rogue's."""
    by_raw = {key.raw: fp for fp, key in keys.items()}
    joined: dict[str, str] = {}
    for fp in sorted(vouches):
        vouch = vouches[fp]
        other = by_raw.get(vouch[:32]) if len(vouch) == VOUCH_SIZE else None
        if fp not in keys or other is None or other == fp or fp in joined or other in joined:
            continue
        direction = keys[other].vouch_direction(keys[fp], vouch[32:])
        if direction is not None:
            joined[fp] = joined[other] = fp if direction == FORWARD else other
    return joined


def verify_under_any(trust: ClusterTrust, blob: bytes, now: float) -> ServerCertificate:
    """A peer server's certificate under any cluster key we take (during a rotation a peer
    may already certify with the next secret); the first key's error if none verifies."""
    first: CryptoError | None = None
    for key in trust.accepted:
        try:
            return trust.certificates(key).verify(blob, now)
        except CryptoError as exc:
            first = first or exc
    raise first or CryptoError("no cluster key to verify a peer with")
