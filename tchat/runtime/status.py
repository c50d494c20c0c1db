"""``tchat status``: broadcast a StatusRequest and print the cluster as the servers describe it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tchat.core import codec
from tchat.core.messages import ClusterStatusRequest, Message, StatusReply, StatusRequest
from tchat.crypto.cluster import ClusterPublicKey
from tchat.crypto.errors import CryptoError
from tchat.crypto.known_clusters import KnownClusters
from tchat.runtime import discovery, eventloop
from tchat.runtime.client_service import cluster_label
from tchat.runtime.options import KEY_ENV, NetOptions, add_network_arguments, options_from_args
from tchat.runtime.secure import ClusterTrust, WireSecurity
from tchat.runtime.transport import Transport

REBROADCAST = 0.15
HANDSHAKE_WAIT = 2.0  # seconds for the leader's Noise handshake (the fingerprint line)


class ObservedKey(ClusterTrust):
    """Takes note of the cluster key a server presents (its certificate is still checked
    against it): what ``tchat status`` shows, next to what this user pinned."""

    def check(self, offered: ClusterPublicKey) -> None:
        self.key = offered


async def presented_fingerprint(options: NetOptions, addr: str) -> str | None:
    """The cluster key fingerprint that the server at ``addr`` proves in a Noise
    handshake (None if it does not answer in time or fails the handshake)."""
    trust = ObservedKey()
    answered = asyncio.Event()  # its StatusReply came back over the encrypted session

    def on_message(message: Message, _src: str) -> None:
        if isinstance(message, StatusReply):
            answered.set()

    transport = Transport(options, on_message, security=WireSecurity(trust))
    await transport.start()
    try:
        transport.send(addr, StatusRequest(addr=transport.addr, nonce=0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), HANDSHAKE_WAIT)
    finally:
        await transport.close()
    return trust.key.fingerprint if trust.key is not None else None


def fingerprint_line(options: NetOptions, presented: str | None) -> dict[str, Any]:
    """The cluster key as the leader presents it and as this user pinned it."""
    try:
        pin = KnownClusters.load().lookup(cluster_label(options))
    except CryptoError as exc:  # an unsafe or oversized pin file: said, not fatal here
        logging.getLogger(__name__).warning("%s", exc)
        pin = None
    return {
        "fingerprint": presented,
        "pinned": pin.key.fingerprint if pin is not None else None,
    }


class _StatusTransport(Transport):
    """Notes which sources answered with unsigned frames: servers run without a key."""

    def __init__(self, options: NetOptions, on_message: Callable[[Message, str], None]) -> None:
        super().__init__(options, on_message)
        self.unsigned_from: set[str] = set()  # bounded: one address per answering server

    def receive_datagram(self, data: bytes, addr: tuple[Any, ...], channel: str) -> None:
        if len(data) > 1 and not data[1] & codec.FLAG_SIGNED and len(self.unsigned_from) < 256:
            self.unsigned_from.add(f"{addr[0]}:{addr[1]}")
        super().receive_datagram(data, addr, channel)


def status_requests(options: NetOptions, addr: str, nonce: int) -> list[StatusRequest]:
    """With the cluster key, the request for the full view (the codec signs it). Without,
    the anonymous one: a server shares no users or rooms with a stranger. --insecure sends
    both: the full view from servers without a key, the anonymous one from the others
    (which drop an unsigned full request)."""
    full = ClusterStatusRequest(addr=addr, nonce=nonce)
    if options.cluster_key is not None:
        return [full]
    anonymous = StatusRequest(addr=addr, nonce=nonce)
    return [anonymous, full] if options.insecure else [anonymous]


async def gather(options: NetOptions, wait: float) -> list[StatusReply]:
    """Every StatusReply heard within ``wait`` seconds, one per server (its latest)."""
    replies, _insecure = await gather_marked(options, wait)
    return replies


async def gather_marked(options: NetOptions, wait: float) -> tuple[list[StatusReply], list[int]]:
    """The replies of ``gather`` and the IDs of the servers that answered unsigned (no
    cluster key: --insecure)."""
    replies: dict[int, StatusReply] = {}
    unsigned: set[int] = set()
    nonce = random.randrange(1, 2**31)
    transport: _StatusTransport

    def on_message(message: Message, src: str) -> None:
        if isinstance(message, StatusReply) and message.nonce == nonce:
            known = replies.get(message.server_id)
            if known is not None and known.full and not message.full:
                return  # --insecure asked both ways: keep the full answer
            replies[message.server_id] = message
            if src in transport.unsigned_from:
                unsigned.add(message.server_id)
            else:
                unsigned.discard(message.server_id)

    transport = _StatusTransport(options, on_message)
    await transport.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    requests = status_requests(options, transport.addr, nonce)
    try:
        while loop.time() < deadline:
            transport.unsigned_from.clear()  # per round: a source is marked by its last frame
            for request in requests:
                discovery.broadcast(transport, request)
            await asyncio.sleep(min(REBROADCAST, max(0.0, deadline - loop.time())))
    finally:
        await transport.close()
    return [replies[k] for k in sorted(replies)], sorted(unsigned)


def summarize(replies: list[StatusReply], insecure: Sequence[int] = ()) -> dict[str, Any]:
    """The cluster: the view of the server with the highest epoch, plus each server's own role.

    Users and rooms come from the best full reply; with none (no cluster key), "users" and
    "rooms" are null: withheld, not empty.
    """
    best = max(replies, key=lambda r: (r.epoch, r.role == "leader"))
    fulls = [r for r in replies if r.full]
    view = max(fulls, key=lambda r: (r.epoch, r.role == "leader")) if fulls else None
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
        "cluster_fingerprint": best.cluster_fingerprint or None,  # None until clusters have keys
        "full": view is not None,
        "insecure": list(insecure),  # servers that answered unsigned: they run with no key
        "users": None
        if view is None
        else [{"name": u.name, "addr": u.addr, "status": u.status} for u in view.users],
        "rooms": None
        if view is None
        else [{"room": r.room, "group": r.group, "members": list(r.members)} for r in view.rooms],
        "log_size": None if view is None else view.log_size,
        # The lists are cut short on a big cluster (a reply is one datagram): the totals.
        "user_count": None if view is None else view.user_count,
        "room_count": None if view is None else view.room_count,
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"leader {summary['leader']} at {summary['leader_addr']}  epoch {summary['epoch']}"]
    cluster = summary.get("cluster")
    if cluster is not None:
        shown, pinned = cluster["fingerprint"], cluster["pinned"]
        if shown is None:
            note = "no handshake (--insecure, or the leader did not answer)"
        elif pinned is None:
            note = "not pinned here yet"
        else:
            note = "pinned here" if pinned == shown else f"DIFFERS from the pin here: {pinned}"
        lines.append(f"cluster key {shown or '-'}  ({note})")
    lines.append("servers:")
    for s in summary["servers"]:
        state = "live" if s["live"] else "down"
        lines.append(f"  {s['id']:>10}  {s['addr']:<22} {s['role']:<10} {state}")
    lines.append(f"cluster fingerprint: {summary['cluster_fingerprint'] or '(none yet)'}")
    if summary["insecure"]:
        ids = ", ".join(str(sid) for sid in summary["insecure"])
        lines.append(
            f"WARNING: server(s) {ids} run without a cluster key (--insecure): anyone on "
            "the LAN can join, forge their frames and read the log"
        )
    if summary["users"] is None:
        lines.append(f"users, rooms: (ask with the cluster key: {KEY_ENV} or --cluster-key-file)")
        return "\n".join(lines)
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

    async def both() -> tuple[list[StatusReply], list[int], str | None]:
        replies, insecure = await gather_marked(options, args.wait)
        if not replies or options.insecure:
            return replies, insecure, None
        leader = summarize(replies, insecure)["leader_addr"] or replies[0].addr
        return replies, insecure, await presented_fingerprint(options, leader)

    replies, insecure, presented = eventloop.run(both())
    if not replies:
        hint = ""
        if options.cluster_key is not None:
            # Servers with another key drop the signed request, and we their signed answers.
            hint = f" (with the cluster key from {options.key_source}: is it the cluster's?)"
        print(f"tchat status: no server answered{hint}", file=sys.stderr)
        return 1
    summary = summarize(replies, insecure)
    summary["cluster"] = fingerprint_line(options, presented)
    try:
        print(json.dumps(summary) if args.json else render(summary), flush=True)
    except BrokenPipeError:  # `tchat status | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the exit quiet
    return 0
