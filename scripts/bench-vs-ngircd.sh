#!/usr/bin/env bash
# tchat vs ngircd on the same fan-out workload, side by side.
#
# Installs ngircd (apt-get) if it is missing, runs it on 127.0.0.1 on a free port with its
# flood limits off (no penalties, no per-IP limit), drives K IRC clients in one channel with
# tchat's load client (tchat.bench.irc), then runs `tchat bench fanout` with the same K, S,
# R, D, B on a local 3-server tchat cluster, and prints both with ratios.
#
# Usage: scripts/bench-vs-ngircd.sh [--clients K] [--senders S] [--rate R] [--duration D]
#                                   [--size B] [--unicast] [--asyncio] [--workers W]
# Everything stays on 127.0.0.1. Output files: $OUT (default: a temp dir) /{irc,tchat}.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

if ! command -v ngircd >/dev/null 2>&1 && [ ! -x /usr/sbin/ngircd ]; then
    echo "ngircd not found: installing it with apt-get" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ngircd >/dev/null
    # The package starts a system-wide ngircd on port 6667: the bench does not use it.
    $SUDO systemctl stop ngircd >/dev/null 2>&1 || $SUDO service ngircd stop >/dev/null 2>&1 || true
fi

ARGS=(--clients 400 --senders 200 --rate 2 --duration 5 --size 64)
TCHAT_ONLY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --clients|--senders|--rate|--duration|--size|--workers|--drain) ARGS+=("$1" "$2"); shift 2 ;;
        --unicast|--asyncio) TCHAT_ONLY+=("$1"); shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-$(mktemp -d /tmp/tchat-vs-ngircd.XXXXXX)}
mkdir -p "$OUT"
echo "ngircd run..." >&2
"$PY" -m tchat bench fanout --irc "${ARGS[@]}" --json > "$OUT/irc.json"
echo "tchat run..." >&2
"$PY" -m tchat bench fanout "${ARGS[@]}" "${TCHAT_ONLY[@]}" --json > "$OUT/tchat.json"

"$PY" - "$OUT/irc.json" "$OUT/tchat.json" <<'PYEOF'
import json, sys

irc, tchat = (json.load(open(p)) for p in sys.argv[1:3])
rows = [
    ("deliveries", lambda d: d["deliveries"]),
    ("expected", lambda d: d["expected"]),
    ("lost", lambda d: d["lost"]),
    ("duplicated", lambda d: d["duplicated"]),
    ("deliveries_per_s", lambda d: d["deliveries_per_s"]),
    ("p50_ms", lambda d: d["latency"]["p50_ms"]),
    ("p99_ms", lambda d: d["latency"]["p99_ms"]),
    ("max_ms", lambda d: d["latency"]["max_ms"]),
    ("server_cpu_s", lambda d: d["cpu_s"]["leader"]),
    ("leader_cpu_us_per_delivery", lambda d: d["leader_cpu_us_per_delivery"]),
    ("server_rss_mib", lambda d: d.get("leader_rss_mib")),
]
w = f"{tchat['clients']} clients, {tchat['senders']} senders x {tchat['rate']} msg/s, " \
    f"{tchat['size']} B, {tchat['duration']} s; tchat {tchat['mode']} on {tchat['loop']}"
print(w)
print(f"{'metric':<28}{'ngircd':>14}{'tchat':>14}{'tchat/ngircd':>14}")
for name, get in rows:
    a, b = get(irc), get(tchat)
    ratio = f"{b / a:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "-"
    print(f"{name:<28}{a!s:>14}{b!s:>14}{ratio:>14}")
print(f"(json: {sys.argv[1]}, {sys.argv[2]})")
PYEOF
