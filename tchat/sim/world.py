"""The simulated world: virtual clock, event heap, nodes, crashes and restarts, effect routing.

Longer than 400 lines: scheduling, stepping nodes, routing their effects and the faults all
push to and pop from one event heap, whose order a seed replays and a fingerprint pins;
kept in one class, that order reads in one place. The network's delays and losses
(network.py), the workload, the invariants and the scenarios have their own modules."""

from __future__ import annotations

import heapq
import logging
import random
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tchat.core.codec import MAX_FRAME
from tchat.core.config import ClientConfig, ServerConfig, Timing
from tchat.core.effects import (
    Broadcast,
    Deliver,
    DurableState,
    Effect,
    JoinGroup,
    LeaderChanged,
    LeaveGroup,
    LogEvent,
    Multicast,
    Persist,
    Send,
    Stopped,
)
from tchat.core.messages import (
    Ack,
    DiscoverReply,
    Election,
    ElectionAck,
    HistoryReply,
    Message,
    Operation,
    Register,
    RoomFrame,
)
from tchat.sim import trace
from tchat.sim.identities import Identities, proven, session_binding, signed
from tchat.sim.invariants import Checker, Violation
from tchat.sim.network import Network, NetworkFaults
from tchat.sim.passwords import desk_step
from tchat.sim.slots import (
    INF,
    ClientSlot,
    NodeFactory,
    ServerSlot,
    Slot,
    client_addr,
    real_client_factory,
    real_server_factory,
    server_addr,
)
from tchat.sim.wire import SIM_CLUSTER_KEY, Wire

log = logging.getLogger(__name__)

WALL_BASE = 1_700_000_000.0  # entry timestamps look like wall-clock seconds
_DELIVER, _TICK, _ACTION = 0, 1, 2
STORM_STEPS = 50_000  # every this many steps, check that simulated time moved on...
STORM_MIN_SIM = 0.05  # ...by at least this much: else the nodes are in a message storm
SIM_HOT_ENTRIES = 24  # log entries a simulated server keeps in memory


