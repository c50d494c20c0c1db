"""A node's secrets and private files: the cluster key file, mode checks, private dirs."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "cluster.key"  # in a server's data dir
KEY_BYTES = 32  # random bytes of a generated key (base64: 44 characters)
MAX_KEY_FILE = 4096  # bytes read from a key file at most: a key is one short line
MAX_KEY_CHARS = 1024
MIN_GOOD_KEY = 16  # a shorter secret is taken, with a warning: it can be guessed
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's companions of the database: they hold the same data (the WAL, recent pages).
DB_FILES = ("tchat.db", "tchat.db-wal", "tchat.db-shm")


class SecretFileError(ValueError):
    """A secret file (or value) we must not use: loose mode, wrong owner, bad content."""


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def check_private(st: os.stat_result, path: Path, what: str) -> None:
    """Refuse a secret file that anyone but its owner could read or that is not ours.

    Refused, not tightened: the secret may already have leaked, and only the operator
    can tell (as ssh refuses a private key that others can read).
    """
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise SecretFileError(f"{what} {path} belongs to uid {st.st_uid}, not to you")
    if st.st_mode & 0o077:
        raise SecretFileError(
            f"{what} {path} is mode {_mode(st)}: others may have read it; "
            f"make it 0600 (chmod 600 {path}) once you are sure it did not leak"
        )


def parse_key(text: str, where: str) -> bytes:
    """The cluster key in ``text`` (one line), as the codec's HMAC key; checked."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise SecretFileError(f"{where}: expected the key on one line, found {len(lines)} lines")
    key = lines[0]
    if len(key) > MAX_KEY_CHARS:
        raise SecretFileError(f"{where}: a key of {len(key)} characters (at most {MAX_KEY_CHARS})")
    if not key.isprintable():
        raise SecretFileError(f"{where}: the key has control characters")
    if len(key) < MIN_GOOD_KEY:
        logger.warning(
            "%s: a cluster key of %d characters is easy to guess; `tchat key new` makes a good one",
            where,
            len(key),
        )
    return key.encode()


def read_secret_file(path: Path, what: str = "key file") -> bytes:
    """The key in ``path``, a private regular file of ours; SecretFileError otherwise.

    The checks are made on the descriptor we read (fstat), so the file cannot be swapped
    between the check and the read; O_NONBLOCK keeps a FIFO from hanging the start.
    """
    flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SecretFileError(f"cannot open {what} {path}: {exc.strerror}") from exc
    try:
        check_private(os.fstat(fd), path, what)
        data = os.read(fd, MAX_KEY_FILE + 1)
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise SecretFileError(f"{what} {path} is over {MAX_KEY_FILE} bytes: not a key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SecretFileError(f"{what} {path} is not UTF-8 text") from exc
    return parse_key(text, f"{what} {path}")


def check_private_path(path: Path, what: str) -> None:
    """``path`` (a config file that holds a secret) is private: SecretFileError otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SecretFileError(f"cannot stat {what} {path}: {exc.strerror}") from exc
    check_private(st, path, what)


def new_key() -> str:
    """A fresh cluster key: 32 random bytes in base64, one line."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def create_key_file(path: Path) -> bool:
    """Write a fresh key to ``path`` (0600, never over an existing file); False if one was
    there already (another process made it first: use theirs)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.write(fd, (new_key() + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)  # never leave half a key for the next start to use
        raise
    os.close(fd)
    return True


def data_dir_key(data_dir: Path) -> tuple[bytes, bool]:
    """The key kept in a server's data dir, made on first use: (key, just created)."""
    path = data_dir / KEY_FILE_NAME
    created = create_key_file(path)
    return read_secret_file(path, "cluster key file"), created


def private_dir(path: Path, what: str) -> bool:
    """Create ``path`` 0700, or tighten an existing one that others can enter; True if it
    had to be tightened (the caller logs that once).

    Tightened, not refused: every data dir made by earlier versions is 0755, and a server that
    refused to start after an upgrade would be an outage for a fix that is ours to make.
    """
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise SecretFileError(f"{what} {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise SecretFileError(f"{what} {path} belongs to uid {st.st_uid}, not to you")
    if st.st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)
        logger.warning("%s %s was mode %s (others could read it): now 0700", what, path, _mode(st))
        return True
    return False


def create_private(path: Path) -> None:
    """Make ``path`` an empty 0600 file unless it exists: SQLite then gives its -wal and
    -shm the same mode, whatever the process's umask (a service run in-process)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE))


def private_files(directory: Path, names: tuple[str, ...] = DB_FILES) -> list[str]:
    """Tighten ``names`` in ``directory`` that others can read to 0600; the ones changed."""
    changed = []
    for name in names:
        path = directory / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, PRIVATE_FILE)
            logger.warning("%s was mode %s (others could read it): now 0600", path, _mode(st))
            changed.append(name)
    return changed
