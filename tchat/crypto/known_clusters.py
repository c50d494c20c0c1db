"""The client's pinned cluster keys, like SSH's known_hosts: trust on first use, then insist.

File ``client_data_dir()/known_clusters`` (0600, at most ``MAX_FILE`` bytes), one pin a
line, ``#`` comments and blank lines allowed::

    <label> <fingerprint> <base64 public key> <added ISO date>
    lan SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU AAAA...= 2026-12-03T06:00:00+00:00

The label names a cluster as the user knows it (``default``, or one per ``--cluster``);
the fingerprint must match the key (a line where it does not is malformed). A malformed
line is reported in ``problems`` and kept verbatim when the file is rewritten; the other
lines still count. ``check``/``pin`` raise ``KeyChanged`` when a label already holds
another key: the client stops and tells the user how to verify and accept the new one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tchat.crypto.cluster import ClusterPublicKey
from tchat.crypto.errors import CryptoError, Reason
from tchat.crypto.keyfiles import (
    KeyFileError,
    client_data_dir,
    read_secret_file,
    write_secret_file,
)

KNOWN_CLUSTERS_FILE = "known_clusters"
MAX_FILE = 256 * 1024
MAX_PINS = 1024
MAX_LABEL = 64


class KeyChanged(CryptoError):
    """A cluster answered with a key other than the one pinned under its label."""

    def __init__(self, label: str, pinned: ClusterPublicKey, offered: ClusterPublicKey, path: Path):
        super().__init__(
            f"the key of cluster '{label}' has CHANGED.\n"
            f"  pinned:  {pinned.fingerprint}\n"
            f"  offered: {offered.fingerprint}\n"
            "Someone may be impersonating the cluster, or its secret was rotated.\n"
            "Check on a server host with `tchat status` or `tchat key show`; if the offered\n"
            f"fingerprint is the cluster's, accept it with `tchat key forget {label}`\n"
            f"(or delete the line '{label} ...' from {path}) and connect again.",
            Reason.BAD_SIGNATURE,
        )
        self.label = label
        self.pinned = pinned
        self.offered = offered


@dataclass(frozen=True, slots=True)
class Pin:
    """One pinned cluster key."""

    label: str
    key: ClusterPublicKey
    added: str

    def line(self) -> str:
        """The pin as a line of the file."""
        encoded = base64.b64encode(self.key.raw).decode("ascii")
        return f"{self.label} {self.key.fingerprint} {encoded} {self.added}"


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot name a pin, or None."""
    if not 1 <= len(label) <= MAX_LABEL:
        return f"a label is 1..{MAX_LABEL} characters"
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in label):
        return "a label is printable ASCII without spaces"
    if label.startswith("#"):
        return "a label does not start with '#'"
    return None


def _parse(line: str) -> Pin:
    parts = line.split()
    if len(parts) != 4:
        raise CryptoError("expected '<label> <fingerprint> <base64 key> <date>'")
    label, fp, encoded, added = parts
    problem = label_problem(label)
    if problem:
        raise CryptoError(problem)
    try:
        key = ClusterPublicKey(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise CryptoError("the key is not 32 bytes of base64") from None
    if key.fingerprint != fp:
        raise CryptoError("the fingerprint does not match the key")
    try:
        datetime.fromisoformat(added)
    except ValueError:
        raise CryptoError("the date is not ISO 8601") from None
    return Pin(label, key, added)


class KnownClusters:
    """The pins of one file; ``problems`` lists the lines that were not understood."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path = path
        self._lines: list[str] = []
        self._pins: dict[str, Pin] = {}
        self.problems: list[str] = []
        self._take(lines)

    def _take(self, lines: list[str]) -> None:
        path = self.path
        self._lines = lines
        self._pins = {}
        self.problems = []
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                pin = _parse(text)
            except CryptoError as exc:
                self.problems.append(f"{path}:{number}: {exc}")
                continue
            if pin.label in self._pins:
                self.problems.append(f"{path}:{number}: label {pin.label} pinned twice; first wins")
            elif len(self._pins) >= MAX_PINS:
                self.problems.append(f"{path}:{number}: more than {MAX_PINS} pins; ignored")
            else:
                self._pins[pin.label] = pin

    @classmethod
    def load(cls, path: Path | None = None) -> KnownClusters:
        """Read the pin file (absent: no pins); KeyFileError if it is unsafe or too large."""
        path = client_data_dir() / KNOWN_CLUSTERS_FILE if path is None else path
        return cls(path, _read_lines(path))

    def reload(self) -> None:
        """Read the file again (another client of the same user may have pinned since)."""
        self._take(_read_lines(self.path))

    def __len__(self) -> int:
        return len(self._pins)

    def lookup(self, label: str) -> Pin | None:
        """The pin under ``label``, if any."""
        return self._pins.get(label)

    def find_fingerprint(self, fingerprint: str) -> Pin | None:
        """The pin whose key has ``fingerprint`` (for ``--cluster FINGERPRINT``), if any."""
        return next((p for p in self._pins.values() if p.key.fingerprint == fingerprint), None)

    def check(self, label: str, offered: ClusterPublicKey) -> Pin | None:
        """The matching pin; None if ``label`` is not pinned; KeyChanged if it holds another key."""
        pin = self._pins.get(label)
        if pin is not None and pin.key != offered:
            raise KeyChanged(label, pin.key, offered, self.path)
        return pin

    def pin(self, label: str, key: ClusterPublicKey, now: datetime) -> Pin:
        """Pin ``key`` under ``label`` on first use and save; KeyChanged if it holds another key."""
        problem = label_problem(label)
        if problem:
            raise ValueError(problem)
        # Re-read first: a pin written by another client since we loaded must win, not vanish.
        self.reload()
        held = self.check(label, key)
        if held is not None:
            return held
        if len(self._pins) >= MAX_PINS:
            raise CryptoError(f"{self.path} already holds {MAX_PINS} pins")
        pin = Pin(label, key, now.isoformat(timespec="seconds"))
        self._save([*self._lines, pin.line()])
        self._pins[label] = pin
        return pin

    def forget(self, label: str) -> bool:
        """Drop the pin under ``label`` (``tchat key forget``) and save; False if there was none."""
        self.reload()
        if label not in self._pins:
            return False
        kept = [line for line in self._lines if line.split()[:1] != [label]]
        self._save(kept)
        del self._pins[label]
        return True

    def _save(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        if len(data) > MAX_FILE:
            raise CryptoError(f"{self.path} would exceed {MAX_FILE} bytes")
        write_secret_file(self.path, data, exclusive=False, max_size=MAX_FILE)
        self._lines = lines


def _read_lines(path: Path) -> list[str]:
    try:
        data = read_secret_file(path, MAX_FILE)
    except KeyFileError as exc:
        if exc.reason is not Reason.MISSING:
            raise
        return []
    return data.decode("utf-8", errors="replace").splitlines()
