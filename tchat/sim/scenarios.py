"""Building blocks of scripted fault scenarios (the golden tests) on top of the world."""

from __future__ import annotations

from collections.abc import Callable

from tchat.core.messages import JoinRoom, Logout, Operation, SendChat
from tchat.sim.invariants import Violation
from tchat.sim.network import NetworkFaults
from tchat.sim.runner import settle
from tchat.sim.workload import max_text
from tchat.sim.world import ClientSlot, ServerSlot, World


def wait_until(
    world: World, predicate: Callable[[], bool], timeout: float, step: float = 0.005
) -> bool:
    """Run the world in small steps until ``predicate`` holds (True) or ``timeout`` passes."""
    end = world.now + timeout
    while world.now < end:
        if predicate():
            return True
        world.run_until(min(end, world.now + step))
    return predicate()


def converged(world: World) -> bool:
    return not world.checker.convergence()


def boot(
    seed: int,
    server_ids: list[int],
    names: list[str],
    *,
    faults: NetworkFaults | None = None,
    timeout: float = 8.0,
) -> World:
    """A cluster of ``server_ids`` with one client per name, run until it has converged."""
    world = World(seed, faults=faults)
    for sid in server_ids:
        world.add_server(sid)
    world.run_for(0.05)
    for name in names:
        world.add_client(name)
    if not wait_until(
        world,
        lambda: converged(world) and len(world.serving_clients()) == len(names),
        timeout,
        step=0.05,
    ):
        problems = world.checker.convergence()
        raise Violation("boot", f"cluster did not converge: {problems[:3]}")
    return world


def finish(world: World, bound: float = 10.0) -> float:
    """Stop faults and check every end-of-run invariant; returns the convergence time."""
    world.faults_active = False
    world.net.faults = world.net.faults.quiet()
    world.heal()
    world.net.uncut_all()
    world.resume_all()
    return settle(world, world.now, bound)


def client(world: World, name: str) -> ClientSlot:
    """The live client serving (or trying to serve) as ``name``."""
    for slot in world.clients.values():
        if slot.alive and not slot.logged_out and slot.node.name == name:
            return slot
    raise KeyError(name)


def leader(world: World) -> ServerSlot:
    leaders = world.leaders()
    if len(leaders) != 1:
        raise AssertionError(f"{len(leaders)} leaders: {[s.server_id for s in leaders]}")
    return leaders[0]


def submit(world: World, name: str, op: Operation) -> int | None:
    return world.submit(client(world, name).client_id, op)


def join(world: World, name: str, room: str) -> int | None:
    return submit(world, name, JoinRoom(room))


def say(world: World, name: str, room: str, text: str) -> int | None:
    return submit(world, name, SendChat(room=room, to=None, text=text, action=False))


def tell(world: World, name: str, to: str, text: str) -> int | None:
    return submit(world, name, SendChat(room=None, to=to, text=text, action=False))


def acked(world: World, name: str, cmid: int | None) -> bool:
    return cmid is not None and cmid in client(world, name).acked


# -- maximum-size messages (the frame cap) -----------------------------------------------
def burst(world: World, name: str, room: str, count: int) -> list[int | None]:
    """``name`` sends ``count`` maximum-size messages to ``room`` at once (a paste, a bot):
    the leader's next Append to each backup carries all of them."""
    return [say(world, name, room, max_text(f"burst {name} {i}")) for i in range(count)]


def mail_while_away(
    world: World, sender: str, away: str, count: int, timeout: float = 3.0
) -> list[int | None]:
    """``away`` logs out and is gone (its slot closed); ``sender`` then sends it ``count``
    maximum-size private messages. Log ``away`` in again with ``world.add_client``: its
    welcome must replay them (the completeness invariant checks it)."""
    slot = client(world, away)
    submit(world, away, Logout())
    slot.logged_out = True
    if not wait_until(world, lambda: slot.node.state.name == "CLOSED", timeout):
        raise Violation("scenario", f"{away} did not log out within {timeout}s")
    return [tell(world, sender, away, max_text(f"mail {sender} {i}")) for i in range(count)]
