#!/usr/bin/env bash
# Offload ingest and promote throughput through gRPC beside Redis and memcpy
# (docs/PERFORMANCE.md "Ingest against Redis"): builds Release kvtierd and kvtier-bench,
# installs Debian's redis-server if missing, starts a private Redis (no persistence: no
# RDB saves, no AOF) and a private kvtierd (durability none: in memory, like that Redis;
# then wal), each on a Unix socket and TCP loopback, and runs `kvtier-bench ingest` for
# every combination: the same 8192 rows of the 7B-class geometry (448 MiB of K+V, 28 MiB
# per call) offloaded and promoted through kvtier, SET and GET through Redis (pipelined,
# 4 calls' worth in flight), and copied with memcpy; every byte read back is checked.
#   bench/ingest_vs_redis.sh [--rows=8192] [--reps=5]
# Prints a Markdown table of medians (GiB/s); every run goes to bench/results/ingest.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

rows=8192 reps=5
for arg in "$@"; do
  case "$arg" in
    --rows=*) rows=${arg#*=} ;;
    --reps=*) reps=${arg#*=} ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done

build=build/release
build_release kvtierd kvtier-bench
ensure_command redis-server redis-server

work=$(mktemp -d)
redis_pid=
trap 'stop_daemon; [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; rm -rf "$work"' EXIT
redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --unixsocket "$work/redis.sock" \
  --unixsocketperm 700 --save '' --appendonly no --daemonize no \
  --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 1 100); do [ -S "$work/redis.sock" ] && break; sleep 0.1; done
[ -S "$work/redis.sock" ] || { echo "redis-server did not start" >&2; exit 1; }

mkdir -p bench/results
csv=bench/results/ingest.csv
echo "config,impl,op,transport,rep,bytes,seconds,GiBps" >"$csv"
to_csv() {  # JSON lines on stdin -> CSV rows tagged with $1
  python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(",".join(str(x) for x in (sys.argv[1], r["impl"], r["op"], r["transport"], r["rep"],
                                     r["bytes"], r["seconds"], r["GiBps"])))' "$1"
}
"$build/tools/kvtier-bench" ingest --redis_socket="$work/redis.sock" --rows="$rows" \
  --reps="$reps" | to_csv "redis" >>"$csv"
"$build/tools/kvtier-bench" ingest --redis_port="$redis_port" --rows="$rows" --reps="$reps" |
  to_csv "redis" >>"$csv"
for durability in none wal; do
  start_daemon "kvtierd-$durability" --durability="$durability" \
    --host_capacity_bytes=$((4 << 30)) --listen=127.0.0.1:0
  tcp_port=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tcp_port"])' \
    "$work/kvtierd-$durability.ready.json")
  "$build/tools/kvtier-bench" ingest --server="unix://$work/kvtierd-$durability.sock" \
    --transport=unix --rows="$rows" --reps="$reps" | to_csv "kvtierd $durability" >>"$csv"
  "$build/tools/kvtier-bench" ingest --server="127.0.0.1:$tcp_port" --transport=tcp \
    --rows="$rows" --reps="$reps" | to_csv "kvtierd $durability" >>"$csv"
  stop_daemon
done

machine_line
echo "$rows rows x 57,344 bytes of K+V; medians of $reps runs, GiB/s"
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
groups = {}
for r in rows:
    key = (r["config"], r["impl"], r["op"], r["transport"])
    if r["impl"] == "memcpy":
        key = ("-", "memcpy", "copy", "memory")
    groups.setdefault(key, []).append(float(r["GiBps"]))
print("| server | operation | transport | GiB/s (median) |")
print("|---|---|---|---:|")
for (config, impl, op, transport), values in sorted(groups.items()):
    name = {"set": "ingest (SET)", "get": "read back (GET)", "offload": "ingest (Offload)",
            "promote": "read back (Promote)", "copy": "memcpy of the same bytes"}[op]
    print(f"| {config} | {name} | {transport} | {statistics.median(values):.3f} |")
PY
