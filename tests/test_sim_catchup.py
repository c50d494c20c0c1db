"""A backup that stalls under a steady load falls out of the view and must come back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tchat.core.messages import Admit, Chat, Message
from tchat.sim.network import NetworkFaults
from tchat.sim.scenarios import acked, boot, finish, join, leader, say, wait_until
from tchat.sim.world import World

NAMES = ["ann", "bob", "cyd", "dee"]
PAUSED = 10  # the lowest ID: never the leader at boot
# A slow LAN (a loaded host): 15-25 ms each way. A smaller sync chunk than a daemon's keeps
# the simulated load small while holding the ratio that broke the daemons: one chunk per
# round trip carries fewer entries a second than the clients send.
SLOW = NetworkFaults(min_delay=0.015, max_delay=0.025, spike_p=0.0, fifo=True)
CHUNK = 1_000
RATE = 600  # messages a second, all clients together: far below what the cluster commits


def _slow_cluster(seed: int) -> World:
    world = boot(seed, [PAUSED, 20, 30], NAMES, faults=SLOW)
    for slot in world.servers.values():
        slot.config = dataclasses.replace(slot.config, sync_chunk_bytes=CHUNK)
        assert slot.node is not None
        slot.node.config = slot.config
    return world


def _load(world: World, start: float, end: float) -> list[tuple[str, int | None, str]]:
    """Schedule a steady stream of room messages from every client between two times."""
    sent: list[tuple[str, int | None, str]] = []

    def send(name: str, text: str) -> Callable[[], None]:
        return lambda: sent.append((name, say(world, name, "lobby", text), text))

    gap = len(NAMES) / RATE
    for k, name in enumerate(NAMES):
        t = start + k * gap / len(NAMES)
        i = 0
        while t < end:
            world.at(t, send(name, f"{name} {i}"))
            t += gap
            i += 1
    return sent


def _admitted(world: World, server_id: int) -> bool:
    replica = leader(world).node.leadership.replicas.get(server_id)
    return replica is not None and replica.admitted


def test_paused_backup_rejoins_under_steady_load() -> None:
    world = _slow_cluster(7)
    joined = [(n, join(world, n, "lobby")) for n in NAMES]
    assert wait_until(world, lambda: all(acked(world, n, c) for n, c in joined), 3.0)
    start = world.now
    sent = _load(world, start, start + 4.0)
    world.run_until(start + 0.5)
    assert _admitted(world, PAUSED)
    world.pause_server(PAUSED, 0.8)
    world.run_until(start + 1.4)
    assert not _admitted(world, PAUSED)  # the leader dropped it while it was frozen
    # Back in the view well before the load stops (catch-up outpaces the log's growth)...
    assert wait_until(world, lambda: _admitted(world, PAUSED), 1.5, step=0.02)
    world.run_until(start + 4.0)
    assert _admitted(world, PAUSED)
    assert wait_until(world, lambda: all(acked(world, n, c) for n, c, _ in sent), 3.0)
    finish(world)
    # ...and holds every acknowledged message.
    log = world.servers[PAUSED].node.log
    texts = {e.body.text for e in log.iter_entries() if isinstance(e.body, Chat)}
    assert len(sent) > RATE * 3
    assert {text for _, _, text in sent} <= texts


def test_a_lost_chunk_of_the_window_is_sent_again_not_skipped() -> None:
    """An Admit of a window never arrives (a session broken and reopened): the chunks
    after it must not be stored (the backup's clock would then claim the lost entries, and
    nobody would send them again); it is caught up from where it stopped."""
    world = _slow_cluster(11)
    joined = [(n, join(world, n, "lobby")) for n in NAMES]
    assert wait_until(world, lambda: all(acked(world, n, c) for n, c in joined), 3.0)
    start = world.now
    sent = _load(world, start, start + 3.0)
    world.run_until(start + 0.5)
    world.pause_server(PAUSED, 0.8)
    backup = world.servers[PAUSED].node
    lost: list[Admit] = []

    def lose_one_admit(src: str, dst: str, message: Message) -> bool:
        # The first chunk bringing entries the backup lacks (not one it got by the
        # batches that waited in its socket while it was frozen), and not a window's end.
        if lost or dst != backup.config.addr or not isinstance(message, Admit):
            return False
        if message.done or not message.entries or message.entries[0].dot in backup.log:
            return False
        lost.append(message)
        return True

    world.intercept = lose_one_admit
    world.run_until(start + 1.4)
    assert wait_until(world, lambda: _admitted(world, PAUSED), 2.0, step=0.02)
    assert lost
    world.intercept = None
    assert wait_until(world, lambda: all(acked(world, n, c) for n, c, _ in sent), 3.0)
    finish(world)
    texts = {e.body.text for e in backup.log.iter_entries() if isinstance(e.body, Chat)}
    assert {text for _, _, text in sent} <= texts
    assert backup.counters.get("admit-gap", 0) >= 1
    # The replies to a window's chunks were answered by the chunks on their way, not by
    # copies: far fewer Admits than the backup sent JoinRequests and acks meanwhile.
    assert leader(world).node.counters.get("admit-in-flight", 0) > 0
