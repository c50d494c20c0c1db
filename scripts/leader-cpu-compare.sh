#!/bin/bash
# Leader CPU per committed message, trees compared alternating in the same minutes.
# usage: scripts/leader-cpu-compare.sh OUTDIR RUNS NAME=TREE[:BENCH-ARGS] [...]
#   e.g. scripts/leader-cpu-compare.sh /tmp/cmp 3 before=../tree-b262cdf main=../tree-main perf=.
#   BENCH-ARGS are extra bench options, e.g. perf-plain=.:--insecure (plaintext
#   sessions; a tree before issue 15 has no such option and no encryption).
# Env: RATES (default 6000), STEP (seconds per step, default 10), PY (the venv's python).
# Each run is `tchat bench throughput --room-size 10` from the tree it measures; the bench
# is not niced (its servers must compete fairly). Prints one line per run with the
# 1-minute load average before it, then a summary per tree.
set -u
out=$1; runs=$2; shift 2
rates=${RATES:-6000}; step=${STEP:-10}
py=${PY:-/work/main/.venv/bin/python}
mkdir -p "$out"
for i in $(seq 1 "$runs"); do
  for spec in "$@"; do
    name=${spec%%=*}; tree=${spec#*=}; extra=""
    case $tree in *:*) extra=${tree#*:}; tree=${tree%%:*};; esac
    load=$(cut -d' ' -f1 /proc/loadavg)
    PYTHONPATH=$tree timeout 300 "$py" -m tchat bench throughput --room-size 10 \
      --rates "$rates" --step "$step" --workers 2 --json $extra >"$out/$name-$i.json" 2>"$out/$name-$i.err"
    "$py" - "$out/$name-$i.json" "$name" "$i" "$load" <<'PY'
import json, sys
path, name, i, load = sys.argv[1:]
try:
    steps = json.load(open(path))["steps"]
except Exception as exc:  # a failed run is reported, not fatal
    print(f"{name:8} run {i}: failed ({exc})", flush=True); sys.exit()
for s in steps:
    print(f"{name:8} run {i} load {load:>5}: offered {s['offered_rate']:7.0f} committed {s['committed_rate']:8.1f}"
          f" leader {s['leader_cpu_us_per_message']} us/msg p99 {s['commit_p99_ms']} ms", flush=True)
PY
  done
done
"$py" - "$out" "$@" <<'PY'
import json, statistics, sys
out, specs = sys.argv[1], sys.argv[2:]
for spec in specs:
    name = spec.split("=", 1)[0]
    per_rate = {}
    import glob
    for path in sorted(glob.glob(f"{out}/{name}-*.json")):
        try:
            for s in json.load(open(path))["steps"]:
                per_rate.setdefault(s["offered_rate"], []).append((s["leader_cpu_us_per_message"], s["committed_rate"]))
        except Exception:
            pass
    for rate, vals in sorted(per_rate.items()):
        us = [v[0] for v in vals if v[0] is not None]
        print(f"{name:8} offered {rate:7.0f}: leader us/msg {sorted(us)} median {statistics.median(us) if us else None};"
              f" committed {[v[1] for v in vals]}")
PY
