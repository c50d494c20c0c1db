"""The end-of-run checks: clients converged, completeness, same order, the log's sanity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tchat.core.messages import Chat, Entry
from tchat.core.projection import client_tag
from tchat.sim.expected import expected_deliveries, members_of, order_conflict

if TYPE_CHECKING:
    from tchat.sim.invariants import Checker
    from tchat.sim.world import ClientSlot, ServerSlot

Problem = tuple[str, str]  # (invariant, detail)


def log_sanity(checker: Checker, entries: list[Entry]) -> list[Problem]:
    """Order, operation copies and causal gaps in the leader's log."""
    problems: list[Problem] = []
    keys = [e.key for e in entries]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        problems.append(("log-order", "leader's log.entries() is not strictly in key order"))
    origins: dict[tuple[str, int], str] = {}
    for e in entries:
        body = e.body
        if type(body) is Chat and not body.sender_clock <= e.clock:
            # The sender had seen entries its new leader could not fetch within
            # Timing.causal_wait (they live only on servers that are down): the leader
            # orders the message without them rather than hold it forever. Counted,
            # documented in docs/PROTOCOL.md, not a violation.
            checker.causal_gaps.add(e.id)
        if e.origin is None:
            continue
        # Two sides of a partition may each record the same resent operation (no
        # coordination is possible across a partition); the log keeps both and every
        # replica treats the first in log order as the one. What must hold is that no
        # client delivers two copies (checked in _delivered) and one leader never
        # records it twice.
        key = (e.origin.client_id, e.origin.cmid)
        if key in origins and origins[key].split(".")[0] == e.id.split(".")[0]:
            problems.append(
                ("exactly-once", f"op {key} is in the log twice: {origins[key]} and {e.id}")
            )
        origins.setdefault(key, e.id)
    return problems


def clients_converged(checker: Checker, leader: ServerSlot, lfold: Any) -> list[Problem]:
    """Invariants 2, 4 and 8 on the clients' side."""
    problems: list[Problem] = []
    lnode = leader.node
    if lnode.leadership is not None and lnode.leadership.pending:
        # Clients see what is committed; entries still being replicated are not yet
        # theirs to see. Converged means nothing is in flight.
        return [("clients-converged", "the leader still has uncommitted entries")]
    user_names = sorted(lnode.state.users)
    rooms = lfold[1]
    # Design invariant 4: a crashed or logged-out client disappears from every list, and
    # every serving one is on it (a client still logging in may not be yet).
    clients = checker.world.clients.values()
    live = {
        c.node.name
        for c in clients
        if c.alive and not c.logged_out and not c.failed and c.node.state.name != "CLOSED"
    }
    serving = {c.node.name for c in checker.world.serving_clients()}
    ghosts = sorted(set(user_names) - live)
    missing = sorted(serving - set(user_names))
    if ghosts or missing:
        problems.append(
            (
                "users-live",
                f"leader's user list {user_names}: no live client for {ghosts}, "
                f"serving clients missing {missing}",
            )
        )
    for c in checker.world.clients.values():
        # A logout still pending (e.g. its op waits for entries only a downed server had)
        # keeps the user online: not converged yet, though no longer the client's to check.
        if c.alive and c.logged_out and not c.failed and c.node.state.name != "CLOSED":
            problems.append(("logout-pending", f"{c.client_id} ({c.node.name}) logging out"))
    names_seen: dict[str, ClientSlot] = {}
    for c in checker.world.clients.values():
        if not c.alive or c.logged_out or c.failed or c.forger:
            continue  # a forger is never let in: it has no stream to converge
        node = c.node
        state = node.state.name
        if state != "SERVING":
            problems.append(("client-serving", f"{c.client_id} ({node.name}) is {state}"))
            continue
        if node.leader_id != leader.server_id or node.epoch != lnode.epoch:
            problems.append(
                (
                    "leader-known",
                    f"{c.client_id} follows {node.leader_id} in "
                    f"{node.epoch}, leader s{leader.server_id} in {lnode.epoch}",
                )
            )
            continue
        if node.pending:
            problems.append(
                (
                    "client-pending",
                    f"{c.client_id} still has unacknowledged cmids {sorted(node.pending)[:8]}",
                )
            )
        if sorted(node.users) != user_names:
            problems.append(
                (
                    "users-converged",
                    f"{c.client_id} sees users {sorted(node.users)}, leader {user_names}",
                )
            )
        name = node.name
        other = names_seen.get(name)
        # Several terminals of one account serve one name (machines with keys the account
        # holds); a key that is not the account's never does.
        if other is not None and not (
            lnode.state.holds_key(name, other.config.identity)
            and lnode.state.holds_key(name, c.config.identity)
        ):
            problems.append(
                ("names-unique", f"{c.client_id} and {other.client_id} both serve as {name!r}")
            )
        names_seen[name] = c
        mine = {r: m for r, (_, m, _) in rooms.items() if name in m}
        theirs = {r: tuple(sorted(members_of(info))) for r, info in node.rooms.items()}
        if mine != theirs:
            problems.append(
                (
                    "rooms-converged",
                    f"{c.client_id} ({name}) sees rooms {theirs}, leader's fold says {mine}",
                )
            )
            continue
        # Every member agrees with the log on each of its rooms' topic.
        topics = {r: t for r, (_, m, t) in rooms.items() if name in m}
        seen = {r: getattr(info, "topic", "") for r, info in node.rooms.items()}
        if topics != seen:
            problems.append(
                (
                    "topics-converged",
                    f"{c.client_id} ({name}) sees topics {seen}, leader's fold says {topics}",
                )
            )
    return problems


