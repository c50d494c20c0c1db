"""tchat's invariants: cheap checks after every simulated step, full ones once faults stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tchat.core.effects import ChatDelivered, ClientEvent, Failed, Renamed, Sent
from tchat.core.messages import (
    Chat,
    Election,
    Entry,
    Epoch,
    RoomJoined,
    RoomLeft,
    UserOffline,
    UserOnline,
)

if TYPE_CHECKING:
    from tchat.sim.world import ClientSlot, ServerSlot, World

Problem = tuple[str, str]  # (invariant, detail)


class Violation(Exception):
    """An invariant broke: the seed stops here."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


def election_bound(n: int) -> int:
    """LCR worst case for a ring of n: every candidate's token travels at most its distance,
    n(n+1)/2 in all, plus one skipped (dead) neighbour per server."""
    return n * (n + 1) // 2 + n


@dataclass(slots=True)
class ElectionRound:
    term: int
    started: float
    ring: int  # servers in the world: the ring's size for the bound
    messages: int = 0
    clean: bool = True  # no Election frame lost, duplicated or cut by a partition
    completed: float | None = None
    leader: int = 0
    initiators: list[int] = field(default_factory=list)  # sent a token before receiving one
    received: set[int] = field(default_factory=set)

    @property
    def duration(self) -> float:
        return (self.completed if self.completed is not None else self.started) - self.started

    @property
    def bound(self) -> int:
        return election_bound(self.ring)


