#!/usr/bin/env bash
# What the tiers cost (docs/PERFORMANCE.md "Tiers"): builds Release, then for each
# durability mode (none, wal, sync) and each host capacity (4 GiB: every row stays in RAM;
# 512 MiB: about half of the rows go to RocksDB) starts a private kvtierd on a fresh data
# dir and runs `kvtierctl tier-bench` against it: a paused session P of 5120 rows and a
# busy session B of 11264 rows (7B-class geometry, 57 KiB of K+V per row) offloaded 512
# rows per call, then 10 promoted bursts of 96 rows from P before BeginPause(P) and 10
# after it, every byte checked. All configurations run back to back in one invocation.
#   bench/tier_throughput.sh [--rows=16384] [--runs=10] [any other kvtierctl flag]
# Prints a Markdown table; one CSV line per timed call goes to bench/results/tiers.csv.
# The data dirs live under $TMPDIR (put it on the disk you want to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

build=build/release
build_release kvtierd kvtierctl

work=$(mktemp -d)
trap 'stop_daemon; rm -rf "$work"' EXIT
mkdir -p bench/results
rm -f bench/results/tiers.csv

machine_line
echo "| durability | host MiB | offload MiB/s | offload call ms p50 / p95 | P's segments on disk |" \
  "promote 96 rows before pause, ms p50 / p95 | BeginPause | promote after pause, ms p50 / p95 |" \
  "bit-exact |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
for durability in none wal sync; do
  for host in $((4 << 30)) $((512 << 20)); do
    start_daemon "$durability-$host" --durability="$durability" --host_capacity_bytes="$host"
    "$build/tools/kvtierctl" tier-bench --server="unix://$work/$durability-$host.sock" \
      --rows=16384 --runs=10 --csv=bench/results/tiers.csv "$@"
    stop_daemon
    rm -rf "${work:?}/$durability-$host"
  done
done
