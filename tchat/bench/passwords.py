"""``python -m tchat.bench.passwords``: what an account password costs, measured.

Two figures. One argon2id hash and one verification at tchat's parameters (in this
process, as the leader's hashing thread runs them). And logging in with a password from a
machine whose key the account does not hold yet, end to end (a fresh client: discovery,
Noise handshake, Register with the password, the leader's verification, KeyAdded and the
login replicated, Welcome), against a key login on the same cluster. Each sample uses its
own account (its owner sets the password first), one at a time: the leader's guessing
bounds (5 per account, 10 per host, then 1 per 12 s and 1 per 3 s) pace the run, so keep
``--logins`` small.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.stats import summarize_ms
from tchat.core.effects import Failed, Ready
from tchat.core.messages import SetPassword
from tchat.runtime.client_service import ClientService
from tchat.runtime.options import NetOptions
from tchat.runtime.passwords import hasher

READY_TIMEOUT = 30.0
# Each sample takes two of the host's password tokens (the owner's SetPassword and the new
# machine's login): past the burst of 10 the host earns one per 3 s, so samples are paced.
BURST_SAMPLES = 4
PACE = 6.5
PASSWORD = "a password of reasonable length"


def hash_times(count: int) -> dict[str, Any]:
    argon = hasher()
    hashed: list[float] = []
    verified: list[float] = []
    phc = argon.hash(PASSWORD)  # the first one pays for the library's setup
    for _ in range(count):
        began = time.perf_counter()
        phc = argon.hash(PASSWORD)
        hashed.append(time.perf_counter() - began)
        began = time.perf_counter()
        argon.verify(phc, PASSWORD)
        verified.append(time.perf_counter() - began)
    return {"phc_length": len(phc), "hash": summarize_ms(hashed), "verify": summarize_ms(verified)}


async def _login(options: NetOptions, name: str) -> tuple[ClientService, float]:
    ready = asyncio.Event()
    failed: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, Failed):
            failed.append(event.reason)
        if isinstance(event, Ready | Failed):
            ready.set()

    service = ClientService(options, name, on_event)
    began = time.perf_counter()
    await service.start()
    await asyncio.wait_for(ready.wait(), READY_TIMEOUT)
    if failed:
        await service.close()
        raise RuntimeError(f"login as {name} refused: {failed[0]}")
    return service, time.perf_counter() - began


async def logins(count: int, keys: Path) -> dict[str, Any]:
    cluster = Cluster(3, log_level="WARNING")
    by_key: list[float] = []
    by_password: list[float] = []
    try:
        cluster.start()
        await cluster.wait_stable(30)
        base = cluster.net_options(multicast=False, lobby=False)
        for i in range(count):
            if i >= BURST_SAMPLES:
                await asyncio.sleep(PACE)  # the guessing bound's pace, not a wait on a state
            name = f"pw{i}"
            owner_options = dataclasses.replace(base, identity=keys / f"{name}-desk.key")
            owner, took = await _login(owner_options, name)
            by_key.append(took)
            await asyncio.wait_for(owner.acked(owner.submit(SetPassword(PASSWORD))), 30)
            laptop_options = dataclasses.replace(
                base, identity=keys / f"{name}-laptop.key", password=PASSWORD
            )
            laptop, took = await _login(laptop_options, name)
            by_password.append(took)
            await laptop.close()
            await owner.close()
    finally:
        cluster.cleanup()
    return {"key_login": summarize_ms(by_key), "password_login": summarize_ms(by_password)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tchat.bench.passwords", description=__doc__)
    parser.add_argument("--hashes", type=int, default=10)
    parser.add_argument("--logins", type=int, default=12)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"bench": "passwords", "argon2id": hash_times(args.hashes)}
    with tempfile.TemporaryDirectory() as keys:
        report.update(asyncio.run(logins(args.logins, Path(keys))))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
