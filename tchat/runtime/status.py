"""``tchat status``: broadcast a StatusRequest and print the cluster as the servers describe it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
from typing import Any

from tchat.core.messages import Message, StatusReply, StatusRequest
from tchat.runtime import discovery, eventloop
from tchat.runtime.options import NetOptions, add_network_arguments, options_from_args
from tchat.runtime.transport import Transport

REBROADCAST = 0.15


async def gather(options: NetOptions, wait: float) -> list[StatusReply]:
    """Every StatusReply heard within ``wait`` seconds, one per server (its latest)."""
    replies: dict[int, StatusReply] = {}
    nonce = random.randrange(1, 2**31)

    def on_message(message: Message, src: str) -> None:
        if isinstance(message, StatusReply) and message.nonce == nonce:
            replies[message.server_id] = message

    transport = Transport(options, on_message)
    await transport.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        while loop.time() < deadline:
            discovery.broadcast(transport, StatusRequest(addr=transport.addr, nonce=nonce))
            await asyncio.sleep(min(REBROADCAST, max(0.0, deadline - loop.time())))
    finally:
        await transport.close()
    return [replies[k] for k in sorted(replies)]


def summarize(replies: list[StatusReply]) -> dict[str, Any]:
    """The cluster: the view of the server with the highest epoch, plus each server's own role."""
    best = max(replies, key=lambda r: (r.epoch, r.role == "leader"))
    roles = {r.server_id: r.role for r in replies}
    servers = {s.server_id: s.addr for s in best.servers}
    for reply in replies:
        servers.setdefault(reply.server_id, reply.addr)
    live = set(best.live) | {r.server_id for r in replies}
    return {
        "leader": best.leader_id,
        "leader_addr": best.leader_addr,
        "epoch": str(best.epoch),
        "servers": [
            {
                "id": sid,
                "addr": addr,
                "role": roles.get(sid, "unknown").lower(),
                "live": sid in live,
                "answered": sid in roles,
            }
            for sid, addr in sorted(servers.items())
        ],
        "users": [{"name": u.name, "addr": u.addr, "status": u.status} for u in best.users],
        "rooms": [
            {"room": r.room, "group": r.group, "members": list(r.members)} for r in best.rooms
        ],
        "log_size": best.log_size,
        # The lists are cut short on a big cluster (a reply is one datagram): the totals.
        "user_count": best.user_count,
        "room_count": best.room_count,
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"leader {summary['leader']} at {summary['leader_addr']}  epoch {summary['epoch']}"]
    lines.append("servers:")
    for s in summary["servers"]:
        state = "live" if s["live"] else "down"
        lines.append(f"  {s['id']:>10}  {s['addr']:<22} {s['role']:<10} {state}")
    lines.append(f"users ({_count(summary['user_count'], len(summary['users']))}):")
    lines.extend(f"  {u['name']:<20} {u['addr']:<22} {u['status']}" for u in summary["users"])
    lines.append(f"rooms ({_count(summary['room_count'], len(summary['rooms']))}):")
    lines.extend(
        f"  {r['room']:<20} {r['group']:<22} {', '.join(r['members'])}" for r in summary["rooms"]
    )
    lines.append(f"log entries: {summary['log_size']}")
    return "\n".join(lines)


def _count(total: int, shown: int) -> str:
    return str(total) if shown == total else f"{total}, the first {shown} shown"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tchat status", description=__doc__)
    add_network_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--wait", type=float, default=0.5, help="seconds to gather replies")
    args = parser.parse_args(argv)
    options = options_from_args(args, "status")
    logging.basicConfig(level=options.log_level if args.log_level else "WARNING", stream=sys.stderr)
    replies = eventloop.run(gather(options, args.wait))
    if not replies:
        print("tchat status: no server answered", file=sys.stderr)
        return 1
    summary = summarize(replies)
    try:
        print(json.dumps(summary) if args.json else render(summary), flush=True)
    except BrokenPipeError:  # `tchat status | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the exit quiet
    return 0
