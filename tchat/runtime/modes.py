"""The node modes of ``tchat``: Textual client, ``--server``, ``--daemon`` and ``--headless``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tchat.crypto.keyfiles import KeyFileError, private_dir
from tchat.runtime import eventloop
from tchat.runtime.options import (
    NetOptions,
    add_network_arguments,
    add_node_arguments,
    data_home,
    default_config_path,
    options_from_args,
    wants_dashboard,
)

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tchat",
        description="Distributed LAN chat. Subcommands: status, key, admin, sim, bench.",
    )
    add_node_arguments(parser)
    add_network_arguments(parser)
    parser.add_argument("--log-file", type=Path, help="log here (Textual modes log nowhere else)")
    return parser


def setup_logging(options: NetOptions, log_file: Path | None, to_stderr: bool) -> None:
    level = getattr(logging, options.log_level, None)
    if not isinstance(level, int):
        raise SystemExit(f"tchat: unknown --log-level {options.log_level}")
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if not handlers:
        handlers.append(logging.NullHandler())  # a TUI owns the terminal: no stray lines
    logging.basicConfig(
        level=level, format=LOG_FORMAT, datefmt="%H:%M:%S", handlers=handlers, force=True
    )


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if wants_dashboard(args) and (args.daemon or args.headless):
        parser.error("--server (the dashboard mode) cannot go with --daemon or --headless")
    if args.daemon:
        mode = "daemon"
    elif args.headless:
        mode = "headless"
    elif wants_dashboard(args):
        mode = "server"
    else:
        mode = "client"
    # Everything a node writes (the log with every PM, keys, settings, its log file) is
    # its user's alone; set before anything is opened.
    os.umask(0o077)
    options = options_from_args(args, mode)
    setup_logging(options, args.log_file, to_stderr=mode in ("daemon", "headless"))
    if mode in ("client", "headless"):
        _private_client_dirs()
    if mode == "daemon":
        from tchat.runtime.daemon import run_daemon

        return eventloop.run(run_daemon(options))
    if mode == "headless":
        if not options.user:
            parser.error("--headless needs --user NAME")
        from tchat.runtime.headless import run_headless

        return eventloop.run(run_headless(options, options.user))
    return _run_ui(options, mode)


def _private_client_dirs() -> None:
    """A client's XDG dirs (identity, pinned keys, settings) are its user's alone: the ones
    an earlier version made 0755 are tightened (a server does the same with its data dir)."""
    for path, what in ((data_home(), "data dir"), (default_config_path().parent, "config dir")):
        if path.is_dir():
            try:
                private_dir(path, what)
            except (KeyFileError, OSError) as exc:
                # Not ours to fix (another owner, a read-only home): say it, run anyway.
                logging.getLogger(__name__).warning("%s", exc)


def _run_ui(options: NetOptions, mode: str) -> int:
    try:
        from tchat.ui import app
    except ImportError as exc:
        print(
            f"tchat: the Textual interface is not available ({exc}); use --daemon or --headless",
            file=sys.stderr,
        )
        return 2
    eventloop.install()
    config = app.config_of(options)
    ui: app.ClientApp | app.DashboardApp
    if mode == "server":  # ``tchat --server``: the daemon's node, with the dashboard on top
        from tchat.runtime.daemon import lift_open_files
        from tchat.runtime.server_service import ServerService

        lift_open_files(options)
        ui = app.DashboardApp(ServerService(options), theme=options.theme, config=config)
    else:  # ``tchat [--user NAME] [--theme NAME]``: one session per name the user picks
        from tchat.runtime.client_service import ClientService

        ui = app.ClientApp(
            lambda name: ClientService(options, name),
            user=options.user,
            theme=options.theme,
            config=config,
            auto_away=options.auto_away * 60,
        )
    return app.run_app(ui)
