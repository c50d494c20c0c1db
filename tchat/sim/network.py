"""The simulator's in-memory network: delays, loss, duplication, partitions, link cuts, groups."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class NetworkFaults:
    """How unreliable the network is; the world changes these between phases."""

    drop: float = 0.0  # unicast / broadcast loss (a broken TCP session loses its tail)
    dup: float = 0.0  # unicast duplication (a session resent after a reconnect)
    mcast_drop: float = 0.0  # multicast is plain UDP: lossier
    mcast_dup: float = 0.0
    min_delay: float = 0.0002
    max_delay: float = 0.003
    spike_p: float = 0.01  # a delivery now and then takes much longer (GC pause, queueing)
    spike_max: float = 0.04
    fifo: bool = False  # True: per-link FIFO (TCP-like); False: reorder freely
    late_p: float = 0.0  # now and then a datagram arrives very late (0.2-1.5 s)
    # FIFO links only: frames a node writes to one peer at one instant arrive together, as one
    # read of a TCP session (the runtime writes a step's frames at once, and a receiver
    # handles what one read brought before its node is flushed): a burst of Submits then
    # reaches the leader in one step, as it does on a real LAN, and leaves in one Append.
    coalesce: bool = False

    def quiet(self) -> NetworkFaults:
        """The same delays without loss or duplication: the quiescent phase's network."""
        return NetworkFaults(
            min_delay=self.min_delay,
            max_delay=self.max_delay,
            spike_p=self.spike_p,
            spike_max=self.spike_max,
            fifo=self.fifo,
            coalesce=self.coalesce,
        )


class Network:
    """Decides, for each datagram, whether and when it arrives; knows partitions and groups.

    Every decision draws from the one seeded ``random.Random`` the world passes in, in
    a fixed order, so one seed replays the same deliveries.
    """

    def __init__(self, rng: random.Random, faults: NetworkFaults | None = None) -> None:
        self.rng = rng
        self.faults = faults or NetworkFaults()
        self._side: dict[str, int] = {}  # addr -> partition side (absent = side 0)
        self._cuts: set[tuple[str, str]] = set()  # cut links, each as a sorted pair
        # group -> member addrs; a dict keeps insertion order, so iteration is deterministic.
        self._groups: dict[str, dict[str, None]] = {}
        self._memberships: dict[str, dict[str, None]] = {}  # addr -> groups
        self._last_arrival: dict[tuple[str, str], float] = {}
        self._last_sent: dict[tuple[str, str], float] = {}  # link -> when it last carried one
        self.dropped = 0
        self.duplicated = 0
        self.sent = 0

    # -- partitions and link cuts -----------------------------------------------------
    @property
    def partitioned(self) -> bool:
        return any(self._side.values())

    def partition(self, side_b: Iterable[str]) -> None:
        """Split the network: ``side_b`` on one side, every other address on the other."""
        self._side = {addr: 1 for addr in side_b}

    def place(self, addr: str, side: int) -> None:
        """Put a newly started node on one side of a running partition."""
        if side:
            self._side[addr] = 1
        else:
            self._side.pop(addr, None)

    def side(self, addr: str) -> int:
        return self._side.get(addr, 0)

    def heal(self) -> None:
        self._side = {}

    def cut(self, a: str, b: str) -> None:
        self._cuts.add((a, b) if a < b else (b, a))

    def uncut(self, a: str, b: str) -> None:
        self._cuts.discard((a, b) if a < b else (b, a))

    def uncut_all(self) -> None:
        self._cuts.clear()

    @property
    def cuts(self) -> list[tuple[str, str]]:
        return sorted(self._cuts)

    def reachable(self, a: str, b: str) -> bool:
        if self._side.get(a, 0) != self._side.get(b, 0):
            return False
        if self._cuts:
            return ((a, b) if a < b else (b, a)) not in self._cuts
        return True

    # -- multicast groups -------------------------------------------------------------
    def join(self, addr: str, group: str) -> None:
        self._groups.setdefault(group, {})[addr] = None
        self._memberships.setdefault(addr, {})[group] = None

    def leave(self, addr: str, group: str) -> None:
        self._groups.get(group, {}).pop(addr, None)
        self._memberships.get(addr, {}).pop(group, None)

    def forget(self, addr: str) -> None:
        """A node vanished: it leaves every group it had joined."""
        for group in list(self._memberships.pop(addr, {})):
            self._groups.get(group, {}).pop(addr, None)

    def members(self, group: str) -> list[str]:
        return list(self._groups.get(group, ()))

    def groups_of(self, addr: str) -> list[str]:
        return list(self._memberships.get(addr, ()))

    # -- delivery ---------------------------------------------------------------------
    def arrivals(self, src: str, dst: str, now: float, multicast: bool = False) -> list[float]:
        """Arrival times of one datagram src -> dst: [] if lost, two if duplicated."""
        faults = self.faults
        rng = self.rng
        self.sent += 1
        drop = faults.mcast_drop if multicast else faults.drop
        if drop and rng.random() < drop:
            self.dropped += 1
            return []
        times = [now + self._delay()]
        dup = faults.mcast_dup if multicast else faults.dup
        if dup and rng.random() < dup:
            self.duplicated += 1
            times.append(now + self._delay())
        if faults.fifo and not multicast:
            link = (src, dst)
            last = self._last_arrival.get(link, 0.0)
            if faults.coalesce and last >= now and self._last_sent.get(link) == now:
                # Written at the same instant as the frame before it: same read, same instant
                # (the world's heap keeps their order). The delays drawn above are unused,
                # so the draws, and with them the rest of the run, stay as they were.
                times = [last for _ in times]
            else:
                times = [max(t, last + 1e-7) for t in sorted(times)]
            self._last_arrival[link] = times[-1]
            self._last_sent[link] = now
        return times

    def _delay(self) -> float:
        faults = self.faults
        rng = self.rng
        delay = faults.min_delay + (faults.max_delay - faults.min_delay) * rng.random()
        if faults.spike_p and rng.random() < faults.spike_p:
            delay += faults.spike_max * rng.random()
        if faults.late_p and rng.random() < faults.late_p:
            delay += 0.2 + 1.3 * rng.random()
        return delay