class Checker:
    """Watches one world: incremental invariants as it runs, convergence at the end."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.leader_of_epoch: dict[Epoch, int] = {}
        self.max_epoch: dict[int, Epoch] = {}
        self.acked: dict[str, str] = {}  # entry id -> client id it was acknowledged to
        self.ack_promised: set[str] = set()  # entry ids some leader has sent an Ack for
        self.causal_gaps: set[str] = set()  # messages ordered without a lost predecessor
        self.rounds: dict[int, ElectionRound] = {}

    # -- invariant 1: one leader per epoch, epochs only grow ------------------------
    def after_server_step(self, slot: ServerSlot) -> None:
        node = slot.node
        epoch = node.epoch
        sid = slot.server_id
        prev = self.max_epoch.get(sid)
        if prev is not None and epoch < prev:
            raise Violation(
                "epoch-monotonic", f"s{sid} epoch went from {prev} to {epoch} ({node.role.name})"
            )
        self.max_epoch[sid] = epoch
        if node.role.name != "LEADER":
            return
        if epoch.leader != sid:
            raise Violation("leader-epoch", f"s{sid} is LEADER with epoch {epoch} of another id")
        holder = self.leader_of_epoch.setdefault(epoch, sid)
        if holder != sid:
            raise Violation("one-leader-per-epoch", f"s{sid} and s{holder} both lead {epoch}")
        rnd = self.rounds.get(epoch.term)
        if rnd is not None and rnd.completed is None:
            rnd.completed = self.world.now
            rnd.leader = sid

    # -- invariant 9: election message counts ---------------------------------------
    def on_election_send(self, slot: Any, message: Election) -> None:
        rnd = self.rounds.get(message.term)
        if rnd is None:
            rnd = ElectionRound(message.term, self.world.now, len(self.world.servers))
            self.rounds[message.term] = rnd
        rnd.messages += 1
        sid = slot.server_id
        if sid not in rnd.received and sid not in rnd.initiators:
            rnd.initiators.append(sid)

    def on_election_received(self, slot: Any, message: Election) -> None:
        rnd = self.rounds.get(message.term)
        if rnd is not None:
            rnd.received.add(slot.server_id)

    def taint_election(self, term: int) -> None:
        rnd = self.rounds.get(term)
        if rnd is not None:
            rnd.clean = False

    def on_fault(self, kind: str) -> None:
        # A partition splits the ring mid-round: its count says nothing about LCR's bound.
        if kind in ("partition", "heal"):
            for rnd in self.rounds.values():
                if rnd.completed is None:
                    rnd.clean = False

    def completed_rounds(self) -> list[ElectionRound]:
        return [r for _, r in sorted(self.rounds.items()) if r.completed is not None]

    def check_election_bounds(self) -> list[Problem]:
        return [
            (
                "election-bound",
                f"round {r.term} used {r.messages} Election messages, "
                f"bound {r.bound} for {r.ring} servers",
            )
            for r in self.completed_rounds()
            if r.clean and r.messages > r.bound
        ]

    # -- invariant 3 at the source: an ack waits for every live backup --------------
    def on_ack_sent(self, slot: Any, message: Any) -> None:
        """The leader acknowledges an entry only once it and every backup it counts as
        live have stored it durably (so any surviving server holds every ack)."""
        eid = message.entry_id
        if eid not in slot.durable_ids:
            raise Violation("ack-replicated", f"{slot.label} acked {eid} before storing it")
        if eid in self.ack_promised:
            return  # a repeated ack of a resent op promises nothing new
        self.ack_promised.add(eid)
        servers = self.world.servers
        for sid in sorted(getattr(slot.node, "live_backups", ())):
            backup = servers.get(sid)
            if backup is not None and eid not in backup.durable_ids:
                raise Violation(
                    "ack-replicated",
                    f"{slot.label} acked {eid} while its live backup s{sid} had not stored it",
                )

    # -- invariants 3-5 as clients deliver ------------------------------------------
    def on_client_event(self, slot: Any, event: ClientEvent) -> None:
        kind = type(event)
        if kind is ChatDelivered:
            self._delivered(slot, event.entry)  # type: ignore[attr-defined]
        elif kind is Sent:
            self._sent(slot, event)  # type: ignore[arg-type]
        elif kind is Renamed:
            slot.renamed = True
            slot.names.append(event.new)  # type: ignore[attr-defined]
        elif kind is Failed:
            slot.failed = True

    def _delivered(self, slot: ClientSlot, entry: Entry) -> None:
        eid = entry.id
        if eid in slot.delivered_ids:
            raise Violation("exactly-once", f"{slot.client_id} delivered {eid} twice")
        if entry.origin is not None:
            if entry.origin in slot.delivered_origins:
                raise Violation(
                    "exactly-once", f"{slot.client_id} delivered two copies of {entry.origin}"
                )
            slot.delivered_origins.add(entry.origin)
        clock = entry.clock
        total = clock.total
        if total < slot.max_total:
            # Only an entry with a larger clock sum can be causally after this one.
            for earlier in slot.delivered:
                if clock < earlier.clock:
                    raise Violation(
                        "causal-order",
                        f"{slot.client_id} delivered {eid} {clock} after {earlier.id} "
                        f"{earlier.clock}, which it happened before",
                    )
        else:
            slot.max_total = total
        slot.delivered.append(entry)
        slot.delivered_ids.add(eid)

    def _sent(self, slot: ClientSlot, event: Sent) -> None:
        eid = event.entry_id
        if not any(eid in s.durable_ids for s in self.world.servers.values()):
            raise Violation(
                "ack-durable",
                f"{slot.client_id} got Sent({event.cmid}, {eid}) before any "
                "server stored the entry",
            )
        prev = slot.acked.get(event.cmid)
        if prev is not None and prev != eid:
            raise Violation(
                "exactly-once", f"{slot.client_id} cmid {event.cmid} acked as {prev} and {eid}"
            )
        slot.acked[event.cmid] = eid
        self.acked[eid] = slot.client_id

    # -- invariants 2, 3, 7, 8: convergence once faults stop ------------------------
    def convergence(self) -> list[Problem]:
        """What still keeps the world from having converged (empty when it has)."""
        world = self.world
        running = world.running_servers()
        if not running:
            return [("liveness", "no server is running")]
        leaders = [s for s in running if s.node.role.name == "LEADER"]
        if len(leaders) != 1:
            roles = ", ".join(f"s{s.server_id}={s.node.role.name}" for s in running)
            return [("one-leader", f"{len(leaders)} leaders among running servers: {roles}")]
        leader = leaders[0]
        lnode = leader.node
        epoch = lnode.epoch
        problems: list[Problem] = []
        lentries = list(lnode.log.entries())
        lids = [e.id for e in lentries]
        lfold = fold_view(lnode.state)
        for s in running:
            node = s.node
            if s is not leader and (
                node.role.name != "BACKUP"
                or node.leader_id != leader.server_id
                or node.epoch != epoch
            ):
                problems.append(
                    (
                        "leader-known",
                        f"s{s.server_id} is {node.role.name} "
                        f"following {node.leader_id} in {node.epoch}; leader "
                        f"s{leader.server_id} in {epoch}",
                    )
                )
                continue
            ids = lids if s is leader else [e.id for e in node.log.entries()]
            if ids != lids:
                problems.append(
                    ("log-converged", _log_diff(s.server_id, ids, leader.server_id, lids))
                )
            elif s is not leader and fold_view(node.state) != lfold:
                problems.append(
                    (
                        "fold-converged",
                        f"s{s.server_id} fold {fold_view(node.state)} != leader's {lfold}",
                    )
                )
        problems.extend(self._log_sanity(lentries))
        lid_set = set(lids)
        # Without quorums a leader cut off from every backup acknowledges alone: an entry whose
        # every holder is down for good is unavailable, not lost (the design's promise holds
        # "while one server that stored it survives"). Every other ack must be everywhere.
        alive_ids = [s.durable_ids for s in running]
        must_have = [eid for eid in self.acked if any(eid in ids for ids in alive_ids)]
        for s in running:
            ids_set = lid_set if s is leader else {e.id for e in s.node.log.entries()}
            lost = sorted(eid for eid in must_have if eid not in ids_set)
            if lost:
                problems.append(("ack-lost", f"s{s.server_id} lacks acknowledged {lost[:8]}"))
        problems.extend(self._clients_converged(leader, lfold))
        if not problems:
            problems.extend(self._completeness(lentries))
        return problems

    def _log_sanity(self, entries: list[Entry]) -> list[Problem]:
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
                self.causal_gaps.add(e.id)
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

    def _clients_converged(self, leader: ServerSlot, lfold: Any) -> list[Problem]:
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
        clients = self.world.clients.values()
        live = {
            c.node.name
            for c in clients
            if c.alive and not c.logged_out and not c.failed and c.node.state.name != "CLOSED"
        }
        serving = {c.node.name for c in self.world.serving_clients()}
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
        names_seen: dict[str, str] = {}
        for c in self.world.clients.values():
            if not c.alive or c.logged_out or c.failed:
                continue
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
            if name in names_seen:
                problems.append(
                    ("names-unique", f"{c.client_id} and {names_seen[name]} both serve as {name!r}")
                )
            names_seen[name] = c.client_id
            mine = {r: m for r, (_, m) in rooms.items() if name in m}
            theirs = {r: tuple(sorted(_members(info))) for r, info in node.rooms.items()}
            if mine != theirs:
                problems.append(
                    (
                        "rooms-converged",
                        f"{c.client_id} ({name}) sees rooms {theirs}, leader's fold says {mine}",
                    )
                )
        return problems

    # -- invariant 7: completeness --------------------------------------------------
    def _completeness(self, entries: list[Entry]) -> list[Problem]:
        eligible = {
            c.client_id: c
            for c in self.world.serving_clients()
            if not c.renamed and not c.logged_out
        }
        expected = expected_deliveries(entries, set(eligible))
        op_of = {e.id: (e.origin.client_id, e.origin.cmid) for e in entries if e.origin}
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

    # -- invariant 6: same order in a room ------------------------------------------
    def same_order(self) -> list[Problem]:
        by_room: dict[str, list[tuple[str, list[Entry]]]] = {}
        for cid, c in sorted(self.world.clients.items()):
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
                    bad = _order_conflict(sa, sb)
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


def _members(info: Any) -> Any:
    if isinstance(info, tuple) and len(info) == 2 and not isinstance(info[1], str):
        return info[1]
    return info.members


def fold_view(state: Any) -> tuple[dict[str, Any], dict[str, tuple[str, tuple[str, ...]]]]:
    """A server's fold reduced to comparable values: users and rooms (group, members)."""
    users = {name: state.users[name] for name in sorted(state.users)}
    rooms: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name in sorted(state.rooms):
        value = state.rooms[name]
        if isinstance(value, tuple):
            group, members = value
        else:
            group, members = value.group, value.members
        rooms[name] = (group, tuple(sorted(members)))
    return users, rooms


