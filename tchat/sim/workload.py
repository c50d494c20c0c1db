"""A random workload and fault schedule for one seed: users chatting while servers fail.

Longer than 400 lines: every kind of operation and fault a seed draws (chat, rooms, private
rooms and invitations, forgers, crashes, partitions) comes from one random stream in one
order, which the recorded fingerprints pin; split, the draw order would be spread out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial

from tchat.core.messages import (
    MAX_AWAY_REASON,
    MAX_TEXT,
    CreateRoom,
    InviteUser,
    JoinRoom,
    KickUser,
    LeaveRoom,
    Logout,
    Operation,
    SendChat,
    SetAway,
    SetPassword,
    SetRoomMode,
    SetTopic,
)
from tchat.sim.network import NetworkFaults
from tchat.sim.slots import ClientSlot
from tchat.sim.world import World

NAMES = ("ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "lou")
ROOMS = ("lobby", "dev", "ops", "music")
# Rooms users try to /create private (a /join may make one public first); every user tries
# to join them now and then: refused unless invited, the owner invites and kicks.
PRIVATE_ROOMS = ("den", "vault")
ROOM_ADMIN = 0.15  # share of operations that create, invite, kick or change a room's mode
DEFAULT_DURATION = 6.0  # simulated seconds of faults per seed
# Away reasons: none, short, and one at the cap of multi-byte characters (what the
# lobby frames must still fit).
AWAY_REASONS = ("", "lunch", "\u00e9" * MAX_AWAY_REASON)
BURST_SIZE = (20, 60)  # room messages of MAX_TEXT characters a burst submits at once
MAIL_SIZE = (2, 6)  # maximum-size private messages sent to a user who has logged out
# Filler for maximum-size texts: mostly 4-byte UTF-8 characters, so a text of MAX_TEXT
# characters (~13.5 KB of UTF-8) is close to the largest a client may send (16 KB).
_FILL = "🙂🙂🙂é🙂🙂🙂a"


def max_text(tag: str, offset: int = 0) -> str:
    """A text of exactly MAX_TEXT characters starting with ``tag``, mostly four-byte ones."""
    head = f"{tag} "
    start = offset % len(_FILL)
    return head + (_FILL * (MAX_TEXT // len(_FILL) + 2))[start : start + MAX_TEXT - len(head)]


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    servers: int = 3
    clients: int = 4
    duration: float = DEFAULT_DURATION  # the faulty phase
    settle: float = 10.0  # bound on convergence once faults stop
    faults: bool = True
    ops_per_client: float = 2.0  # per simulated second
    fault_gap: tuple[float, float] = (0.3, 1.2)  # simulated seconds between two faults
    # Bursts of maximum-size room messages, and maximum-size private messages to users
    # who have logged out (tchat sim --bursts): the frames a leader builds reach the cap.
    bursts: bool = False
    # Forgers (tchat sim --forgers N): clients that log in as someone they are not, with
    # their own key under a taken name, with a replayed proof, or with a victim's client ID.
    forgers: int = 0


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
        if self.config.bursts:
            world.at(rng.uniform(1.0, 2.0), self.burst)
            world.at(rng.uniform(1.0, 2.0), self.mail_the_away)
        for _ in range(self.config.forgers):
            world.at(rng.uniform(1.0, max(1.0, self.config.duration - 1.5)), self.forge)
        world.at(self.config.duration, self.stop_faults)

    # -- users ------------------------------------------------------------------------
    def login(self) -> None:
        if not self.faulting and self.world.now > self.config.duration:
            return  # the quiescent phase only settles: no newcomers to wait for
        rng = self.rng
        used = {c.node.name for c in self.world.clients.values() if c.alive and not c.logged_out}
        free = [n for n in NAMES if n not in used]
        # Now and then on purpose a name someone holds: its owner's second terminal, or
        # a rival's key (refused, or a clash after a heal).
        name = rng.choice(sorted(used)) if used and (rng.random() < 0.15 or not free) else None
        owner = None if name is None or rng.random() < 0.5 else f"{name}~rival"
        # Some clients cannot receive multicast: the leader serves their rooms by session.
        multicast = rng.random() < 0.85
        self.world.add_client(name or rng.choice(free), multicast=multicast, owner=owner)

    def forge(self) -> None:
        """One forged login against a victim whose name every running server has bound
        (a name free on one side of a partition is anyone's, first come first served)."""
        world = self.world
        rng = self.rng
        servers = world.running_servers()
        # Every server up: one that is down may lack the victim's claim and, restarted on
        # the forger's side of a later partition, rightly give the name to the first
        # claimant there (a name free on one side is anyone's).
        if world.net.partitioned or not servers or len(servers) != len(world.servers):
            world.after(rng.uniform(0.3, 1.0), self.forge)
            return
        victims = [
            c
            for c in world.serving_clients()
            if not c.forger
            and all(s.node.state.claims.get(c.node.name) == c.config.identity for s in servers)
        ]
        if not victims:
            world.after(rng.uniform(0.3, 1.0), self.forge)
            return
        victim = rng.choice(victims)
        self.counter += 1
        trick = rng.choice(("taken", "replay", "client-id", "password"))
        forger = f"forger{self.counter}"
        checker = world.checker
        if trick == "password":
            self._password_logins(victim, forger)
            return
        if trick == "replay":  # the victim's Register, proof and all, on another session
            slot = world.add_client(victim.node.name, owner=victim.owner, forger=trick)
            checker.forged_sessions.add(slot.config.client_id)
        else:
            client_id = victim.node.client_id if trick == "client-id" else None
            name = victim.node.name if trick == "taken" or rng.random() < 0.5 else forger
            # Under its own name a forger is just a user: only another's name is forged.
            checker.forged_identities[world.identities.public(forger)] = forger
            slot = world.add_client(name, owner=forger, client_id=client_id, forger=trick)
        world.note(f"{slot.client_id} forges a login ({trick}) against {victim.client_id}")
        # Refused or never answered: it gives up (gone, as a forger's process would be).
        world.after(rng.uniform(0.5, 1.5), partial(world.crash_client, slot.client_id))

    def _password_logins(self, victim: ClientSlot, forger: str) -> None:
        """The victim sets a password (its leader's runtime hashes it); a while later a
        forger guesses it from its own key, and the victim's second machine logs in with
        it: only the second machine's key may join the account (checked at every step)."""
        world = self.world
        rng = self.rng
        name = victim.node.name
        secret = f"secret of {name}"
        world.submit(victim.client_id, SetPassword(secret))
        world.checker.forged_identities[world.identities.public(forger)] = forger

        def guess_and_log_in() -> None:
            guess = world.add_client(name, owner=forger, forger="password", password="guess")
            laptop = world.add_client(name, owner=f"{victim.owner}@laptop", password=secret)
            world.note(f"{guess.client_id} guesses {name}'s password; {laptop.client_id} knows it")
            world.after(rng.uniform(0.5, 1.5), partial(world.crash_client, guess.client_id))

        world.after(rng.uniform(0.3, 0.8), guess_and_log_in)

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
        if rng.random() < ROOM_ADMIN:
            return self._room_admin(me, others)
        invited, kickable = self._private_rooms(me)
        if invited and rng.random() < 0.5:
            return JoinRoom(rng.choice(invited))  # a user invited goes in, mostly soon
        if kickable and rng.random() < 0.1:
            room, name = rng.choice(kickable)
            return KickUser(room, name)
        r = rng.random()
        if r < 0.42 and joined:
            return SendChat(room=rng.choice(joined), to=None, text=text, action=rng.random() < 0.05)
        if r < 0.57 and others:
            return SendChat(room=None, to=rng.choice(others), text=text, action=False)
        if r < 0.76:
            return JoinRoom(rng.choice(ROOMS + PRIVATE_ROOMS))
        if r < 0.84 and joined:
            return LeaveRoom(rng.choice(joined))
        if r < 0.87:
            away = rng.random() < 0.5
            return SetAway(away, rng.choice(AWAY_REASONS) if away else "")
        if r < 0.90:
            # Ops the leader must refuse cleanly: a room we are not in, a user who isn't there.
            if rng.random() < 0.5:
                return SendChat(room=rng.choice(ROOMS), to=None, text=text, action=False)
            return SendChat(room=None, to="nobody", text=text, action=False)
        if r < 0.92:
            return "history"
        if r < 0.94 and self.faulting:
            return Logout()
        if r < 0.98 and joined:
            # Topics: mostly set, sometimes cleared, now and then one the leader refuses.
            pick = rng.random()
            topic = "" if pick < 0.2 else f"t{self.counter}" + ("\u202e" if pick > 0.9 else "")
            return SetTopic(rng.choice(joined), topic)
        if joined:
            return SendChat(room=rng.choice(joined), to=None, text=text, action=False)
        return JoinRoom(rng.choice(ROOMS))

    def _private_rooms(self, me: str) -> tuple[list[str], list[tuple[str, str]]]:
        """The rooms ``me`` is invited to, and (room, member) it could kick as the owner."""
        leaders = self.world.leaders()
        rooms = leaders[0].node.state.rooms if leaders else {}
        invited: list[str] = []
        kickable: list[tuple[str, str]] = []
        for name in PRIVATE_ROOMS + ROOMS:
            record = rooms.get(name)
            if record is None:
                continue
            if me in record.invited:
                invited.append(name)
            if record.private and record.owner == me:
                kickable += [(name, m) for m in sorted(record.members) if m != me]
        return invited, kickable

    def _room_admin(self, me: str, others: list[str]) -> Operation:
        """Create a room, or, as the owner the leader knows, invite, kick or change its
        mode (the workload may look at the leader's state: it plays every user)."""
        rng = self.rng
        leaders = self.world.leaders()
        rooms = leaders[0].node.state.rooms if leaders else {}
        owned = [r for r in ROOMS + PRIVATE_ROOMS if r in rooms and rooms[r].owner == me]
        if not owned or rng.random() < 0.2:
            return CreateRoom(rng.choice(PRIVATE_ROOMS), private=rng.random() < 0.8)
        private = [r for r in owned if rooms[r].private]
        if not private:
            return SetRoomMode(rng.choice(owned), private=True)
        room = rng.choice(private)
        record = rooms[room]
        members = sorted(n for n in record.members if n != me)
        r = rng.random()
        if r < 0.9 and members and (r >= 0.5 or not others):
            return KickUser(room, rng.choice(members))
        if r < 0.9 and others:
            return InviteUser(room, rng.choice(others))
        return SetRoomMode(room, private=False)

    def _history(self, client: object) -> None:
        node = client.node  # type: ignore[attr-defined]
        rooms = sorted(node.rooms)
        if not rooms or self.rng.random() < 0.3:
            # Now and then a room it is not in (or no longer): the leader must refuse it.
            rooms = list(ROOMS + PRIVATE_ROOMS)
        world = self.world
        _, effects = node.request_history(self.rng.choice(rooms), None, None, 20, world.now)
        world.carry_out(client, effects)  # type: ignore[arg-type]

    # -- bursts of maximum-size messages (WorkloadConfig.bursts) -----------------------
    def big_text(self) -> str:
        """A text of exactly MAX_TEXT characters, most of them four bytes in UTF-8."""
        self.counter += 1
        return max_text(f"m{self.counter}", self.rng.randrange(len(_FILL)))

    def burst(self) -> None:
        """One user sends 20-60 maximum-size room messages at once (a paste, a bot)."""
        if not self.faulting:
            return
        world = self.world
        rng = self.rng
        clients = [c for c in world.serving_clients() if c.node.rooms]
        if clients:
            client = rng.choice(clients)
            rooms = sorted(client.node.rooms)
            count = rng.randint(*BURST_SIZE)
            world.note(f"burst of {count} maximum-size messages from {client.client_id}")
            for _ in range(count):
                op = SendChat(room=rng.choice(rooms), to=None, text=self.big_text(), action=False)
                world.submit(client.client_id, op)
        world.after(rng.uniform(0.5, 1.5), self.burst)

    def mail_the_away(self) -> None:
        """A user logs out, others send it maximum-size private messages, it logs back in:
        its welcome must replay them (the completeness invariant checks it)."""
        world = self.world
        rng = self.rng
        # Back before the faults stop: the quiescent phase only settles.
        if not self.faulting or world.now + 3.5 > self.config.duration:
            return
        clients = world.serving_clients()
        if len(clients) >= 2:
            away = rng.choice(clients)
            name = away.node.name
            away.logged_out = True
            world.submit(away.client_id, Logout())
            world.after(rng.uniform(0.2, 0.6), partial(self._mail, name))
        world.after(rng.uniform(1.0, 2.5), self.mail_the_away)

    def _mail(self, name: str) -> None:
        world = self.world
        rng = self.rng
        senders = [c for c in world.serving_clients() if c.node.name != name]
        if senders:
            sender = rng.choice(senders)
            count = rng.randint(*MAIL_SIZE)
            world.note(f"{sender.client_id} mails {count} maximum-size messages to {name!r}")
            for _ in range(count):
                op = SendChat(room=None, to=name, text=self.big_text(), action=False)
                world.submit(sender.client_id, op)
        world.after(rng.uniform(0.8, 2.0), partial(self._come_back, name))

    def _come_back(self, name: str) -> None:
        world = self.world
        held = (c for c in world.clients.values() if c.alive and not c.logged_out and not c.failed)
        if any(c.node.name == name for c in held):
            return  # someone took the name meanwhile: that login got the mail
        world.add_client(name, multicast=self.rng.random() < 0.85)

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
