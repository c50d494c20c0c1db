"""``tchat bench crypto``: Noise versus TLS 1.3 per session: memory when idle, CPU per
handshake and per record, and what asyncio's / uvloop's SSL transport holds per connection.

Memory is weighed in fresh child processes (``crypto_memory``); CPU is process time in this
one (both ends of each session run here, so a figure is the cost of both sides).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tchat.bench.crypto_tls import (
    SERVER_NAME,
    noise_pair,
    noise_send,
    tls_contexts,
    tls_pair,
    tls_send,
)
from tchat.crypto.noise import CipherState, HandshakeState
from tchat.crypto.records import RecordOpener, RecordSealer

logger = logging.getLogger(__name__)

CHILD_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 10.0
# Where the installed event loops allocate their per-connection SSL read buffer (read from
# the sources: asyncio/sslproto.py SSLProtocol.max_size and __init__'s bytearray(max_size);
# uvloop/includes/consts.pxi SSL_READ_MAX_SIZE, malloc'd in sslproto.pyx __cinit__).
SSL_TRANSPORT_BUFFER = {"asyncio": 256 * 1024, "uvloop": 256 * 1024}


def _child(*argv: str, stdin_port: Callable[[int], Any] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tchat.bench.crypto_memory", *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        held = None
        if stdin_port is not None:
            held = stdin_port(int(proc.stdout.readline()))
        line = proc.stdout.readline()
        if proc.wait(CHILD_TIMEOUT_S) != 0 or not line:
            raise RuntimeError(f"{' '.join(argv)} failed")
        del held  # the clients' sockets close only once the server has been weighed
        result: dict[str, Any] = json.loads(line)
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _connect_clients(n: int, use_ssl: bool, burst: int) -> Callable[[int], list[Any]]:
    ctx = tls_contexts().client if use_ssl else None
    if ctx is not None:
        # The server child made its own certificate; only its memory is measured here.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    def connect(port: int) -> list[Any]:
        socks: list[Any] = []
        for _ in range(n):
            sock: Any = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S)
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=SERVER_NAME)
            hello = f"hello {burst}\n".encode()
            sock.sendall(hello + bytes(burst))
            if sock.recv(64) != hello:
                raise RuntimeError("echo failed")
            socks.append(sock)
        return socks

    return connect


def measure_memory(sessions: list[int], connections: int, burst: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("noise", "tls"):
        rows: dict[str, Any] = {}
        for n in sessions:
            rows[f"both_sides_{n}"] = _child("sessions", kind, str(n), "both", "0")
            rows[f"server_side_{n}"] = _child("sessions", kind, str(n), "server", "0")
        traced = _child("sessions", kind, str(min(sessions)), "server", "1")
        rows["server_side_tracemalloc"] = traced["traced_per_session_bytes"]
        out[kind] = rows
    transports: dict[str, Any] = {}
    # Idle after a 6-byte hello, and idle after one burst each: a read buffer that is only
    # malloc'd (uvloop) becomes resident as far as a read ever filled it, and stays so.
    for loop, use_ssl, size in (
        ("asyncio", False, 0),
        ("asyncio", True, 0),
        ("uvloop", False, 0),
        ("uvloop", True, 0),
        ("uvloop", False, burst),
        ("uvloop", True, burst),
    ):
        label = f"{loop}_{'ssl' if use_ssl else 'plain'}{'_after_burst' if size else ''}"
        clients = _connect_clients(connections, use_ssl, size)
        measured = _child(
            "server", loop, "1" if use_ssl else "0", str(connections), stdin_port=clients
        )
        transports[label] = measured["rss_per_connection_bytes"]
    for loop in ("asyncio", "uvloop"):
        transports[f"{loop}_ssl_extra"] = transports[f"{loop}_ssl"] - transports[f"{loop}_plain"]
        transports[f"{loop}_ssl_read_buffer_in_source"] = SSL_TRANSPORT_BUFFER[loop]
    transports["uvloop_ssl_extra_after_burst"] = (
        transports["uvloop_ssl_after_burst"] - transports["uvloop_plain_after_burst"]
    )
    out["server_transport_per_connection"] = transports
    return out


def _cpu_us(fn: Callable[[], Any], count: int) -> float:
    fn()  # warm-up
    start = time.process_time()
    for _ in range(count):
        fn()
    return round((time.process_time() - start) / count * 1e6, 1)


def _noise_handshake(protocol: str, key: X25519PrivateKey) -> Callable[[], Any]:
    def run() -> None:
        init = HandshakeState(protocol, initiator=True, prologue=b"bench")
        resp = HandshakeState(protocol, initiator=False, prologue=b"bench", static=key)
        resp.read_message(init.write_message())
        init.read_message(resp.write_message(b"c" * 200))
        init.split()
        resp.split()

    return run


def measure_cpu(handshakes: int, small: int, large: int) -> dict[str, Any]:
    key = X25519PrivateKey.generate()
    ctx = tls_contexts()
    out: dict[str, Any] = {
        "handshake_us": {
            "noise_nx_chachapoly_sha256": _cpu_us(
                _noise_handshake("Noise_NX_25519_ChaChaPoly_SHA256", key), handshakes
            ),
            "noise_nx_chachapoly_blake2s": _cpu_us(
                _noise_handshake("Noise_NX_25519_ChaChaPoly_BLAKE2s", key), handshakes
            ),
            "noise_session_helper": _cpu_us(lambda: noise_pair(key, b"c" * 200), handshakes),
            "tls13_ed25519": _cpu_us(lambda: tls_pair(ctx), handshakes),
        }
    }
    noise = noise_pair(key)
    aes = (
        RecordSealer(CipherState("AESGCM", bytes(32))),
        RecordOpener(CipherState("AESGCM", bytes(32))),
    )
    client, server = tls_pair(ctx)
    for size, count in ((200, small), (60 * 1024, large)):
        data = os.urandom(size)
        out[f"record_{size}B_seal_open_us"] = {
            # One session's two directions stand in for the two ends: same work per record.
            "noise_chachapoly": _cpu_us(partial(noise_send, noise[0], noise[1], data), count),
            "noise_aesgcm": _cpu_us(partial(noise_send, aes, aes, data), count),
            "tls13": _cpu_us(partial(tls_send, client, server, data), count),
        }
    return out


def run(args: Any) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {
        "bench": "crypto",
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
        "openssl": ssl.OPENSSL_VERSION,
    }
    result["cpu"] = measure_cpu(args.handshakes, args.small_records, args.large_records)
    if not args.no_memory:
        result["memory_bytes"] = measure_memory(args.sessions, args.connections, args.burst)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result
