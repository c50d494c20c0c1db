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
from tchat.crypto.noise import CipherState, HandshakeState, SymmetricState
from tchat.crypto.patterns import parse_protocol_name
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


REPEATS = 20


def _cpu_us(fns: dict[str, Callable[[], Any]], count: int) -> dict[str, float]:
    """Process time per call of each function: the best of REPEATS rounds of count/REPEATS
    calls, the functions taking turns in every round.

    Taking turns puts the contenders under the same load from the shared cores; the minimum
    (as timeit advises) keeps what that load only ever adds out of the figure.
    """
    per_run = max(1, count // REPEATS)
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(REPEATS):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(per_run):
                fn()
            best[name] = min(best[name], (time.process_time() - start) / per_run)
    return {name: round(t * 1e6, 1) for name, t in best.items()}


def _noise_handshake(protocol: str, key: X25519PrivateKey) -> Callable[[], Any]:
    def run() -> None:
        init = HandshakeState(protocol, initiator=True, prologue=b"bench")
        resp = HandshakeState(protocol, initiator=False, prologue=b"bench", static=key)
        resp.read_message(init.write_message())
        init.read_message(resp.write_message(b"c" * 200))
        init.split()
        resp.split()

    return run


def _nx_symmetric_only(protocol: str) -> Callable[[], Any]:
    """An NX handshake's hashing and key derivation for both sides, without the X25519 work:
    the only part the hash choice changes (the DH dominates the whole and hides it)."""
    parsed = parse_protocol_name(protocol)
    key_material = bytes(range(32))
    payload = b"c" * 200

    def run() -> None:
        for _ in range(2):  # both sides do the same symmetric work
            sym = SymmetricState(parsed)
            sym.mix_hash(b"bench")
            sym.mix_hash(key_material)  # e
            sym.decrypt_and_hash(b"")  # message 1's empty payload, no key yet
            sym.mix_hash(key_material)  # e
            sym.mix_key(key_material)  # ee
            sym.encrypt_and_hash(key_material)  # s
            sym.mix_key(key_material)  # es
            sym.encrypt_and_hash(payload)
            sym.split()

    return run


def measure_cpu(handshakes: int, small: int, large: int) -> dict[str, Any]:
    key = X25519PrivateKey.generate()
    ctx = tls_contexts()
    nx = "Noise_NX_25519_ChaChaPoly_"
    out: dict[str, Any] = {
        "handshake_us": _cpu_us(
            {
                "noise_nx_chachapoly_sha256": _noise_handshake(nx + "SHA256", key),
                "noise_nx_chachapoly_blake2s": _noise_handshake(nx + "BLAKE2s", key),
                "noise_session_helper": lambda: noise_pair(key, b"c" * 200),
                "tls13_ed25519": lambda: tls_pair(ctx),
            },
            handshakes,
        ),
        "handshake_hashing_only_us": _cpu_us(
            {
                "sha256": _nx_symmetric_only(nx + "SHA256"),
                "blake2s": _nx_symmetric_only(nx + "BLAKE2s"),
            },
            small // 10,
        ),
    }
    noise = noise_pair(key)
    aes = (
        RecordSealer(CipherState("AESGCM", bytes(32))),
        RecordOpener(CipherState("AESGCM", bytes(32))),
    )
    client, server = tls_pair(ctx)
    for size, count in ((200, small), (60 * 1024, large)):
        data = os.urandom(size)
        # One session's two directions stand in for the two ends: same work per record.
        out[f"record_{size}B_seal_open_us"] = _cpu_us(
            {
                "noise_chachapoly": partial(noise_send, noise[0], noise[1], data),
                "noise_aesgcm": partial(noise_send, aes, aes, data),
                "tls13": partial(tls_send, client, server, data),
            },
            count,
        )
    # The sending side alone: what a leader pays per frame it writes to one session.
    data = os.urandom(200)

    def tls_seal() -> bytes:
        client.obj.write(data)
        return client.outgoing.read()

    out["seal_only_200B_us"] = _cpu_us(
        {
            "noise_chachapoly": partial(noise[0][0].seal, data),
            "noise_aesgcm": partial(aes[0].seal, data),
            "tls13": tls_seal,
        },
        small,
    )
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
