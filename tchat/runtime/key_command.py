"""``tchat key``: make the cluster key and print it for the other servers of the cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tchat.crypto.cluster import CLUSTER_KEY_FILE as KEY_FILE_NAME
from tchat.crypto.cluster import ClusterSecret, read_cluster_secret
from tchat.crypto.errors import CryptoError
from tchat.crypto.keyfiles import private_dir, write_secret_file
from tchat.runtime.options import KEY_ENV

EPILOG = f"""\
A server started without a key makes one in its data dir ({KEY_FILE_NAME}, mode 0600).
Give every other server of the cluster the same key, without putting it on a command
line (every local user can read those with ps):
  (umask 077; tchat key show --data-dir DIR --export > tchat.env)  # copy it over ssh: a
                                                      # systemd EnvironmentFile, or
  export {KEY_ENV}=$(tchat key show --data-dir DIR)
  tchat --daemon --cluster-key-file /etc/tchat/cluster.key   # a 0600 file of one line
"""


def _key_path(args: argparse.Namespace) -> Path:
    if args.cluster_key_file is not None:
        return Path(args.cluster_key_file).expanduser()
    return Path(args.data_dir).expanduser() / KEY_FILE_NAME


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tchat key",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("show", "print the key (one line) for another server"),
        ("new", "make a key file (never over an existing one)"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("--data-dir", type=Path, help=f"a server's data dir ({KEY_FILE_NAME})")
        where.add_argument("--cluster-key-file", type=Path, metavar="FILE", help="a key file")
        if name == "show":
            command.add_argument(
                "--export", action="store_true", help=f"print {KEY_ENV}=KEY (an env file line)"
            )
    args = parser.parse_args(argv)
    path = _key_path(args)
    try:
        if args.command == "new":
            if args.data_dir is not None:
                private_dir(Path(args.data_dir).expanduser(), "data dir")
            secret = ClusterSecret.generate(str(path))
            try:
                write_secret_file(path, (secret.export_line() + "\n").encode("ascii"))
            except FileExistsError:
                print(f"tchat key: {path} exists already; kept it", file=sys.stderr)
                return 1
            print(path)
            return 0
        key = read_cluster_secret(path).export_line()
    except (CryptoError, OSError) as exc:
        print(f"tchat key: {exc}", file=sys.stderr)
        return 1
    print(f"{KEY_ENV}={key}" if args.export else key)
    return 0
