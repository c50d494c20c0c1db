"""The ``tchat`` command: dispatches to the simulator, benchmarks, status or a node mode."""

from __future__ import annotations

import sys
from importlib import import_module

# Subcommands own their argument parsing; each module exposes ``main(argv) -> int``.
SUBCOMMANDS = {
    "sim": "tchat.sim.command",
    "bench": "tchat.bench.command",
    "status": "tchat.runtime.status",
    "key": "tchat.runtime.key_command",
    "admin": "tchat.runtime.admin_command",
}
NODE_MODES = "tchat.runtime.modes"  # tchat [--daemon | --server | --headless] ...


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = SUBCOMMANDS.get(args[0]) if args else None
    if target is not None:
        module = import_module(target)
        return int(module.main(args[1:]) or 0)
    module = import_module(NODE_MODES)
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
