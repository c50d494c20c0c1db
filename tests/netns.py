"""A LAN of network namespaces for multi-host tests: hosts on a partitionable two-segment switch."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# 198.18.0.0/15 is reserved for benchmarking (RFC 2544): never routed, so nothing leaks anywhere.
SUBNET_PREFIX = "198.18.0."
PREFIX_LEN = 24
BROADCAST = "198.18.0.255"
MULTICAST_ROUTE = "224.0.0.0/4"
NS_PREFIX = "tchat-"
_lan_counter = itertools.count(1)
_probe_result: str | None | bool = False  # False = not probed yet


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; with check, a failure raises with ip's own message."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here (not root, no iproute2, no netns support), or None."""
    global _probe_result
    if _probe_result is not False:
        return _probe_result  # type: ignore[return-value]
    reason: str | None = None
    if os.geteuid() != 0:
        reason = "multi-host tests need root to create network namespaces"
    elif shutil.which("ip") is None:
        reason = "`ip` (iproute2) is not installed"
    else:
        probe = f"{NS_PREFIX}{os.getpid()}-probe"
        made = _ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            reason = f"`ip netns add` is not permitted here: {made.stderr.strip()}"
        else:
            veth = _ip(
                "-n", probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb", check=False
            )
            if veth.returncode != 0:
                reason = f"veth pairs are unavailable: {veth.stderr.strip()}"
            inside = subprocess.run(
                ["ip", "netns", "exec", probe, "true"], capture_output=True, text=True, timeout=10
            )
            if reason is None and inside.returncode != 0:
                reason = f"`ip netns exec` is not permitted here: {inside.stderr.strip()}"
            _ip("netns", "del", probe, check=False)
    _probe_result = reason
    return reason


def our_namespaces() -> list[str]:
    """Every namespace this process created (by the name prefix carrying our pid)."""
    mine = f"{NS_PREFIX}{os.getpid()}-"
    return [name for name in _list_namespaces() if name.startswith(mine)]


