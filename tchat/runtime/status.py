"""``tchat status``: broadcast a StatusRequest and print the cluster as the servers describe it."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tchat.core.messages import (
    MAX_AWAY_REASON,
    ClusterStatusRequest,
    Message,
    StatusReply,
    StatusRequest,
)
from tchat.crypto.cluster import ClusterPublicKey
from tchat.crypto.errors import CryptoError
from tchat.crypto.known_clusters import KnownClusters
from tchat.runtime import discovery, eventloop
from tchat.runtime.client_service import cluster_label
from tchat.runtime.datagram_auth import Heard
from tchat.runtime.options import KEY_ENV, NetOptions, add_network_arguments, options_from_args
from tchat.runtime.secure import ClusterTrust, WireSecurity
from tchat.runtime.transport import Transport
from tchat.runtime.trust import rotations

REBROADCAST = 0.15
MAX_KEYS = 16  # cluster keys remembered for grouping: more is a flood, not a LAN


@dataclass
class Gathered:
    """What ``tchat status`` heard: each cluster's replies (one per server), by fingerprint
    ("" for an --insecure cluster, whose replies are not signed)."""

    clusters: dict[str, dict[int, StatusReply]] = field(default_factory=dict)
    pinned: str = ""  # the pin for this discovery label ("" if none)
    keys: dict[str, ClusterPublicKey] = field(default_factory=dict)
    vouches: dict[str, bytes] = field(default_factory=dict)  # a rotating server's vouch
    # During a rotation the servers answer under two keys: the old key's fingerprint ->
    # the new one's, once join_rotations() merged their replies under the new one.
    rotated: dict[str, str] = field(default_factory=dict)

    def replies(self, fingerprint: str) -> list[StatusReply]:
        found = self.clusters.get(fingerprint, {})
        return [found[k] for k in sorted(found)]

    def join_rotations(self) -> None:
        """One cluster for the two keys of a rotation (a vouch by one for the other):
        every server listed, under the new key; a lone key stays as it was."""
        for fp, new in rotations(self.keys, self.vouches).items():
            if fp == new or fp not in self.clusters or new not in self.clusters:
                continue
            merged = self.clusters.pop(fp)
            merged.update(self.clusters[new])  # a server heard under both: its new key's
            self.clusters[new] = merged
            self.rotated[fp] = new

    def current(self, fingerprint: str) -> str:
        """``fingerprint``, or the new key of the rotation it was merged into."""
        return self.rotated.get(fingerprint, fingerprint)


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
    """Every StatusReply heard within ``wait`` seconds, one per server (its latest), of the
    cluster ``tchat status`` reports on (``choose``)."""
    heard = await gather_clusters(options, wait)
    fingerprint, _problem = choose(heard, options.cluster)
    return heard.replies(fingerprint) if fingerprint is not None else []


async def gather_clusters(options: NetOptions, wait: float) -> Gathered:
    """Every signed StatusReply answering our nonce within ``wait`` seconds, by cluster."""
    heard = Gathered()
    nonce = random.randrange(1, 2**31)
    security = None
    if not options.insecure:
        # Verify every cluster that answers, pin or not: status reports, it never pins.
        security = WireSecurity(ClusterTrust(None))
        try:
            pin = KnownClusters.load().lookup(cluster_label(options))
        except CryptoError as exc:  # an unsafe or oversized pin file: said, not fatal here
            logging.getLogger(__name__).warning("%s", exc)
            pin = None
        heard.pinned = pin.key.fingerprint if pin is not None else ""
    signer: dict[str, str] = {}  # peer -> fingerprint of the datagram just verified

    def on_heard(message: Message, src: str, verified: Heard) -> bool:
        key = verified.cluster
        signer[src] = key.fingerprint if key is not None else ""
        if key is not None and len(heard.keys) < MAX_KEYS:
            heard.keys[key.fingerprint] = key
            if verified.vouch:
                heard.vouches[key.fingerprint] = verified.vouch
        return True

    def on_message(message: Message, src: str) -> None:
        if isinstance(message, StatusReply) and message.nonce == nonce:
            cluster = heard.clusters.setdefault(signer.pop(src, ""), {})
            known = cluster.get(message.server_id)
            if known is not None and known.full and not message.full:
                return  # --insecure asked both ways: keep the full answer
            cluster[message.server_id] = message

    transport = Transport(options, on_message, security=security)
    transport.datagram_filter = on_heard
    await transport.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    requests = status_requests(options, transport.addr, nonce)
    try:
        while loop.time() < deadline:
            for request in requests:
                discovery.broadcast(transport, request)
            await asyncio.sleep(min(REBROADCAST, max(0.0, deadline - loop.time())))
    finally:
        await transport.close()
    heard.join_rotations()
    return heard


def choose(heard: Gathered, expected: str | None) -> tuple[str | None, str]:
    """The cluster to report on (--cluster, else the pinned one, else the only one) and,
    when none can be picked, why."""
    if expected is not None:
        if heard.current(expected) in heard.clusters:
            return heard.current(expected), ""
        return None, f"the cluster {expected} did not answer"
    pinned = heard.current(heard.pinned) if heard.pinned else ""
    if pinned and pinned in heard.clusters:
        return pinned, ""
    if len(heard.clusters) == 1:
        return next(iter(heard.clusters)), ""
    if not heard.clusters:
        return None, "no server answered"
    listing = "\n".join(
        f"  {fp}  servers: {', '.join(r.addr for r in heard.replies(fp))}"
        for fp in sorted(heard.clusters)
    )
    return None, (
        f"{len(heard.clusters)} clusters answered"
        + (f" (none with the pinned key {heard.pinned})" if heard.pinned else "")
        + "; name one with --cluster FINGERPRINT:\n"
        + listing
    )


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
        "full": view is not None,
        "insecure": list(insecure),  # servers that answered unsigned: they run with no key
        "users": None
        if view is None
        else [
            {"name": u.name, "addr": u.addr, "status": u.status, "reason": u.away_reason}
            for u in view.users
        ],
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
        elif pinned == shown:
            note = "pinned here"
        elif pinned == cluster.get("rotating_from"):
            note = "the pin here is the key it rotates from: clients follow the vouch"
        else:
            note = f"DIFFERS from the pin here: {pinned}"
        lines.append(f"cluster key {shown or '-'}  ({note})")
        if cluster.get("rotating_from"):
            lines.append(f"  rotating from {cluster['rotating_from']} (vouched; one cluster)")
    lines.append("servers:")
    for s in summary["servers"]:
        state = "live" if s["live"] else "down"
        lines.append(f"  {s['id']:>10}  {s['addr']:<22} {s['role']:<10} {state}")
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
    lines.extend(
        f"  {u['name']:<20} {u['addr']:<22} {u['status']}"
        + (f" ({_printable(u['reason'])})" if u.get("reason") else "")
        for u in summary["users"]
    )
    lines.append(f"rooms ({_count(summary['room_count'], len(summary['rooms']))}):")
    lines.extend(
        f"  {r['room']:<20} {r['group']:<22} {', '.join(r['members'])}" for r in summary["rooms"]
    )
    lines.append(f"log entries: {summary['log_size']}")
    return "\n".join(lines)


def _printable(text: str) -> str:
    """A reason for a terminal: what the leader let in is printable already; a control or
    bidi character from anywhere else is shown as '?', never written out."""
    return "".join(c if c.isprintable() else "?" for c in text[:MAX_AWAY_REASON])


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
    heard = eventloop.run(gather_clusters(options, args.wait))
    fingerprint, problem = choose(heard, options.cluster)
    if fingerprint is None:
        hint = ""
        if options.cluster_key is not None and not heard.clusters:
            # Servers with another key drop the signed request.
            hint = f" (with the cluster key from {options.key_source}: is it the cluster's?)"
        print(f"tchat status: {problem}{hint}", file=sys.stderr)
        return 1
    replies = heard.replies(fingerprint)
    # An --insecure cluster's replies are not signed: its servers run without a key.
    insecure = [r.server_id for r in replies] if fingerprint == "" else []
    summary = summarize(replies, insecure)
    # The key every reply of that cluster was signed under, and this user's pin for it.
    summary["cluster"] = {"fingerprint": fingerprint or None, "pinned": heard.pinned or None}
    rotating = sorted(old for old, new in heard.rotated.items() if new == fingerprint)
    if rotating:
        # Some servers still present the old key, which vouches for this one (or this for
        # it): a rotation under way (docs/OPERATIONS.md), one cluster.
        summary["cluster"]["rotating_from"] = rotating[0]
    others = sorted(fp for fp in heard.clusters if fp != fingerprint)
    if others:
        summary["other_clusters"] = others
    try:
        print(json.dumps(summary) if args.json else render(summary), flush=True)
    except BrokenPipeError:  # `tchat status | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the exit quiet
    return 0
