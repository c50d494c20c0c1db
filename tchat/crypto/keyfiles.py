"""Secret files: created 0600 in a 0700 directory, atomically; read only when private and small.

Every tchat secret (identity key, cluster secret, server keys, the pin file) goes through
this module, so one place decides what "a safe secret file" means:

- ``write_secret_file`` writes a temporary file in the target directory (``O_CREAT |
  O_EXCL | O_NOFOLLOW``, mode 0600), fsyncs it, then links or renames it into place and
  fsyncs the directory: a crash leaves either the old file or the new one, never half a
  key. With ``exclusive=True`` an existing file is never replaced (two processes racing
  to create a key on first run: one wins, the other reads the winner's key).
- ``read_secret_file`` refuses a file that is not a regular file, not owned by the
  current user, readable or writable by group or others (as ssh does for private keys),
  or larger than its bound; the error names the file and the ``chmod 600`` fix.
- ``check_private`` is that refusal for a file already open (a config that holds the
  secret is checked on the descriptor it is read from).
- ``private_dir`` makes a directory 0700, or tightens one an earlier version left open
  (with a warning), and refuses one that is not ours; ``create_private`` and
  ``tighten_private_files`` do the same for a server's database files.
- ``client_data_dir`` is where a client keeps what is its own (CONTRACT.md, "Files").

Secret files are refused, never tightened: the secret may already have leaked and only the
operator can tell. Directories and database files are tightened: every data dir made by
earlier versions is 0755, and a server that refused to start after an upgrade would be an
outage for a fix that is ours to make.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from tchat.crypto.errors import CryptoError, Reason

logger = logging.getLogger(__name__)

# A key file holds one short line; nothing tchat writes comes near this.
MAX_SECRET_FILE = 64 * 1024
MAX_KEY_LINE = 4096  # a one-line key file (cluster secret, server keys, identity)
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's companions of the database: they hold the same data (the WAL, recent pages).
DB_FILES = ("tchat.db", "tchat.db-wal", "tchat.db-shm")


class KeyFileError(CryptoError):
    """A secret file is missing, unsafe (mode, owner, type) or out of bounds."""


def client_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_DATA_HOME/tchat, else ~/.local/share/tchat (an empty or relative XDG is ignored)."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative path is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "tchat"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "share" / "tchat"


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o}"


def private_dir(path: Path, what: str = "directory") -> bool:
    """Create ``path`` (and parents) 0700, or tighten our own existing one that others can
    enter; True if it had to be tightened (said once, as a warning). KeyFileError if it is
    not a directory or not ours."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    info = os.stat(path, follow_symlinks=True)
    _ours(info, path, what, directory=True)
    if info.st_mode & 0o077:
        # A directory others can list or write lets them watch or swap our files.
        os.chmod(path, PRIVATE_DIR)
        logger.warning(
            "%s %s was mode %s (others could enter it): now 0700", what, path, _mode(info)
        )
        return True
    return False


def _ours(info: os.stat_result, path: Path, what: str, *, directory: bool) -> None:
    """Refuse ``path`` unless it is a directory (or a regular file) that we own."""
    kind, right = ("a directory", stat.S_ISDIR) if directory else ("a regular file", stat.S_ISREG)
    if not right(info.st_mode):
        raise KeyFileError(f"{what} {path} is not {kind}", Reason.UNSAFE_FILE)
    if info.st_uid != os.getuid():
        raise KeyFileError(
            f"{what} {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}):"
            " secrets are kept only in files and directories you own",
            Reason.UNSAFE_FILE,
        )


def check_private(info: os.stat_result, path: Path, what: str = "secret file") -> None:
    """Refuse a secret file that is not a regular file of ours, or that group or others
    may read or write (as ssh refuses such a private key); the error names the fix."""
    _ours(info, path, what, directory=False)
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{what} {path} has mode {_mode(info)}: others may have read it; once you are"
            f" sure it did not leak, fix with: chmod 600 {path}",
            Reason.UNSAFE_FILE,
        )


def write_secret_file(
    path: Path, data: bytes, *, exclusive: bool = True, max_size: int = MAX_SECRET_FILE
) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600; ``exclusive`` never replaces a file.

    Raises FileExistsError if ``exclusive`` and ``path`` exists (the caller then reads it).
    """
    if len(data) > max_size:
        raise ValueError(f"a secret file holds at most {max_size} bytes, not {len(data)}")
    private_dir(path.parent, "key directory")
    tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    try:
        _create_and_write(tmp, data)
        if exclusive:
            try:
                # link() fails if the target exists: no-clobber and atomic, unlike rename().
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                # A filesystem without hard links: O_EXCL on the target keeps no-clobber;
                # a crash mid-write can leave a short file, which the reader refuses.
                _create_and_write(path, data)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _create_and_write(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        # The umask may have cleared bits but never adds any; fchmod makes 0600 exact.
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_secret_file(path: Path, max_size: int = MAX_SECRET_FILE) -> bytes:
    """Read a secret file, refused unless it is ours, private (no group/other bits) and small."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist", Reason.MISSING) from None
    except OSError as exc:
        raise KeyFileError(f"cannot open {path}: {exc.strerror}", Reason.UNSAFE_FILE) from None
    try:
        info = os.fstat(fd)
        check_private(info, path)
        if info.st_size > max_size:
            raise KeyFileError(
                f"{path} is {info.st_size} bytes, more than the {max_size} a key file may hold",
                Reason.MALFORMED,
            )
        chunks: list[bytes] = []
        remaining = max_size + 1
        # Read to EOF but never past the bound, whatever fstat said (the file may grow).
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_size:
            raise KeyFileError(f"{path} is larger than {max_size} bytes", Reason.MALFORMED)
        return data
    finally:
        os.close(fd)


def read_secret_line(path: Path, max_size: int = MAX_KEY_LINE) -> str:
    """The single line of text of a small secret file (ASCII, surrounding whitespace removed)."""
    data = read_secret_file(path, max_size)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not an ASCII key file", Reason.MALFORMED) from None
    text = text.strip()
    if not text or "\n" in text:
        lines = len(text.splitlines()) if text else 0
        raise KeyFileError(f"{path} must hold one line, not {lines}", Reason.MALFORMED)
    return text


K = TypeVar("K")


def load_or_create_line(
    path: Path,
    parse: Callable[[str, str], K],
    generate: Callable[[], K],
    export: Callable[[K], str],
) -> K:
    """The key in the one-line secret file ``path`` (``parse(line, where)``), or a new one
    (``generate()``, written there 0600 as ``export(key)``) if the file is absent. Never
    overwrites: if another process created the file first, its key is the one used."""
    try:
        return parse(read_secret_line(path), str(path))
    except KeyFileError as exc:
        if exc.reason is not Reason.MISSING:
            raise
    key = generate()
    try:
        write_secret_file(path, (export(key) + "\n").encode("ascii"))
    except FileExistsError:
        return parse(read_secret_line(path), str(path))
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_private(path: Path) -> None:
    """Make ``path`` an empty 0600 file unless it exists: SQLite then gives its -wal and
    -shm the same mode, whatever the process's umask (a service run in-process)."""
    with contextlib.suppress(FileExistsError):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        os.close(os.open(path, flags, PRIVATE_FILE))


def tighten_private_files(directory: Path, names: tuple[str, ...] = DB_FILES) -> list[str]:
    """Tighten ``names`` in ``directory`` that others can read to 0600; the ones changed."""
    changed = []
    for name in names:
        path = directory / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(path, PRIVATE_FILE)
            logger.warning("%s was mode %s (others could read it): now 0600", path, _mode(info))
            changed.append(name)
    return changed
