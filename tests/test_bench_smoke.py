"""Smoke runs of every ``tchat bench`` subcommand at tiny sizes: each works and emits valid JSON.

These check the benchmark machinery, not performance: figures come from full bench runs
(docs/BENCHMARKS.md), never from these timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tchat.bench.irc import ngircd_binary
from tchat.bench.ledger import Ledger, Workload, make_text, parse_text
from tchat.bench.stats import cpu_seconds, percentile, summarize_ms

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, timeout: float = 60) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tchat", "bench", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]
    result: dict[str, Any] = json.loads(lines[0])
    assert result["machine"]["cores"] >= 1
    return result


# -- pure helpers ----------------------------------------------------------------------
def test_percentile_and_summary() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == pytest.approx(0.050)
    assert percentile(values, 99) == pytest.approx(0.099)
    s = summarize_ms(values)
    assert (s["count"], s["p50_ms"], s["p99_ms"], s["max_ms"]) == (100, 50.0, 99.0, 100.0)
    assert summarize_ms([])["p50_ms"] is None


def test_ledger_counts_losses_duplicates_and_skips_own_echo() -> None:
    work = Workload(clients=3, senders=2, rate=1.0, duration=2.0, size=40)  # 4 messages
    ledger = Ledger(work, range(3))
    texts = [make_text(k, work.size) for k in range(work.total)]
    assert parse_text(texts[3])[0] == 3 and len(texts[0]) == 40
    for k, text in enumerate(texts):
        for receiver in range(3):
            if not (k == 2 and receiver == 2):  # client 2 misses message 2
                ledger.receipt(receiver, text)
    ledger.receipt(1, texts[0])  # a duplicate
    ledger.receipt(0, "not a bench text")
    tally = ledger.tally(work.total)
    # Each message has 2 receivers other than its sender: 8 due, 1 lost, 1 duplicated.
    assert tally == {"expected": 8, "deliveries": 7, "lost": 1, "duplicated": 1, "foreign": 1}


def test_ledger_parses_a_shared_text_once_and_still_counts_every_receiver() -> None:
    work = Workload(clients=4, senders=1, rate=1.0, duration=2.0, size=40)  # 2 messages
    ledger = Ledger(work, range(4), base=10)
    text = make_text(11, work.size)  # this run's message 1 (base 10)
    for receiver in range(4):
        ledger.receipt(receiver, text)  # the same str object, as shared decoded frames give
    old = make_text(7, work.size)
    ledger.receipt(2, old)  # an earlier run's text: foreign
    assert ledger._parsed == {text: (1, parse_text(text)[1]), old: (-3, parse_text(old)[1])}
    tally = ledger.tally(work.total)
    assert (tally["deliveries"], tally["foreign"], tally["duplicated"]) == (3, 1, 0)


def test_decode_cache_shares_decoded_frames_and_never_caches_bad_ones() -> None:
    from tchat.core import codec
    from tchat.core.errors import RemoteProtocolError
    from tchat.core.messages import StatusRequest
    from tchat.runtime.transport import DecodeCache, shared_decode_cache

    cache = DecodeCache(None, codec.MAX_FRAME)
    data = codec.encode(StatusRequest(addr="127.0.0.1:9", nonce=1))
    first = cache.decode(data)
    assert first == StatusRequest(addr="127.0.0.1:9", nonce=1)
    assert cache.decode(bytes(data)) is first and (cache.hits, cache.misses) == (1, 1)
    for _ in range(2):  # a bad frame fails every time: it is counted by each receiver
        with pytest.raises(RemoteProtocolError):
            cache.decode(data[:-1])
    assert len(cache.entries) == 1
    for nonce in range(DecodeCache.MAX_ENTRIES + 5):  # bounded: the oldest go first
        cache.decode(codec.encode(StatusRequest(addr="127.0.0.1:9", nonce=nonce + 2)))
    assert len(cache.entries) == DecodeCache.MAX_ENTRIES and data not in cache.entries
    keyed = shared_decode_cache(b"k" * 16, codec.MAX_FRAME)
    assert keyed is shared_decode_cache(b"k" * 16, codec.MAX_FRAME)
    assert keyed is not shared_decode_cache(None, codec.MAX_FRAME)  # a key changes decoding


def test_profile_shares_count_inclusive_and_self_samples(tmp_path: Path) -> None:
    from tchat.bench.profiling import shares

    raw = tmp_path / "p.txt"
    raw.write_text(
        "main (/x/worker.py:9);handle (/x/client.py:3) 3\n"
        "main (/x/worker.py:9);recv (/x/multicast.py:7);handle (/x/client.py:3) 1\n"
        "main (/x/worker.py:9) 1\n"
    )
    total, inclusive, own = shares(raw)
    assert total == 5 and inclusive["main (worker.py)"] == 5
    assert inclusive["handle (client.py)"] == 4 and own["handle (client.py)"] == 4
    assert own["main (worker.py)"] == 1 and "recv (multicast.py)" not in own


def test_cpu_seconds_reads_proc() -> None:
    import os

    assert cpu_seconds(os.getpid()) > 0


# -- the subcommands -------------------------------------------------------------------
def test_fanout_multicast_delivers_everything() -> None:
    r = bench("fanout", "--clients", "6", "--senders", "2", "--rate", "5", "--duration", "1")
    assert r["system"] == "tchat" and r["mode"] == "multicast"
    assert r["expected"] == 10 * 5 and r["deliveries"] == r["expected"]
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["acked"] == 10
    assert r["leader_cpu_us_per_delivery"] is not None and r["latency"]["p99_ms"] > 0


def test_fanout_unicast_asyncio() -> None:
    r = bench(
        "fanout", "--clients", "4", "--senders", "2", "--rate", "5", "--duration", "1",
        "--unicast", "--asyncio",
    )  # fmt: skip
    assert (r["mode"], r["loop"]) == ("unicast", "asyncio")
    assert r["deliveries"] == r["expected"] == 10 * 3 and r["duplicated"] == 0


@pytest.mark.skipif(ngircd_binary() is None, reason="ngircd is not installed")
def test_fanout_irc_baseline() -> None:
    r = bench("fanout", "--irc", "--clients", "5", "--senders", "2", "--rate", "5",
              "--duration", "1")  # fmt: skip
    assert r["system"] == "ngircd" and r["deliveries"] == r["expected"] == 10 * 4


def test_throughput_ramp() -> None:
    r = bench("throughput", "--room-size", "3", "--rates", "30,60", "--step", "1")
    assert r["steps"] and r["max_committed_rate"] > 0
    assert all(step["lost"] == 0 for step in r["steps"])


def test_failover_one_trial_loses_nothing() -> None:
    r = bench("failover", "--trials", "1", "--clients", "2", "--rate", "20", timeout=90)
    assert r["client_visible_failover"]["count"] == 1
    assert r["lost_acked"] == 0 and r["duplicated"] == 0 and r["acked"] > 0


def test_election_sim_within_bound_and_real() -> None:
    r = bench("election", "--servers", "3,5", "--real", "3", "--real-trials", "1")
    assert {row["case"] for row in r["sim"]} == {"single-initiator", "all-initiate"}
    assert all(row["within_bound"] for row in r["sim"])
    assert r["real"][0]["kill_to_leader"]["count"] == 1


def test_memory_small() -> None:
    r = bench("memory", "--clients", "20")
    assert r["users_seen_by_status"] >= 20
    assert r["leader_rss_after_mib"] >= r["leader_rss_before_mib"] > 0


def test_memory_small_reports_login_times() -> None:
    r = bench("memory", "--clients", "20", "--insecure")
    assert r["sessions"] == "plaintext (--insecure)" and r["login_ms"]["count"] == 20


def test_login_noise_and_insecure() -> None:
    r = bench("login", "--logins", "3", timeout=90)
    assert r["noise"]["count"] == r["insecure"]["count"] == 3
    assert r["noise"]["sessions"] == "noise"


def test_logmem_small() -> None:
    r = bench("logmem", "--messages", "300", "--rate", "300", "--rounds", "3")
    assert r["committed"] == r["sent"] == 300 and r["lost"] == 0
    assert [c["committed"] for c in r["checkpoints"]] == [100, 200, 300]
    assert r["leader_rss_after_mib"] >= r["leader_rss_before_mib"] > 0
    assert r["rss_samples_mib"] and r["ok"]


def test_burst_small() -> None:
    r = bench("burst", "--lines", "5", "--chars", "500", "--deadline", "20")
    assert r["received_within_deadline"] == 5 and r["received_in_order_and_intact"]
    assert r["acked_within_deadline"] == 5 and r["after_line_delivered"] and r["ok"]
    assert r["utf8_bytes_per_line"] > 500  # multi-byte characters among them