def completeness(checker: Checker, entries: list[Entry]) -> list[Problem]:
    """Invariant 7: every serving client got every chat entry due to it."""
    eligible = {
        c.client_id: c
        for c in checker.world.serving_clients()
        if not c.renamed and not c.logged_out
    }
    expected = expected_deliveries(entries, set(eligible))
    # Clients see an origin's client ID as its tag (tchat.core.projection).
    op_of = {e.id: (client_tag(e.origin.client_id), e.origin.cmid) for e in entries if e.origin}
    problems: list[Problem] = []
    for cid, ids in sorted(expected.items()):
        got = eligible[cid].delivered_ids
        # The copy delivered may even be one no running server holds any more.
        ops = {(e.origin.client_id, e.origin.cmid) for e in eligible[cid].delivered if e.origin}
        # Any copy of a twice-sequenced op counts as delivered (see expected_deliveries).
        missing = [eid for eid in ids if eid not in got and op_of.get(eid) not in ops]
        if missing:
            problems.append(
                (
                    "completeness",
                    f"{cid} ({eligible[cid].node.name}) never got "
                    f"{len(missing)} of its {len(ids)} entries: {missing[:8]}",
                )
            )
    return problems


def same_order(checker: Checker) -> list[Problem]:
    """Invariant 6: common room messages in the same relative order, bar concurrent ones."""
    by_room: dict[str, list[tuple[str, list[Entry]]]] = {}
    for cid, c in sorted(checker.world.clients.items()):
        rooms: dict[str, list[Entry]] = {}
        for e in c.delivered:
            body = e.body
            if type(body) is Chat and body.room is not None:
                rooms.setdefault(body.room, []).append(e)
        for room, seq in rooms.items():
            by_room.setdefault(room, []).append((cid, seq))
    problems: list[Problem] = []
    for room, seqs in sorted(by_room.items()):
        for i, (ca, sa) in enumerate(seqs):
            for cb, sb in seqs[i + 1 :]:
                bad = order_conflict(sa, sb)
                if bad:
                    problems.append(
                        (
                            "same-order",
                            f"room {room}: {ca} and {cb} deliver "
                            f"{bad[0]} and {bad[1]} in opposite orders",
                        )
                    )
                    break
    return problems
