"""``python -m tchat.bench.asyncio_node ARGS``: the ``tchat`` command on plain asyncio (no uvloop).

The runtime always installs uvloop; the bench compares it with the stock loop by running the
same entry point with the uvloop installer replaced by a no-op.
"""

from __future__ import annotations

import sys

from tchat.runtime import eventloop


def _stock_loop() -> bool:
    return False


def main() -> int:
    eventloop.install = _stock_loop  # the runtime reads it at call time
    from tchat.cli import main as tchat_main

    return tchat_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
