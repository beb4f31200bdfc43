#!/usr/bin/env bash
# First repair latency measurement (docs/PERFORMANCE.md): builds Release, starts a private
# kvtierd (temp dir, Unix socket, no TCP), and runs `kvtierctl bench`: N=32768 rows of the
# 7B-class geometry (28 layers, 28 q heads, 4 KV heads, head dim 128, fp16), T=64 signal
# tokens, K=96 and K=5000, payload and positions modes, --runs repairs each.
#   bench/repair_latency.sh [--runs=20] [--rows=32768] [any other kvtierctl bench flag]
# Writes the Markdown table to stdout and one CSV line per repair to
# bench/results/repair_latency.csv.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
build=build/release
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVTIER_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target kvtierd kvtierctl

work=$(mktemp -d)
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
"$build/server/kvtierd" --unix_socket="$work/kvtierd.sock" --listen= --metrics_listen= \
  --data_dir="$work/data" --ready_file="$work/ready.json" >"$work/kvtierd.log" 2>&1 &
daemon=$!
for _ in $(seq 1 300); do
  [ -f "$work/ready.json" ] && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/kvtierd.log" >&2; exit 1; }
  sleep 0.1
done
[ -f "$work/ready.json" ] || { echo "kvtierd not ready after 30 s" >&2; exit 1; }

mkdir -p bench/results
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$build/tools/kvtierctl" bench --server="unix://$work/kvtierd.sock" --runs=20 \
  --csv=bench/results/repair_latency.csv "$@"
