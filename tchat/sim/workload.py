"""A random workload and fault schedule for one seed: users chatting while servers fail."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

from tchat.core.messages import JoinRoom, LeaveRoom, Logout, Operation, SendChat, SetAway
from tchat.sim.network import NetworkFaults
from tchat.sim.world import World

NAMES = ("ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lou")
ROOMS = ("lobby", "dev", "ops", "music")
DEFAULT_DURATION = 6.0  # simulated seconds of faults per seed


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    servers: int = 3
    clients: int = 4
    duration: float = DEFAULT_DURATION  # the faulty phase
    settle: float = 10.0  # bound on convergence once faults stop
    faults: bool = True
    ops_per_client: float = 2.0  # per simulated second
    fault_gap: tuple[float, float] = (0.3, 1.2)  # simulated seconds between two faults


def random_faults(rng: random.Random) -> NetworkFaults:
    """Each seed gets its own network: modest loss and duplication, FIFO or reordering."""
    return NetworkFaults(
        drop=rng.choice((0.0, 0.0, 0.002, 0.005, 0.01, 0.02)),
        dup=rng.choice((0.0, 0.0, 0.005, 0.01)),
        mcast_drop=rng.choice((0.0, 0.01, 0.03, 0.08)),
        mcast_dup=rng.choice((0.0, 0.01)),
        fifo=rng.random() < 0.5,
        late_p=rng.choice((0.0, 0.0, 0.001, 0.003)),
    )


class Workload:
    """Drives a world: servers boot, users log in and chat, faults come and go, then stop."""

    def __init__(self, world: World, rng: random.Random, config: WorkloadConfig) -> None:
        self.world = world
        self.rng = rng
        self.config = config
        self.faulting = config.faults
        self.counter = 0
        self.server_ids: list[int] = []

    # -- setup ------------------------------------------------------------------------
    def install(self) -> None:
        rng = self.rng
        world = self.world
        self.server_ids = rng.sample(range(1, 1001), self.config.servers)
        for sid in self.server_ids:
            world.add_server(sid, start=False)
            world.at(rng.uniform(0.0, 0.3), partial(world.start_server, sid))
        for _ in range(self.config.clients):
            world.at(rng.uniform(0.05, 1.0), self.login)
        world.at(0.5, self.operate)
        if self.config.faults:
            world.at(rng.uniform(0.8, 1.5), self.fault)
        world.at(self.config.duration, self.stop_faults)

    # -- users ------------------------------------------------------------------------
    def login(self) -> None:
        if not self.faulting and self.world.now > self.config.duration:
            return  # the quiescent phase only settles: no newcomers to wait for
        rng = self.rng
        used = {c.node.name for c in self.world.clients.values() if c.alive and not c.logged_out}
        free = [n for n in NAMES if n not in used]
        # Now and then on purpose a name someone holds: refused, or a clash after a heal.
        name = rng.choice(sorted(used)) if used and (rng.random() < 0.15 or not free) else None
        # Some clients cannot receive multicast: the leader serves their rooms by session.
        self.world.add_client(name or rng.choice(free), multicast=rng.random() < 0.85)

    def operate(self) -> None:
        if not self.faulting and self.world.now >= self.config.duration:
            return
        world = self.world
        rng = self.rng
        clients = world.serving_clients()
        if clients:
            client = rng.choice(clients)
            op = self._pick_op(client.node)
            if op == "history":
                self._history(client)
            elif isinstance(op, Operation):
                if isinstance(op, Logout):
                    client.logged_out = True
                    world.after(rng.uniform(0.2, 1.5), self.login)
                world.submit(client.client_id, op)
        rate = self.config.ops_per_client * max(1, self.config.clients)
        world.after(rng.expovariate(rate), self.operate)

    def _pick_op(self, node: object) -> Operation | str | None:
        rng = self.rng
        self.counter += 1
        text = f"m{self.counter}"
        joined = sorted(node.rooms)  # type: ignore[attr-defined]
        me = node.name  # type: ignore[attr-defined]
        others = sorted(n for n in node.users if n != me)  # type: ignore[attr-defined]
        r = rng.random()
        if r < 0.42 and joined:
            return SendChat(room=rng.choice(joined), to=None, text=text, action=rng.random() < 0.05)
        if r < 0.57 and others:
            return SendChat(room=None, to=rng.choice(others), text=text, action=False)
        if r < 0.76:
            return JoinRoom(rng.choice(ROOMS))
        if r < 0.84 and joined:
            return LeaveRoom(rng.choice(joined))
        if r < 0.87:
            return SetAway(rng.random() < 0.5)
        if r < 0.90:
            # Ops the leader must refuse cleanly: a room we are not in, a user who isn't there.
            if rng.random() < 0.5:
                return SendChat(room=rng.choice(ROOMS), to=None, text=text, action=False)
            return SendChat(room=None, to="nobody", text=text, action=False)
        if r < 0.92:
            return "history"
        if r < 0.94 and self.faulting:
            return Logout()
        if joined:
            return SendChat(room=rng.choice(joined), to=None, text=text, action=False)
        return JoinRoom(rng.choice(ROOMS))

    def _history(self, client: object) -> None:
        node = client.node  # type: ignore[attr-defined]
        rooms = sorted(node.rooms)
        if not rooms:
            return
        world = self.world
        _, effects = node.request_history(self.rng.choice(rooms), None, None, 20, world.now)
        world._apply(client, effects)  # type: ignore[arg-type]
        world._schedule_timer(client)  # type: ignore[arg-type]

    # -- faults -----------------------------------------------------------------------
    def fault(self) -> None:
        if not self.faulting:
            return
        world = self.world
        rng = self.rng
        running = world.running_servers()
        down = [s for _, s in sorted(world.servers.items()) if not s.alive]
        leaders = world.leaders()
        r = rng.random()
        if r < 0.20 and leaders and len(running) >= 2:
            self._take_down(leaders[0].server_id, graceful=False)
        elif r < 0.30 and len(running) >= 2:
            backups = [s for s in running if s not in leaders] or running
            self._take_down(rng.choice(backups).server_id, graceful=False)
        elif r < 0.38 and leaders and len(running) >= 2:
            if rng.random() < 0.3:
                world.step_down(leaders[0].server_id)  # hand over, stay on as a backup
            else:
                # A graceful stop (SIGTERM), of the leader (hand-over) or of a backup (Leaving).
                target = leaders[0] if rng.random() < 0.7 else rng.choice(running)
                self._take_down(target.server_id, graceful=True)
        elif r < 0.48 and down:
            world.start_server(rng.choice(down).server_id)
        elif r < 0.64 and not world.net.partitioned and len(world.servers) >= 2:
            self._partition()
        elif r < 0.74 and leaders:
            clients = world.serving_clients()
            if clients:
                client = rng.choice(clients)
                leader_addr = leaders[0].addr
                world.cut(client.addr, leader_addr)
                world.after(rng.uniform(1.0, 4.0), partial(self._uncut, client.addr, leader_addr))
        elif r < 0.82 and running:
            # A stop-the-world pause, most often of the leader: it wakes up stale.
            target = leaders[0] if leaders and rng.random() < 0.7 else rng.choice(running)
            world.pause_server(target.server_id, rng.uniform(0.1, 1.5))
        elif r < 0.90:
            clients = [c for c in world.clients.values() if c.alive and not c.logged_out]
            if clients:
                world.crash_client(rng.choice(clients).client_id)
                world.after(rng.uniform(0.1, 1.0), self.login)
        else:
            # A burst of loss: a flaky switch for a moment.
            faults = world.net.faults
            old = (faults.drop, faults.mcast_drop)
            faults.drop, faults.mcast_drop = 0.2, 0.3
            world.note("loss burst")
            world.after(rng.uniform(0.1, 0.5), partial(self._end_burst, old))
        world.after(rng.uniform(*self.config.fault_gap), self.fault)

    def _take_down(self, server_id: int, graceful: bool) -> None:
        world = self.world
        if graceful:
            world.stop_server(server_id)
        else:
            world.crash_server(server_id)
        if self.rng.random() < 0.7:
            world.after(self.rng.uniform(0.3, 3.0), partial(self._restart, server_id))

    def _restart(self, server_id: int) -> None:
        if self.faulting:
            self.world.start_server(server_id)

    def _partition(self) -> None:
        world = self.world
        rng = self.rng
        sids = sorted(world.servers)
        rng.shuffle(sids)
        cut = rng.randint(1, len(sids) - 1)
        side_b = [world.servers[sid].addr for sid in sids[:cut]]
        side_b += [c.addr for _, c in sorted(world.clients.items()) if rng.random() < 0.5]
        world.partition(side_b)
        world.after(rng.uniform(0.5, 2.5), self._heal)

    def _heal(self) -> None:
        if self.faulting:
            self.world.heal()

    def _uncut(self, a: str, b: str) -> None:
        if self.faulting:
            self.world.uncut(a, b)

    def _end_burst(self, old: tuple[float, float]) -> None:
        if self.faulting:
            faults = self.world.net.faults
            faults.drop, faults.mcast_drop = old
            self.world.note("loss burst ends")

    def stop_faults(self) -> None:
        """The quiescent phase: heal everything, restart servers (maybe not all), no loss."""
        world = self.world
        self.faulting = False
        world.faults_active = False
        world.net.faults = world.net.faults.quiet()
        world.heal()
        world.net.uncut_all()
        world.resume_all()
        down = [s.server_id for _, s in sorted(world.servers.items()) if not s.alive]
        # Sometimes a server stays down for good: the rest must converge without it.
        if down and len(world.servers) >= 3 and self.rng.random() < 0.25:
            down.remove(self.rng.choice(down))
        for sid in down:
            world.start_server(sid)
        world.note("faults stop")
