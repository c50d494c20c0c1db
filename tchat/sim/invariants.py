"""tchat's invariants: cheap checks after every simulated step, full ones once faults stop.

Longer than 400 lines: the Checker is one object the world's hooks feed (steps, sends,
client events), and its invariants share what it records (epochs and leaders, acks
promised, forged identities, scrollback a server allowed); split by invariant, each part
would read the others' records. The end-of-run checks live in convergence.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tchat.core.access import may_read
from tchat.core.effects import ChatDelivered, ClientEvent, Failed, HistoryLoaded, Renamed, Sent
from tchat.core.messages import (
    Election,
    Entry,
    Epoch,
    RoomJoined,
    RoomLeft,
)
from tchat.sim.convergence import clients_converged, completeness, log_sanity, same_order
from tchat.sim.expected import fold_view, log_diff

if TYPE_CHECKING:
    from tchat.sim.world import ClientSlot, ServerSlot, World

Problem = tuple[str, str]  # (invariant, detail)


def shared(state: Any, name: str, entry: Entry) -> bool:
    """``entry`` is a message of a room public since before it, and ``name`` has been a
    member of that room since it last became public: scrollback may show it."""
    room = getattr(entry.body, "room", None)
    record = state.rooms.get(room) if room is not None else None
    if record is None or record.public_since is None or not record.public_since < entry.key:
        return False
    since = record.public_since
    return any(end is None or since < end for _, end in record.stretches.get(name, ()))


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
        # Forgers' keys and the client IDs of their replayed logins: never online anywhere.
        self.forged_identities: dict[bytes, str] = {}  # a forger's key -> its own name
        self.forged_sessions: set[str] = set()
        # (client address, entry id) of scrollback a server's fold let it give when it
        # answered: the reply may arrive after the room turned private (the rule judged the
        # moment of the answer, and a later mode change does not take it back).
        self.history_allowed: set[tuple[str, str]] = set()

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
        self._accounts(slot)
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

    # -- invariant 8: only a name's owner speaks as that name --------------------------
    def _accounts(self, slot: ServerSlot) -> None:
        """No name is online under an identity other than its account's; no forged login
        (another's name with the forger's key, a replayed proof, a victim's client ID, a
        guessed password) is ever admitted, and no forger's key joins another's account."""
        state = getattr(slot.node, "state", None)
        if state is None:
            return  # a scripted stand-in for a server (the simulator's own tests)
        for name, keys in state.added_keys.items():
            for key in keys:
                own = self.forged_identities.get(key, name)
                if own != name:
                    raise Violation(
                        "forged-key", f"s{slot.server_id}: a forger's key joined {name!r}"
                    )
        for name, record in state.users.items():
            if not state.holds_key(name, record.identity):
                raise Violation(
                    "account-owner",
                    f"s{slot.server_id}: {name!r} is online under a key that is not its account's",
                )
            own = self.forged_identities.get(record.identity, name)
            if own != name or not self.forged_sessions.isdisjoint(record.sessions):
                raise Violation(
                    "forged-login", f"s{slot.server_id}: a forger is online as {name!r}"
                )

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
        self._promise(slot, message.entry_id, "acked")

    def on_room_frame_sent(self, slot: Any, message: Any) -> None:
        """A room frame is its sender's acknowledgement of the room messages in it: the
        same promise as an Ack, for every entry the first time it is streamed."""
        for entry in message.entries:
            self._promise(slot, entry.id, "streamed")

    def on_history_sent(self, slot: Any, dst: str, message: Any) -> None:
        """Scrollback is judged by the answering server's fold as it answers (its own rule
        is not the judge: ``shared`` is the invariant's own reading of membership)."""
        reader = self.world.slot_at(dst)
        if reader is None or not hasattr(reader, "names") or slot.node is None:
            return
        names = set(reader.names)
        state = slot.node.state
        for entry in message.entries:
            if any(shared(state, name, entry) for name in names):
                self.history_allowed.add((dst, entry.id))

    def _promise(self, slot: Any, eid: str, what: str) -> None:
        if eid not in slot.durable_ids:
            raise Violation("ack-replicated", f"{slot.label} {what} {eid} before storing it")
        if eid in self.ack_promised:
            return  # a repeated ack of a resent op, a resent frame: nothing new promised
        self.ack_promised.add(eid)
        servers = self.world.servers
        for sid in sorted(getattr(slot.node, "live_backups", ())):
            backup = servers.get(sid)
            if backup is not None and eid not in backup.durable_ids:
                raise Violation(
                    "ack-replicated",
                    f"{slot.label} {what} {eid} while its live backup s{sid} had not stored it",
                )

    # -- invariants 3-5 as clients deliver ------------------------------------------
    def on_client_event(self, slot: Any, event: ClientEvent) -> None:
        kind = type(event)
        if kind is ChatDelivered:
            self._readable(slot, event.entry, "")  # type: ignore[attr-defined]
            self._delivered(slot, event.entry)  # type: ignore[attr-defined]
        elif kind is HistoryLoaded:
            for entry in event.entries:  # type: ignore[attr-defined]
                self._readable(slot, entry, "scrollback")
        elif kind is Sent:
            self._sent(slot, event)  # type: ignore[arg-type]
        elif kind is Renamed:
            slot.renamed = True
            slot.names.append(event.new)  # type: ignore[attr-defined]
        elif kind is Failed:
            slot.failed = True

    def _readable(self, slot: ClientSlot, entry: Entry, scrollback: str) -> None:
        """Invariant 8 for reading: a client is given, live or replayed, only a private
        message it is party to or a room message of a room it was a member of when the
        message was sequenced; as scrollback also a public room's messages since it last
        became public, if it was a member at some point since (the reply may race a leave).
        Judged by the servers that hold the entry (their fold knows who was in the room
        then); one that says yes is enough, since a partition's two sides may each have
        judged by their own view before a merge."""
        names = {slot.node.name, *slot.names}
        if scrollback and (slot.addr, entry.id) in self.history_allowed:
            return
        judges = [
            s.node.state
            for _, s in sorted(self.world.servers.items())
            if s.alive and s.node is not None and s.node.log.get(entry.dot) is not None
        ]
        if not judges:
            return  # no running server holds it: nobody left to judge by
        for state in judges:
            for name in names:
                if may_read(state, name, entry) or (scrollback and shared(state, name, entry)):
                    return
        if self._maybe_member(entry, names):
            return
        raise Violation(
            "read-access",
            f"{slot.client_id} ({'/'.join(sorted(names))}) got {entry.id} {entry.body!r}"
            f"{' as scrollback' if scrollback else ''}, which it may not read",
        )

    def _maybe_member(self, entry: Entry, names: set[str]) -> bool:
        """A merge may have undone a membership after the fact: a join made on one side of
        a partition, into a room the other side had made private meanwhile, is ignored by
        the merged fold, yet its member read the room live before the merge (or was sent
        its replay just before it). Such a membership is concurrent with what undid it:
        the entry is then excused if some join of the reader's into the room did not come
        after it and nothing ended that join before it, causally. Only on the failure path:
        it walks the servers' stored entries."""
        room = getattr(entry.body, "room", None)
        if room is None:
            return False
        clock = entry.clock
        for _, server in sorted(self.world.servers.items()):
            if not server.alive:
                continue
            stored = server.durable.entries
            for join in stored:
                body = join.body
                if not (
                    isinstance(body, RoomJoined)
                    and body.room == room
                    and body.name in names
                    and not clock < join.clock
                ):
                    continue
                ended = any(
                    join.clock < end.clock < clock
                    and isinstance(end.body, RoomLeft)  # going offline ends no membership
                    and end.body.room == room
                    and end.body.name == body.name
                    for end in stored
                )
                if not ended:
                    return True
        return False

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
        late = world.frames_from_the_gone()
        if late:
            return [("in-flight", f"{late} frame(s) from crashed or failed nodes on their way")]
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
                    ("log-converged", log_diff(s.server_id, ids, leader.server_id, lids))
                )
            elif s is not leader and fold_view(node.state) != lfold:
                problems.append(
                    (
                        "fold-converged",
                        f"s{s.server_id} fold {fold_view(node.state)} != leader's {lfold}",
                    )
                )
        problems.extend(log_sanity(self, lentries))
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
        problems.extend(clients_converged(self, leader, lfold))
        if not problems:
            problems.extend(completeness(self, lentries))
        return problems

    def same_order(self) -> list[Problem]:
        return same_order(self)