def _list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def remove_stale_namespaces() -> list[str]:
    """Delete tchat namespaces left by test processes that died without tearing down."""
    removed = []
    for name in _list_namespaces():
        match = re.fullmatch(rf"{NS_PREFIX}(\d+)-.+", name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _kill_namespace_pids(name)
        if _ip("netns", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_pids(ns: str) -> None:
    """SIGKILL what still runs inside one of our namespaces (only our own processes live there)."""
    out = _ip("netns", "pids", ns, check=False).stdout
    for token in out.split():
        if token.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(token), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Host:
    """One machine of the LAN: its namespace, address and switch segment."""

    label: str
    ns: str
    addr: str
    segment: str
    port: str  # its veth end inside the switch namespace


class LineReader:
    """Reads a child's stdout line by line with deadlines (never blocks past one)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self._fd = proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buf = b""
        self.lines: list[str] = []  # everything read so far
        self.eof = False

    def _fill(self, timeout: float) -> None:
        if self.eof:
            return
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.eof = True
        self._buf += chunk
        *complete, self._buf = self._buf.split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace") for line in complete)

    def wait_for(
        self, predicate: Callable[[str], bool], timeout: float, start: int = 0
    ) -> tuple[int, str]:
        """The first line at index >= start matching predicate, as (index, line); TimeoutError."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for index in range(seen, len(self.lines)):
                if predicate(self.lines[index]):
                    return index, self.lines[index]
            seen = max(seen, len(self.lines))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.eof and seen >= len(self.lines)):
                tail = "\n".join(self.lines[-10:])
                raise TimeoutError(f"no matching line within {timeout}s; last lines:\n{tail}")
            self._fill(min(remaining, 0.2))


@dataclass
class Lan:
    """Hosts in their own namespaces, wired to a switch namespace holding two bridges.

    Segment "a" and segment "b" are bridges joined by a trunk veth; a partition sets
    the trunk down (the hosts' own links stay up), healing sets it up again. Nothing
    touches the root namespace's interfaces.
    """

    labels: Sequence[str]
    segment_b: Iterable[str] = ()
    hosts: dict[str, Host] = field(default_factory=dict, init=False)
    switch: str = field(default="", init=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        run = next(_lan_counter)
        base = f"{NS_PREFIX}{os.getpid()}-{run}"
        self.switch = f"{base}-sw"
        side_b = set(self.segment_b)
        unknown = side_b - set(self.labels)
        if unknown:
            raise ValueError(f"segment_b names unknown hosts: {sorted(unknown)}")
        if len(self.labels) > 250:
            raise ValueError("at most 250 hosts fit the /24")
        for index, label in enumerate(self.labels, start=1):
            self.hosts[label] = Host(
                label=label,
                ns=f"{base}-{label}",
                addr=f"{SUBNET_PREFIX}{index}",
                segment="b" if label in side_b else "a",
                port=f"p{index}",
            )

    # -- lifecycle ---------------------------------------------------------------------

    def create(self) -> Lan:
        """Build everything; on any failure tear down what was built and re-raise."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        sw = self.switch
        _ip("netns", "add", sw)
        _ip("-n", sw, "link", "set", "lo", "up")
        for bridge in ("br-a", "br-b"):
            # Snooping off: the bridge floods multicast like a dumb switch, so no querier is needed.
            _ip(
                "-n",
                sw,
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
                "mcast_snooping",
                "0",
            )
            _ip("-n", sw, "link", "set", bridge, "up")
        _ip("-n", sw, "link", "add", "trunk-a", "type", "veth", "peer", "name", "trunk-b")
        _ip("-n", sw, "link", "set", "trunk-a", "master", "br-a", "up")
        _ip("-n", sw, "link", "set", "trunk-b", "master", "br-b", "up")
        for host in self.hosts.values():
            _ip("netns", "add", host.ns)
            _ip("-n", host.ns, "link", "set", "lo", "up")
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ],
                capture_output=True,
                timeout=10,
            )
            _ip(
                "-n",
                sw,
                "link",
                "add",
                host.port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.ns,
            )
            _ip("-n", sw, "link", "set", host.port, "master", f"br-{host.segment}", "up")
            _ip(
                "-n",
                host.ns,
                "addr",
                "add",
                f"{host.addr}/{PREFIX_LEN}",
                "broadcast",
                BROADCAST,
                "dev",
                "eth0",
            )
            _ip("-n", host.ns, "link", "set", "eth0", "up")
            _ip("-n", host.ns, "route", "add", MULTICAST_ROUTE, "dev", "eth0")
        self._wait_forwarding({"trunk-a", "trunk-b", *(h.port for h in self.hosts.values())})

    def close(self) -> None:
        """Stop every process we started, then delete every namespace (and so every link)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3.0
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for ns in [*(h.ns for h in self.hosts.values()), self.switch]:
            if ns in _list_namespaces():
                _kill_namespace_pids(ns)
                _ip("netns", "del", ns, check=False)
        left = [
            ns
            for ns in _list_namespaces()
            if ns == self.switch or ns in {h.ns for h in self.hosts.values()}
        ]
        if left:
            raise RuntimeError(f"namespaces survived teardown: {left}")

    def __enter__(self) -> Lan:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults --------------------------------------------------------------------------

    def partition(self) -> None:
        """Cut segment a from segment b: the trunk's link goes down."""
        _ip("-n", self.switch, "link", "set", "trunk-a", "down")
        _ip("-n", self.switch, "link", "set", "trunk-b", "down")

    def heal(self) -> None:
        _ip("-n", self.switch, "link", "set", "trunk-a", "up")
        _ip("-n", self.switch, "link", "set", "trunk-b", "up")
        self._wait_forwarding({"trunk-a", "trunk-b"})

    def _wait_forwarding(self, ports: set[str], timeout: float = 5.0) -> None:
        """Until the bridge forwards on every one of ports: the kernel applies carrier
        changes asynchronously (linkwatch), so a frame sent right after `link set up`
        can still be dropped. Polled: there is no event to wait on short of `ip monitor`."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                ["bridge", "-n", self.switch, "-j", "link", "show"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            forwarding = {
                p["ifname"] for p in json.loads(out or "[]") if p.get("state") == "forwarding"
            }
            if ports <= forwarding:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridge ports {sorted(ports - forwarding)} not forwarding")
            select.select([], [], [], 0.02)

    def set_host_link(self, label: str, up: bool) -> None:
        """Unplug (or plug back) one host's cable at the switch."""
        port = self.hosts[label].port
        _ip("-n", self.switch, "link", "set", port, "up" if up else "down")
        if up:
            self._wait_forwarding({port})

    # -- processes -----------------------------------------------------------------------

    def command(self, label: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[label].ns, *argv]

    def popen(self, label: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start argv inside host label's namespace; close() stops it."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            self.command(label, argv), **kwargs
        )
        self._procs.append(proc)
        return proc

    def run(
        self, label: str, argv: Sequence[str], timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(label, argv), capture_output=True, text=True, timeout=timeout
        )
