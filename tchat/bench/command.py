"""``tchat bench``: fanout, throughput, failover, election, memory, logmem, burst and crypto."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import import_module
from typing import Any

from tchat.bench.report import emit, machine


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _csv_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tchat bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("--log-level", default="WARNING")

    p = sub.add_parser("fanout", help="K clients in one room, S senders at R msg/s each")
    p.add_argument("--clients", type=int, default=400)
    p.add_argument("--senders", type=int, default=200)
    p.add_argument("--rate", type=float, default=2.0, help="msg/s per sender")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of sending")
    p.add_argument("--size", type=int, default=64, help="message text bytes")
    p.add_argument("--unicast", action="store_true", help="rooms over the sessions")
    p.add_argument("--asyncio", action="store_true", help="servers on asyncio, not uvloop")
    p.add_argument("--workers", type=int, help="load processes (default: one per 200 clients)")
    p.add_argument("--drain", type=float, default=15.0, help="max seconds to wait for receipts")
    p.add_argument("--irc", action="store_true", help="the same workload on ngircd instead")
    p.add_argument("--connect-parallel", type=int, default=16, help="logins in flight")
    p.add_argument(
        "--insecure", action="store_true", help="plaintext sessions and room frames (--insecure)"
    )
    common(p)

    p = sub.add_parser("throughput", help="ramp the rate into one room until p99 > limit")
    p.add_argument("--room-size", type=int, default=10)
    p.add_argument(
        "--rates",
        type=_csv_floats,
        default=[500, 1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000, 25000, 30000],
        help="offered msg/s steps (comma-separated)",
    )
    p.add_argument("--step", type=float, default=3.0, help="seconds per step")
    p.add_argument("--p99-limit", type=float, default=100.0, help="ms")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--asyncio", action="store_true")
    # Two load processes, as docs/BENCHMARKS.md measured: they also receive every member's copy.
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--insecure", action="store_true", help="plaintext sessions (--insecure)")
    p.add_argument(
        "--also-insecure", action="store_true", help="then the same with --insecure, side by side"
    )
    common(p)

    p = sub.add_parser("failover", help="SIGKILL the leader under a steady stream, N times")
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--clients", type=int, default=4, help="room members (2 of them send)")
    p.add_argument("--rate", type=float, default=50.0, help="msg/s per sender")
    p.add_argument("--asyncio", action="store_true")
    p.add_argument("--insecure", action="store_true", help="plaintext sessions (--insecure)")
    common(p)

    p = sub.add_parser("election", help="LCR messages and time per ring size")
    p.add_argument("--servers", type=_csv_ints, default=[3, 5, 9, 17, 33])
    p.add_argument("--real", type=_csv_ints, default=[3, 5, 9], help="real-process ring sizes")
    p.add_argument("--real-trials", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    common(p)

    p = sub.add_parser("logmem", help="leader RSS as the log grows to N committed messages")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=2000.0, help="offered msg/s in all")
    p.add_argument("--senders", type=int, default=10, help="room members, all sending")
    p.add_argument("--size", type=int, default=64, help="message text bytes")
    p.add_argument("--rounds", type=int, default=10, help="RSS checkpoints (one per round)")
    p.add_argument("--workers", type=int, default=1, help="load processes")
    common(p)

    p = sub.add_parser("burst", help="N max-size lines at once: delivered, and chat goes on?")
    p.add_argument("--lines", type=int, default=50)
    p.add_argument("--chars", type=int, default=3990, help="characters per line")
    p.add_argument("--ascii", action="store_true", help="ASCII lines (default: ~2 B a char)")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds to receive them all")
    p.add_argument("--after-deadline", type=float, default=15.0, help="for the line after")
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--tree", help="run daemons and clients from this source tree (default: this)")
    p.add_argument(
        "--pause-leader", type=float, default=0.0, help="ms the leader is stopped as it begins"
    )
    p.add_argument(
        "--server-nice", type=int, default=-15, help="the daemons' nice value (bench: -15)"
    )
    common(p)

    p = sub.add_parser("crypto", help="Noise vs TLS 1.3: memory per session, CPU per handshake")
    p.add_argument("--sessions", type=_csv_ints, default=[2000, 10000], help="sessions weighed")
    p.add_argument("--connections", type=int, default=500, help="loopback SSL connections")
    p.add_argument("--burst", type=int, default=256 * 1024, help="bytes each sends once")
    p.add_argument("--handshakes", type=int, default=300)
    p.add_argument("--small-records", type=int, default=20000, help="200-byte records timed")
    p.add_argument("--large-records", type=int, default=1000, help="60 KiB records timed")
    p.add_argument("--no-memory", action="store_true", help="CPU figures only")
    common(p)

    p = sub.add_parser("login", help="login time, one client at a time, Noise vs plaintext")
    p.add_argument("--logins", type=int, default=200)
    common(p)

    p = sub.add_parser("memory", help="leader RSS per idle connected client")
    p.add_argument("--clients", type=int, default=10000)
    p.add_argument("--workers", type=int, help="client processes (default: one per 2500)")
    p.add_argument("--connect-parallel", type=int, default=4, help="logins in flight")
    p.add_argument("--insecure", action="store_true", help="plaintext sessions (--insecure)")
    common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    module = import_module(f"tchat.bench.{args.bench}")
    result: dict[str, Any] = module.run(args)
    result["machine"] = machine()
    emit(result, args.json)
    return 0 if result.get("ok", True) else 1
