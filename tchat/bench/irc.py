"""The IRC baseline: an ngircd on loopback with flood limits off, and an asyncio IRC load client."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tchat.bench.priority import server_priority

logger = logging.getLogger(__name__)

CHANNEL = "#bench"

# Penalties (ngircd's flood throttle) off, no per-IP or join limits, no DNS/ident/PAM
# look-ups per connection, and pings rare enough not to matter within a run.
_CONFIG = """\
[Global]
Name = bench.tchat.invalid
Info = tchat benchmark baseline
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = bench
PidFile = {dir}/ngircd.pid
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxPenaltyTime = 0
MaxNickLength = 16
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ngircd_binary() -> str | None:
    return shutil.which("ngircd") or next(
        (p for p in ("/usr/sbin/ngircd", "/usr/local/sbin/ngircd") if os.path.exists(p)), None
    )


class Ngircd:
    """An ngircd process on 127.0.0.1 and a free port, in a temp dir; a context manager."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tchat-bench-ngircd-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Ngircd:
        binary = ngircd_binary()
        if binary is None:
            raise RuntimeError("ngircd is not installed (apt-get install ngircd)")
        conf = self.dir / "ngircd.conf"
        conf.write_text(_CONFIG.format(port=self.port, dir=self.dir))
        log = open(self.dir / "ngircd.log", "wb")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(
            [binary, "--nodaemon", "--config", str(conf)],
            stdout=log,
            stderr=log,
            preexec_fn=server_priority,  # the same priority as tchat's servers get
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ngircd exited: {(self.dir / 'ngircd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("ngircd did not open its port within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class IrcClient(asyncio.Protocol):
    """One IRC connection: registers, joins the channel, reports each channel message."""

    def __init__(self, nick: str, on_text: Callable[[str], None]) -> None:
        self.nick = nick
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.registered = asyncio.get_running_loop().create_future()
        self.joined = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(  # type: ignore[union-attr]
            f"NICK {self.nick}\r\nUSER {self.nick} 0 * :bench\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for fut in (self.registered, self.joined):
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self.nick}: connection lost"))

    def data_received(self, data: bytes) -> None:
        lines = (self.buf + data).split(b"\r\n")
        self.buf = lines.pop()
        for line in lines:
            # ":nick!user@host PRIVMSG #bench :text" is the hot path: test it first.
            cut = line.find(b" PRIVMSG ")
            if cut > 0:
                colon = line.find(b" :", cut + 9)
                if colon > 0:
                    self.on_text(line[colon + 2 :].decode("utf-8", "replace"))
                continue
            self._control(line)

    def _control(self, line: bytes) -> None:
        if line.startswith(b"PING"):
            assert self.transport is not None
            self.transport.write(b"PONG" + line[4:] + b"\r\n")
            return
        parts = line.split(b" ", 3)
        if len(parts) < 2:
            return
        code = parts[1]
        if code == b"001" and not self.registered.done():
            self.registered.set_result(None)
        elif code == b"366" and not self.joined.done():
            self.joined.set_result(None)
        elif code in (b"433", b"432", b"465") or line.startswith(b"ERROR"):
            err = ConnectionError(f"{self.nick}: {line.decode(errors='replace')}")
            for fut in (self.registered, self.joined):
                if not fut.done():
                    fut.set_exception(err)

    def join(self) -> None:
        assert self.transport is not None
        self.transport.write(f"JOIN {CHANNEL}\r\n".encode())

    def say(self, text: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(f"PRIVMSG {CHANNEL} :{text}\r\n".encode())

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(b"QUIT :bye\r\n")
            self.transport.close()


async def connect(port: int, nick: str, on_text: Callable[[str], None]) -> IrcClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: IrcClient(nick, on_text), "127.0.0.1", port)
    try:
        await client.registered
        client.join()
        await client.joined
    except ConnectionError:
        if client.transport is not None:
            client.transport.close()  # refused (nick in use...): do not leave it open
        raise
    return client
