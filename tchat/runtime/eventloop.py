"""Event loop selection: uvloop when available, plain asyncio (with a warning) otherwise."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def install() -> bool:
    """Make new event loops uvloop loops; False (and a warning) when uvloop is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        logger.warning("uvloop is not installed: falling back to the asyncio event loop")
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh (uv)loop."""
    install()
    return asyncio.run(main)
