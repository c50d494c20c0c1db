"""Bench output: one JSON object (``--json``) or an aligned key/value table for people."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from typing import Any


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    versions: dict[str, str] = {}
    for pkg in ("tchat", "uvloop", "msgpack"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            names = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            cpu = next(names, "?")
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine skews latencies: the 1-minute load average at the end.
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **versions,
    }


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, rows)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, rows)
    else:
        rows.append((prefix, json.dumps(value) if isinstance(value, list) else str(value)))


def render(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    _flatten("", result, rows)
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def emit(result: dict[str, Any], as_json: bool) -> None:
    text = json.dumps(result) if as_json else render(result)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