class _Outsider:
    """A sender the world does not run, as ``Wire.encode`` names senders."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label


class World:
    """Runs nodes on a virtual clock; every random choice comes from the seed."""

    def __init__(
        self,
        seed: int,
        *,
        faults: NetworkFaults | None = None,
        timing: Timing | None = None,
        server_factory: NodeFactory | None = None,
        client_factory: NodeFactory | None = None,
        trace_len: int = 60,
        cluster_key: bytes | None = SIM_CLUSTER_KEY,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)  # seeds of the nodes' own generators
        self.net = Network(random.Random(seed * 2654435761 + 1), faults)
        # Every message goes through the real codec and frame cap (encoded once per object).
        self.wire = Wire(cluster_key, max_frame)
        self.timing = timing or Timing()
        self.server_factory = server_factory or real_server_factory()
        self.client_factory = client_factory or real_client_factory()
        self.now = 0.0
        self.steps = 0
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self.servers: dict[int, ServerSlot] = {}
        self.clients: dict[str, ClientSlot] = {}
        self._by_addr: dict[str, Slot] = {}
        self._client_count = 0
        self.identities = Identities()
        self.forged_dropped = 0  # Registers the wire dropped: their proof was not for this session
        self.trace: deque[tuple[float, str, str, str, Any]] = deque(maxlen=trace_len)
        self.checker = Checker(self)
        self.faults_active = True  # False in the quiescent phase
        self._storm_mark = (0, 0.0)
        self._storm_check = STORM_STEPS
        # Scripted scenarios look at (and may swallow) deliveries: return True to drop one.
        self.intercept: Callable[[str, str, Message], bool] | None = None

    # -- scheduling -------------------------------------------------------------------
    def _push(self, at: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, payload))

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` (a workload step or a fault) at simulated time ``when``."""
        self._push(max(when, self.now), _ACTION, action)

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.now + delay, action)

    def run_until(self, end: float, check_every: float = 0.0) -> None:
        """Process every event up to ``end``; the clock then reads ``end``."""
        heap = self._heap
        while heap and heap[0][0] <= end:
            at, _, kind, payload = heapq.heappop(heap)
            self.now = at
            self.steps += 1
            if self.steps >= self._storm_check:
                self._check_storm()
            if kind == _DELIVER:
                self._deliver(*payload)
            elif kind == _TICK:
                self._tick(*payload)
            else:
                payload()
        self.now = max(self.now, end)

    def _check_storm(self) -> None:
        """Many steps in almost no simulated time: nodes are feeding each other a storm."""
        steps, then = self._storm_mark
        if self.now - then < STORM_MIN_SIM:
            senders: dict[str, int] = {}
            for _, src, _, _, obj in self.trace:
                name = f"{src} {type(obj).__name__}"
                senders[name] = senders.get(name, 0) + 1
            top = sorted(senders.items(), key=lambda kv: -kv[1])[:4]
            raise Violation(
                "message-storm",
                f"{self.steps - steps} steps in {self.now - then:.4f} simulated s; "
                f"recent traffic: {top}",
            )
        self._storm_mark = (self.steps, self.now)
        self._storm_check = self.steps + STORM_STEPS

    def run_for(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def note(self, text: str) -> None:
        """Put a line about a fault or workload step into the trace."""
        self.trace.append((self.now, "*", "", text, None))

    # -- servers ----------------------------------------------------------------------
    def add_server(self, server_id: int, start: bool = True) -> ServerSlot:
        if server_id in self.servers:
            raise ValueError(f"server {server_id} exists")
        config = ServerConfig(
            server_id=server_id,
            addr=server_addr(server_id),
            timing=self.timing,
            # A hot window far smaller than a run's log: catch-up, replay, scrollback and
            # re-folds read old entries from the log's archive, as on a long-lived server.
            hot_entries=SIM_HOT_ENTRIES,
            fold_snapshot_every=SIM_HOT_ENTRIES * 2,
        )
        slot = ServerSlot(server_id, config)
        self.servers[server_id] = slot
        self._by_addr[slot.addr] = slot
        if start:
            self.start_server(server_id)
        return slot

    def start_server(self, server_id: int) -> None:
        slot = self.servers[server_id]
        if slot.alive:
            return
        durable = DurableState(list(slot.durable.entries), dict(slot.durable.meta))
        slot.incarnation += 1
        slot.alive = True
        slot.timer_at = INF
        self.note(f"start {slot.label} #{slot.incarnation} ({len(durable.entries)} entries)")
        rng = random.Random(self.rng.getrandbits(64))
        slot.node = self._call(slot, self.server_factory, slot.config, durable, rng)
        self._step(slot, "start", slot.node.start, self.now)

    def crash_server(self, server_id: int) -> None:
        slot = self.servers[server_id]
        if not slot.alive:
            return
        self.note(f"crash {slot.label} (role {self.role(slot)})")
        slot.alive = False
        slot.crashes += 1
        slot.node = None
        self.net.forget(slot.addr)
        self.checker.on_fault("crash")

    def step_down(self, server_id: int) -> None:
        """An operator asks the leader to hand over and stay on as a backup."""
        slot = self.servers[server_id]
        if not slot.alive or not hasattr(slot.node, "step_down"):
            return
        self.note(f"step down {slot.label} ({self.role(slot)})")
        self._step(slot, "step_down", slot.node.step_down, self.now)
        self.checker.on_fault("step-down")

    def pause_server(self, server_id: int, duration: float) -> None:
        """Freeze a server (a long GC or SIGSTOP): no steps until the pause ends, then it
        sees every frame that arrived meanwhile and its overdue timers, with its old state."""
        slot = self.servers[server_id]
        if not slot.alive:
            return
        self.note(f"pause {slot.label} ({self.role(slot)}) for {duration:.3f}s")
        slot.paused_until = max(slot.paused_until, self.now + duration)
        self.checker.on_fault("pause")

    def resume_all(self) -> None:
        """End every pause now (their queued frames and timers run from this instant)."""
        for slot in self.servers.values():
            if slot.paused_until > self.now:
                slot.paused_until = self.now
                if slot.alive:
                    slot.timer_at = INF
                    self._push(self.now, _TICK, (slot, slot.incarnation))

    def stop_server(self, server_id: int) -> None:
        """Graceful stop (SIGTERM): the node says goodbye, then vanishes."""
        slot = self.servers[server_id]
        if not slot.alive:
            return
        self.note(f"stop {slot.label} (role {self.role(slot)})")
        self._step(slot, "stop", slot.node.stop, self.now)
        slot.alive = False
        slot.node = None
        self.net.forget(slot.addr)
        self.checker.on_fault("stop")

    def running_servers(self) -> list[ServerSlot]:
        return [s for _, s in sorted(self.servers.items()) if s.alive]

    def leaders(self) -> list[ServerSlot]:
        return [s for s in self.running_servers() if self.role(s) == "LEADER"]

    def slot_at(self, addr: str) -> Slot | None:
        return self._by_addr.get(addr)

    @staticmethod
    def role(slot: ServerSlot) -> str:
        return slot.node.role.name if slot.node is not None else "DOWN"

    # -- clients ----------------------------------------------------------------------
    def add_client(
        self,
        name: str,
        side: int | None = None,
        multicast: bool = True,
        owner: str | None = None,
        client_id: str | None = None,
        forger: str = "",
        password: str = "",
    ) -> ClientSlot:
        """A client logging in as ``name`` with ``owner``'s key (default: the name's
        owner's); a forger (``forger`` names its trick) may reuse a victim's client ID."""
        self._client_count += 1
        number = self._client_count
        owner = owner or name
        config = ClientConfig(
            name=name,
            client_id=client_id or f"c{number}",
            addr=client_addr(number),
            timing=self.timing,
            multicast=multicast,  # False: its rooms come over its session (probe failed)
            identity=self.identities.public(owner),
        )
        client_id = f"c{number}"  # the slot's own label, whatever ID it claims
        slot = ClientSlot(client_id, config)
        slot.owner, slot.forger, slot.password = owner, forger, password
        self.clients[client_id] = slot
        self._by_addr[slot.addr] = slot
        if side is not None:
            self.net.place(slot.addr, side)
        elif self.net.partitioned:
            self.net.place(slot.addr, self.rng.randrange(2))
        slot.incarnation = 1
        slot.alive = True
        self.note(f"login {client_id} as {name!r}")
        rng = random.Random(self.rng.getrandbits(64))
        slot.node = self._call(slot, self.client_factory, config, rng)
        self._step(slot, "start", slot.node.start, self.now)
        return slot

    def crash_client(self, client_id: str) -> None:
        slot = self.clients[client_id]
        if not slot.alive:
            return
        self.note(f"client crash {client_id}")
        slot.alive = False
        slot.node = None
        self.net.forget(slot.addr)

    def submit(self, client_id: str, op: Operation) -> int | None:
        """Have a client ask for ``op``; None if the client refused (not serving)."""
        slot = self.clients[client_id]
        if not slot.alive:
            return None
        from tchat.core.errors import LocalProtocolError

        try:
            cmid, effects = slot.node.submit(op, self.now, WALL_BASE + self.now)
        except LocalProtocolError as exc:
            self.note(f"{client_id} refused {op!r}: {exc}")
            return None
        except Exception:
            self._crashed(slot, "submit")
            raise
        self.trace.append((self.now, client_id, "submit", f"cmid={cmid}", op))
        self._apply(slot, effects)
        self._schedule_timer(slot)
        return cmid

    def frames_from_the_gone(self) -> int:
        """Frames still on their way from a node that has crashed, or a client that gave up
        (failed), since it sent them (the network delays a few by up to 1.5 s): one may yet
        act, e.g. a late Register logs in a ghost that only the client timeout removes, so
        a world with any in flight has not converged."""
        count = 0
        for _, _, kind, payload in self._heap:
            if kind == _DELIVER:
                sender = self._by_addr.get(payload[2])
                if sender is not None and (not sender.alive or getattr(sender, "failed", False)):
                    count += 1
        return count

    def serving_clients(self) -> list[ClientSlot]:
        return [
            c
            for c in self.clients.values()
            if c.alive and not c.logged_out and not c.failed and c.node.state.name == "SERVING"
        ]

    # -- stepping nodes ---------------------------------------------------------------
    def _call(self, slot: Slot, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Violation:
            raise
        except Exception:
            self._crashed(slot, getattr(fn, "__name__", "call"))
            raise

    def _crashed(self, slot: Slot, what: str) -> None:
        tb = traceback.format_exc(limit=-6)
        raise Violation("node-exception", f"{slot.label} raised in {what}:\n{tb}")

    def _step(self, slot: Slot, what: str, fn: Callable[..., list[Effect]], *args: Any) -> None:
        try:
            effects = fn(*args)
        except Violation:
            raise
        except Exception:
            self._crashed(slot, what)
        self._apply(slot, effects)
        if slot.alive:
            self._schedule_timer(slot)
            if isinstance(slot, ServerSlot):
                self.checker.after_server_step(slot)

    def _deliver(self, dst: str, incarnation: int, src: str, data: bytes) -> None:
        slot = self._by_addr.get(dst)
        if slot is None or not slot.alive or slot.incarnation != incarnation:
            return  # in flight to a node that crashed: lost
        if isinstance(slot, ServerSlot) and slot.paused_until > self.now:
            # Paused: the frame waits in the socket buffer, in arrival order.
            self._push(slot.paused_until, _DELIVER, (dst, incarnation, src, data))
            return
        if not self.net.reachable(src, dst):
            return  # the partition or cut came up while it was in flight
        message = self.wire.decode(data, isinstance(slot, ServerSlot), src)
        if self.intercept is not None and self.intercept(src, dst, message):
            return
        if type(message) is Register and isinstance(slot, ServerSlot):
            sender = self._by_addr.get(src)
            incarnation = sender.incarnation if sender is not None else 0
            if not proven(message, session_binding(src, incarnation, dst, slot.incarnation)):
                # The runtime drops it and counts it (bad-proof): the core never sees it.
                self.forged_dropped += 1
                self.trace.append((self.now, src, dst, "bad-proof", message))
                return
        self.trace.append((self.now, src, dst, "", message))
        if isinstance(message, Election):
            self.checker.on_election_received(slot, message)
        runtime = desk_step(slot.node, message, src, self.now) if slot.kind == "server" else None
        if runtime is not None:  # a password: the server runtime's desk takes it first
            what, fn, args = runtime
            self._step(slot, what, fn, *args)
            return
        self._step(slot, "handle", slot.node.handle, message, src, self.now)

    def _sign(self, slot: ClientSlot, dst: str, register: Register) -> Register:
        """The proof the client's runtime puts on its Register for the session to ``dst``
        (a forger replaying a login signs for another session: the wire drops it)."""
        target = self._by_addr.get(dst)
        incarnation = target.incarnation if target is not None else 0
        binding = session_binding(slot.addr, slot.incarnation, dst, incarnation)
        if slot.forger == "replay":
            binding = session_binding("elsewhere", 0, dst, incarnation)
        if slot.password:  # --password-prompt's: with every login, as the runtime's signer
            register = replace(register, password=slot.password)
        return signed(register, self.identities.key(slot.owner), binding)

    def inject(self, slot: Slot, src: str, message: Message) -> None:
        """Hand ``slot`` a frame from ``src``, a node the world does not run (a scripted peer):
        encoded as a client's (unsigned) and decoded like any other, now."""
        data = self.wire.encode(message, _Outsider(src), from_server=False)
        self._deliver(slot.addr, slot.incarnation, src, data)

    def _tick(self, slot: Slot, incarnation: int) -> None:
        if not slot.alive or slot.incarnation != incarnation:
            return
        if slot.timer_at == self.now:
            slot.timer_at = INF
        if isinstance(slot, ServerSlot) and slot.paused_until > self.now:
            if slot.paused_until < slot.timer_at:
                slot.timer_at = slot.paused_until
                self._push(slot.paused_until, _TICK, (slot, slot.incarnation))
            return
        deadline = slot.node.next_deadline()
        if deadline is not None and deadline <= self.now:
            if slot.last_tick == self.now:
                slot.spin += 1
                if slot.spin > 1000:
                    raise Violation(
                        "timer-livelock",
                        f"{slot.label}: next_deadline stays at {deadline} <= now after tick",
                    )
            else:
                slot.spin = 0
            slot.last_tick = self.now
            self._step(slot, "tick", slot.node.tick, self.now)
        else:
            self._schedule_timer(slot)

    def carry_out(self, slot: Slot, effects: list[Effect]) -> None:
        """Carry out the effects of a step a driver took on ``slot``'s node (the workload's
        history requests), then wake the node by its new deadline."""
        self._apply(slot, effects)
        self._schedule_timer(slot)

    def _schedule_timer(self, slot: Slot) -> None:
        deadline = slot.node.next_deadline()
        if deadline is None or deadline >= slot.timer_at:
            return
        deadline = max(deadline, self.now)
        slot.timer_at = deadline
        self._push(deadline, _TICK, (slot, slot.incarnation))

    # -- effects ----------------------------------------------------------------------
    def _apply(self, slot: Slot, effects: list[Effect]) -> None:
        src = slot.addr
        is_server = isinstance(slot, ServerSlot)
        for effect in effects:
            if isinstance(effect, Send):
                message = effect.message
                if type(message) is Register and isinstance(slot, ClientSlot):
                    message = self._sign(slot, effect.addr, message)
                # A DiscoverReply goes as a datagram to a peer without a session (the
                # runtime's DATAGRAM_REPLIES): it must fit one.
                data = self.wire.encode(message, slot, is_server, type(message) is DiscoverReply)
                self._send(src, effect.addr, message, data, slot)
            elif isinstance(effect, Multicast):
                # One UDP datagram to the group, whoever is in it.
                message = effect.message
                data = self.wire.encode(message, slot, is_server, datagram=True)
                for member in self.net.members(effect.group):
                    self._send(src, member, message, data, slot, multicast=True)
            elif isinstance(effect, Broadcast):
                message = effect.message
                data = self.wire.encode(message, slot, is_server, datagram=True)
                for addr, other in list(self._by_addr.items()):
                    if addr != src and other.alive:
                        self._send(src, addr, message, data, slot)
            elif isinstance(effect, Persist):
                if not isinstance(slot, ServerSlot):
                    raise Violation("bad-effect", f"{slot.label} (a client) asked to Persist")
                slot.durable.apply(effect)
                ids = slot.durable_ids
                for entry in effect.entries:
                    ids.add(entry.id)
            elif isinstance(effect, Deliver):
                self.checker.on_client_event(slot, effect.event)
            elif isinstance(effect, JoinGroup):
                self.net.join(src, effect.group)
            elif isinstance(effect, LeaveGroup):
                self.net.leave(src, effect.group)
            elif isinstance(effect, LeaderChanged):
                self.trace.append((self.now, src, "", "leader-changed", effect))
            elif isinstance(effect, LogEvent):
                if effect.kind == "hop-skipped" and isinstance(slot, ServerSlot):
                    # A hop that timed out (a delay spike, a pause) was resent elsewhere: the
                    # LCR bound assumes timely hops, so the round no longer counts as clean.
                    self.checker.taint_election(slot.node.election.term)
                if effect.kind in ("election", "leader", "error", "warning"):
                    self.trace.append((self.now, src, "", "log", effect))
            elif isinstance(effect, Stopped):
                self.trace.append((self.now, src, "", "stopped", effect))
            else:
                raise Violation("bad-effect", f"{slot.label} returned {effect!r}")

    def _send(
        self,
        src: str,
        dst: str,
        message: Message,
        data: bytes,
        sender: Slot,
        multicast: bool = False,
    ) -> None:
        if isinstance(message, Election) and not multicast:
            self.checker.on_election_send(sender, message)
        elif isinstance(message, Ack):
            self.checker.on_ack_sent(sender, message)
        elif isinstance(message, RoomFrame):
            self.checker.on_room_frame_sent(sender, message)
        elif isinstance(message, HistoryReply):
            self.checker.on_history_sent(sender, dst, message)
        target = self._by_addr.get(dst)
        if target is None or not target.alive:
            return  # nobody there: a hop to a dead neighbour is part of the LCR bound
        if not self.net.reachable(src, dst):
            if isinstance(message, (Election, ElectionAck)):
                self.checker.taint_election(message.term)
            return
        times = self.net.arrivals(src, dst, self.now, multicast)
        if len(times) != 1 and isinstance(message, (Election, ElectionAck)):
            self.checker.taint_election(message.term)
        payload = (dst, target.incarnation, src, data)
        for at in times:
            self._push(at, _DELIVER, payload)

    # -- faults -----------------------------------------------------------------------
    def partition(self, side_b: list[str]) -> None:
        self.note(f"partition: {sorted(side_b)} | rest")
        self.net.partition(side_b)
        self.checker.on_fault("partition")

    def heal(self) -> None:
        if self.net.partitioned:
            self.note("heal partition")
            self.net.heal()
            self.checker.on_fault("heal")

    def cut(self, a: str, b: str) -> None:
        self.note(f"cut link {a} <-> {b}")
        self.net.cut(a, b)

    def uncut(self, a: str, b: str) -> None:
        self.note(f"restore link {a} <-> {b}")
        self.net.uncut(a, b)

    # -- results ----------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 of a canonical dump of the final state: equal seeds give equal prints."""
        return trace.fingerprint(self)

    def format_trace(self, lines: int = 30, focus: str = "") -> list[str]:
        """The last trace lines (only those about the nodes ``focus`` names, if any)."""
        return trace.format_trace(self, lines, focus)