def _log_diff(sid: int, ids: list[str], lid: int, lids: list[str]) -> str:
    mine, theirs = set(ids), set(lids)
    if mine == theirs:
        first = next(i for i, (a, b) in enumerate(zip(ids, lids, strict=False)) if a != b)
        return f"s{sid} orders its log differently from s{lid} from position {first}"
    return (
        f"s{sid} has {len(ids)} entries, leader s{lid} {len(lids)}; only s{sid}: "
        f"{sorted(mine - theirs)[:6]}, only s{lid}: {sorted(theirs - mine)[:6]}"
    )


def expected_deliveries(entries: list[Entry], clients: set[str]) -> dict[str, list[str]]:
    """Chat entries each of ``clients`` must have delivered, by replaying the log in key order.

    A room message goes to the room's members at that point of the log, a private one to
    its addressee and its sender; names map to sessions through UserOnline / UserOffline.
    Only membership that holds in every causal view counts: the login and the join happened
    before the message, and the leave or logout that ends it (if any) happened after it. A
    join or leave made concurrently on the other side of a partition can fall on either side
    of the message in the merged order, and the client may have delivered later entries
    already: neither "must deliver" nor "must not" is right for it, so it is not checked.
    """
    ends = _membership_ends(entries)
    session: dict[str, tuple[str, Entry]] = {}  # name -> (client_id, UserOnline entry)
    members: dict[str, dict[str, Entry]] = {}  # room -> name -> RoomJoined entry
    expected: dict[str, list[str]] = {}
    origins: set[tuple[str, int]] = set()
    for e in entries:
        body = e.body
        kind = type(body)
        if e.origin is not None:
            # One op sequenced on both sides of a partition: only its first copy counts here
            # (the copy itself is reported as an exactly-once violation).
            op = (e.origin.client_id, e.origin.cmid)
            if op in origins:
                continue
            origins.add(op)
        if kind is UserOnline:
            # A second session under a name already online lost a merge clash: ignored.
            session.setdefault(body.name, (body.client_id, e))
        elif kind is UserOffline:
            online = session.get(body.name)
            if online is not None and online[0] == body.client_id:
                del session[body.name]
                for names in members.values():
                    names.pop(body.name, None)
        elif kind is RoomJoined:
            if body.name in session:
                members.setdefault(body.room, {}).setdefault(body.name, e)
        elif kind is RoomLeft:
            members.get(body.room, {}).pop(body.name, None)
        elif kind is Chat:
            if body.room is not None:
                room = members.get(body.room, {})
                names = sorted(n for n, joined in room.items() if _spans(joined, e, ends))
            else:
                names = sorted({body.sender, body.to or ""})
            for name in names:
                online = session.get(name)
                if online is not None and online[0] in clients and _spans(online[1], e, ends):
                    expected.setdefault(online[0], []).append(e.id)
    return expected


