#!/usr/bin/env bash
# Every benchmark of docs/PERFORMANCE.md, from scratch, in one invocation: builds Release
# and runs, back to back, the repair envelope (bench/envelope.sh: latency against N and K
# through kvtierd, exact and fast, the bandwidth floors, numpy side by side, the published
# GPU row, CSV + Markdown + PNG plots), the fast mode's quality and floor ratios
# (bench/fast_mode.sh), ingest against Redis (bench/ingest_vs_redis.sh), the RocksDB tier
# against db_bench (bench/rocksdb_vs_db_bench.sh) and the tiers (bench/tier_throughput.sh).
# Each script installs what it needs (Debian packages, a PyPI virtual environment in
# bench/.venv) and writes its tables to stdout and its data to bench/results/.
#   bench/all.sh            # the full runs of docs/PERFORMANCE.md
#   bench/all.sh --quick    # the envelope's smoke run and small sizes
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

mkdir -p bench/results
if [ "$quick" = 1 ]; then
  bench/envelope.sh --quick
  bench/fast_mode.sh --runs=5 --sizes=32768
  bench/ingest_vs_redis.sh --rows=1024 --reps=1
  bench/rocksdb_vs_db_bench.sh --reps=1 --values=8
  bench/tier_throughput.sh --runs=3
else
  bench/envelope.sh
  bench/fast_mode.sh
  bench/ingest_vs_redis.sh
  bench/rocksdb_vs_db_bench.sh
  bench/tier_throughput.sh
fi
