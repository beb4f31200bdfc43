#!/usr/bin/env bash
# The repair envelope (docs/PERFORMANCE.md "Repair envelope"), in one invocation: builds
# Release, then for each N starts a private kvtierd (Unix socket, durability none, 16 GiB
# host tier) and runs `kvtier-bench envelope` through it: the 7B shape (28 layers, 28 query
# heads, 4 KV heads, head dim 128, fp16), T = 64, K = 96 and 5000, the exact mode then the
# fast mode on the same session, p50/p95/p99 per stage, recall@K of fast against exact,
# and the streaming-read floor of each mode's bytes measured in the same process. Then the
# scaling in K at N = 256K (fast mode), and the numpy implementation of the same exact math
# (PyPI numpy with its bundled OpenBLAS, in bench/.venv) at 32K and 256K. Finally
# bench/envelope_report.py writes the CSV, the Markdown table and the PNG plots.
#
#   bench/envelope.sh [--runs=30] [--quick]
#
# Points (rows, scoring layers, session kind, timed exact repairs per K):
#   32K   4 layers  full rows (K and V of all 28 layers)   30
#   256K  4 layers  index-only                             5
#   1M    4 layers  index-only                             3
#   4M    1 layer   index-only                             3
# Full rows take 57 KiB each, so only 32K rows (1.8 GiB) are stored whole; the larger
# points store the scoring layers' keys only (index-only sessions, docs/API.md), and 4M
# rows one scoring layer, so that each session stays near 6.5 GiB of this machine's 24.
# --quick runs 32K and 256K with 5 runs each (a smoke run of the whole pipeline).
# Then one point with kvtierd --fast_oversample=16 (recall against rescoring effort).
# Results: bench/results/envelope.{jsonl,csv,md}, envelope_k.jsonl,
# envelope_oversample.jsonl, numpy.jsonl and envelope_*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

runs=30
quick=0
for arg in "$@"; do
  case $arg in
    --runs=*) runs=${arg#*=} ;;
    --quick) quick=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

build=build/release
build_release kvtierd kvtier-bench

# numpy from PyPI (OpenBLAS bundled) and matplotlib, in a private virtual environment.
venv=bench/.venv
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv" 2>/dev/null || {
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=sudo; fi
    $sudo_cmd apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q python3-venv >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
  }
fi
"$venv/bin/pip" install -q numpy matplotlib threadpoolctl >&2

work=$(mktemp -d)
trap 'stop_daemon; rm -rf "$work"' EXIT

mkdir -p bench/results
out=bench/results/envelope.jsonl
rm -f "$out"
machine_line | tee bench/results/envelope_machine.txt

# point ROWS LAYERS KIND EXACT_RUNS [extra kvtier-bench flags]: one session, JSON lines
# appended to $out. kvtierd gets the flags in the array daemon_flags as well.
daemon_flags=()
point() {
  local rows=$1 layers=$2 kind=$3 exact_runs=$4
  shift 4
  local flags=()
  [ "$kind" = index-only ] && flags+=(--index_only)
  start_daemon "envelope-$rows" --durability=none --host_capacity_bytes=$((16 << 30)) \
    "${daemon_flags[@]}"
  echo "N=$rows layers=$layers $kind" >&2
  "$build/tools/kvtier-bench" envelope --server="unix://$work/envelope-$rows.sock" \
    --rows="$rows" --layers="$layers" --tokens=64 --runs="$runs" --exact_runs="$exact_runs" \
    "${flags[@]}" "$@" >>"$out"
  stop_daemon
}

if [ "$quick" = 1 ]; then
  runs=5
  point 32768 4 full 5 --budgets=96,5000
  point 262144 4 index-only 2 --budgets=96,5000
else
  point 32768 4 full 30 --budgets=96,5000
  point 262144 4 index-only 5 --budgets=96,5000
  point 1048576 4 index-only 3 --budgets=96,5000
  point 4194304 1 index-only 3 --budgets=96,5000
fi
# Scaling in K at 256K rows (fast mode only; 10 runs each), in a file of its own.
envelope_out=$out
out=bench/results/envelope_k.jsonl
rm -f "$out"
runs=10
point 262144 4 index-only 1 --budgets=16,96,500,2000,5000,20000 --modes=fast
# Recall against rescoring effort: the fast mode with kvtierd --fast_oversample=16 at 1M
# rows (256K with --quick), K = 5000, beside the default run above; the setting is added to
# each JSON line.
out=bench/results/envelope_oversample.jsonl
rm -f "$out"
runs=30
daemon_flags=(--fast_oversample=16)
oversample_rows=1048576
[ "$quick" = 1 ] && oversample_rows=262144 && runs=5
point "$oversample_rows" 4 index-only 1 --budgets=5000
sed -i 's/^{/{"fast_oversample": 16, /' "$out"
daemon_flags=()
out=$envelope_out

# numpy, the same exact math at the same shape (4 scoring layers, T = 64, K = 96). The
# environment's OpenBLAS tuning variables, if set, slow a current numpy: unset for it alone.
numpy_out=bench/results/numpy.jsonl
rm -f "$numpy_out"
numpy_sizes="32768 262144"
[ "$quick" = 1 ] && numpy_sizes="32768"
for rows in $numpy_sizes; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" bench/numpy_repair.py \
    --bench --rows="$rows" --layers=4 --tokens=64 --budget=96 \
    --runs="$([ "$rows" -gt 32768 ] && echo 3 || echo 5)" >>"$numpy_out"
done

"$venv/bin/python" bench/envelope_report.py --results=bench/results