def _membership_ends(entries: list[Entry]) -> dict[str, Entry]:
    """For each UserOnline / RoomJoined entry id, the entry that ends it (if any)."""
    ends: dict[str, Entry] = {}
    open_logins: dict[str, Entry] = {}  # name -> UserOnline
    open_joins: dict[tuple[str, str], Entry] = {}  # (room, name) -> RoomJoined
    for e in entries:
        body = e.body
        kind = type(body)
        if kind is UserOnline:
            open_logins.setdefault(body.name, e)
        elif kind is UserOffline:
            login = open_logins.get(body.name)
            if login is not None and login.body.client_id == body.client_id:  # type: ignore[attr-defined]
                ends[login.id] = e
                del open_logins[body.name]
                for key in [k for k in open_joins if k[1] == body.name]:
                    ends[open_joins.pop(key).id] = e
        elif kind is RoomJoined:
            if body.name in open_logins:
                open_joins.setdefault((body.room, body.name), e)
        elif kind is RoomLeft:
            join = open_joins.pop((body.room, body.name), None)
            if join is not None:
                ends[join.id] = e
    return ends


def _spans(start: Entry, e: Entry, ends: dict[str, Entry]) -> bool:
    """``start`` (a login or join) happened before ``e`` and its end, if any, after it."""
    if not start.clock < e.clock:
        return False
    end = ends.get(start.id)
    return end is None or e.clock < end.clock


def _order_conflict(sa: list[Entry], sb: list[Entry]) -> tuple[str, str] | None:
    """Two entries both clients delivered in opposite orders without being concurrent."""
    pos_b = {e.id: i for i, e in enumerate(sb)}
    common = [e for e in sa if e.id in pos_b]
    positions = [pos_b[e.id] for e in common]
    if positions == sorted(positions):
        return None
    for i, x in enumerate(common):
        for y in common[i + 1 :]:
            if pos_b[y.id] < pos_b[x.id] and not x.clock.concurrent(y.clock):
                return x.id, y.id
    return None
