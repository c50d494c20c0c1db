"""Child processes of ``tchat bench crypto``: memory per idle encrypted session, one fresh
interpreter per measurement so that no earlier allocation blurs the RSS delta.

``python -m tchat.bench.crypto_memory sessions KIND N KEEP TRACE`` weighs N in-memory sessions;
``python -m tchat.bench.crypto_memory server LOOP SSL N`` serves N real loopback connections
and weighs them once idle (the asyncio / uvloop transports, plain or SSL). Each prints one
JSON line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tracemalloc
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tchat.bench.crypto_tls import noise_pair, noise_send, tls_contexts, tls_pair, tls_send

PAGE = os.sysconf("SC_PAGE_SIZE")
MESSAGE = b"m" * 200
SERVE_TIMEOUT_S = 120.0


def rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def weigh_sessions(kind: str, n: int, keep: str, trace: bool) -> dict[str, Any]:
    """Bytes per established session after one 200-byte message each way (then idle)."""
    if kind == "tls":
        ctx = tls_contexts()

        def make() -> Any:
            client, server = tls_pair(ctx)
            tls_send(client, server, MESSAGE)
            tls_send(server, client, MESSAGE)
            return (client, server) if keep == "both" else server
    else:
        key = X25519PrivateKey.generate()

        def make() -> Any:
            client, server = noise_pair(key, payload=b"c" * 200)
            noise_send(client, server, MESSAGE)
            noise_send(server, client, MESSAGE)
            return (client, server) if keep == "both" else server

    make()  # warm-up: first-use allocations are not per session
    gc.collect()
    if trace:
        tracemalloc.start()
    base_rss, base_traced = rss(), tracemalloc.get_traced_memory()[0]
    kept = [make() for _ in range(n)]
    gc.collect()
    after_rss, after_traced = rss(), tracemalloc.get_traced_memory()[0]
    assert len(kept) == n
    result: dict[str, Any] = {"rss_per_session_bytes": round((after_rss - base_rss) / n)}
    if trace:
        result["traced_per_session_bytes"] = round((after_traced - base_traced) / n)
    return result


async def _serve(use_ssl: bool, n: int) -> dict[str, Any]:
    ctx = tls_contexts().server if use_ssl else None
    done = 0
    base = 0
    all_in = asyncio.Event()
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal done, base
        line = await reader.readline()
        # "hello N": N more bytes follow, in one burst (a catch-up, a big paste).
        await reader.readexactly(int(line.split()[1]))
        writer.write(line)
        await writer.drain()
        done += 1
        if done == 1:
            gc.collect()
            base = rss()  # after the first connection: one-time costs are not per connection
        if done == n:
            all_in.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await asyncio.wait_for(all_in.wait(), SERVE_TIMEOUT_S)
    gc.collect()
    after = rss()
    release.set()
    server.close()
    return {"rss_per_connection_bytes": round((after - base) / max(1, n - 1))}


def main(argv: list[str]) -> int:
    if argv[0] == "sessions":
        kind, n, keep, trace = argv[1], int(argv[2]), argv[3], argv[4] == "1"
        result = weigh_sessions(kind, n, keep, trace)
    elif argv[0] == "server":
        loop, use_ssl, n = argv[1], argv[2] == "1", int(argv[3])
        if loop == "uvloop":
            import uvloop

            result = uvloop.run(_serve(use_ssl, n))
        else:
            result = asyncio.run(_serve(use_ssl, n))
    else:
        raise SystemExit(f"unknown measurement {argv[0]!r}")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
