"""Scheduling of the bench's children: servers first, then the load processes, then the rest."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from functools import partial

PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
# Absolute nice values (as root). Both go ahead of whatever else runs on the machine (see
# BENCHMARKS.md); the servers also go ahead of the load processes, which stand in for the
# users' own machines: on a LAN 10,000 clients do not take the servers' CPU.
SERVER_PRIORITY = -15
LOAD_PRIORITY = -5


def _child(priority: int) -> None:
    """In a child before exec: take ``priority`` where allowed, and die with the bench (a
    bench killed by ``timeout`` must not leave daemons spinning)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, priority)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def boost_priority() -> None:
    """A load process (before exec)."""
    _child(LOAD_PRIORITY)


def server_priority() -> None:
    """A server: tchat's daemons, ngircd (before exec)."""
    _child(SERVER_PRIORITY)


def at_priority(priority: int) -> Callable[[], None]:
    """A before-exec hook taking absolute nice value ``priority`` (and dying with the bench)."""
    return partial(_child, priority)
