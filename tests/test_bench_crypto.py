"""Smoke run of ``tchat bench crypto`` at tiny sizes: it works and emits every figure as JSON.

This checks the machinery, not performance: the figures are in docs/SECURITY.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_crypto_emits_every_figure() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tchat",
            "bench",
            "crypto",
            "--json",
            "--sessions",
            "20",
            "--connections",
            "4",
            "--burst",
            "4096",
            "--handshakes",
            "3",
            "--small-records",
            "20",
            "--large-records",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    cpu = result["cpu"]
    assert set(cpu["handshake_us"]) >= {"noise_nx_chachapoly_sha256", "tls13_ed25519"}
    for size in ("200B", "61440B"):
        figures = cpu[f"record_{size}_seal_open_us"]
        assert all(v > 0 for v in figures.values()) and len(figures) == 3
    memory = result["memory_bytes"]
    assert memory["noise"]["server_side_20"]["rss_per_session_bytes"] >= 0
    assert memory["tls"]["server_side_tracemalloc"] > 0
    transports = memory["server_transport_per_connection"]
    assert transports["asyncio_ssl_read_buffer_in_source"] == 256 * 1024
    assert "uvloop_ssl_after_burst" in transports
    assert result["machine"]["cores"] >= 1
