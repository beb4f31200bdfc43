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
source bench/common.sh

build=build/release
build_release kvtierd kvtierctl

work=$(mktemp -d)
trap 'stop_daemon; rm -rf "$work"' EXIT
start_daemon repair

mkdir -p bench/results
machine_line
"$build/tools/kvtierctl" bench --server="unix://$work/repair.sock" --runs=20 \
  --csv=bench/results/repair_latency.csv "$@"
