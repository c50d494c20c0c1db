"""Reading a world after a run: its fingerprint and its trace, labelled and focused."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tchat.sim.world import World


def fingerprint(world: World) -> str:
    """sha256 of a canonical dump of the final state: equal seeds give equal prints."""
    dump: dict[str, Any] = {"servers": [], "clients": []}
    for sid, slot in sorted(world.servers.items()):
        if slot.node is None:
            dump["servers"].append([sid, "DOWN", len(slot.durable.entries)])
            continue
        node = slot.node
        ids = [e.id for e in node.log.entries()]
        dump["servers"].append([sid, node.role.name, str(node.epoch), ids])
    for cid, client in sorted(world.clients.items()):
        dump["clients"].append([cid, [e.id for e in client.delivered]])
    text = json.dumps(dump, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def format_trace(world: World, lines: int = 30, focus: str = "") -> list[str]:
    """The last ``lines`` trace lines; with ``focus`` (a violation's text), only those
    about the nodes it names (``s<id>``, ``c<n>``) and the fault notes."""
    addrs = _addrs_named(world, focus)
    labels = _labels(world)
    picked = []
    for item in reversed(world.trace):
        at, src, dst, text, obj = item
        if not addrs or src == "*" or src in addrs or dst in addrs:
            picked.append(item)
            if len(picked) >= lines:
                break
    out = []
    for at, src, dst, text, obj in reversed(picked):
        if src == "*":
            out.append(f"{at:10.6f} * {text}")
            continue
        body = text if obj is None else f"{text} {obj!r}".strip()
        label = labels.get(src, src)
        arrow = f"{label} -> {labels.get(dst, dst)}" if dst else label
        line = f"{at:10.6f} {arrow} {body}"
        out.append(line if len(line) <= 400 else line[:397] + "...")
    return out


def _addrs_named(world: World, text: str) -> set[str]:
    addrs: set[str] = set()
    for word in re.findall(r"\b([sc]\d+)\b", text):
        if word[0] == "s" and int(word[1:]) in world.servers:
            addrs.add(world.servers[int(word[1:])].addr)
        elif word in world.clients:
            addrs.add(world.clients[word].addr)
    return addrs


def _labels(world: World) -> dict[str, str]:
    """addr -> s<id> / c<n>, so trace lines say who, not where."""
    labels = {s.addr: s.label for s in world.servers.values()}
    labels.update({c.addr: c.client_id for c in world.clients.values()})
    return labels
