"""STAND-IN for tchat/crypto/known_clusters.py (branch `keys`): the lead replaces it at merge.

The planned interface only: a pin file of lines ``<label> <fingerprint> <base64 key>
<added>``, ``KnownClusters.lookup(label)``, ``.pin(label, key)`` and ``KeyChanged``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from pathlib import Path

from tchat.crypto.cluster import ClusterPublicKey
from tchat.crypto.errors import CryptoError
from tchat.crypto.keyfiles import client_data_dir, write_secret_file

MAX_PIN_FILE = 64 * 1024


class KeyChanged(CryptoError):
    """The cluster answered with a key other than the one pinned for it."""

    def __init__(self, label: str, pinned: str, offered: str, path: Path) -> None:
        super().__init__(
            f"the cluster {label!r} now presents key {offered}, but {pinned} is pinned in "
            f"{path}. Someone may be impersonating it, or its secret was changed. Check the "
            f"fingerprint on a server host (`tchat status` there, or `tchat key show`); to "
            f"accept the new key, delete the line for {label!r} from {path} (or run with "
            f"--cluster {offered})."
        )
        self.label, self.pinned, self.offered = label, pinned, offered


class KnownClusters:
    """The client's pinned cluster keys (first use pins, like SSH known_hosts)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or client_data_dir() / "known_clusters"

    def _lines(self) -> list[str]:
        try:
            data = self.path.read_bytes()[:MAX_PIN_FILE]
        except FileNotFoundError:
            return []
        return data.decode("utf-8", "replace").splitlines()

    def lookup(self, label: str) -> ClusterPublicKey | None:
        for line in self._lines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == label:
                try:
                    return ClusterPublicKey(base64.b64decode(parts[2], validate=True))
                except (binascii.Error, ValueError):
                    continue  # a malformed line is not fatal for the others
        return None

    def pin(self, label: str, key: ClusterPublicKey) -> None:
        added = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raw = base64.b64encode(key.raw).decode("ascii")
        kept = [line for line in self._lines() if line.split()[:1] != [label]]
        lines = [*kept, f"{label} {key.fingerprint} {raw} {added}"]
        write_secret_file(self.path, ("\n".join(lines) + "\n").encode(), exclusive=False)
