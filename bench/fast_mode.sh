#!/usr/bin/env bash
# The fast selection mode against the exact one (docs/PERFORMANCE.md "Fast mode",
# docs/FAST_MODE.md): builds Release, then runs `kvtier-bench select` for each store size
# and query kind, all back to back in one invocation. Each run builds one host-RAM store of
# synthetic 7B-shaped rows (28 query heads, 4 KV heads, head dim 128, fp16; the scoring
# layers only, spread over the 28), scores it through the server's RepairPipeline in both
# modes at K = 96 and 5000 with T = 64, and measures the bandwidth floor of the sketch
# bytes in the same process.
#   bench/fast_mode.sh [--runs=30] [--sizes=32768,262144] [--layers=4]
# Prints a Markdown table; the JSON lines go to bench/results/fast_mode.jsonl and a CSV
# to bench/results/fast_mode.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

runs=30
sizes=32768,262144
layers=4
for arg in "$@"; do
  case $arg in
    --runs=*) runs=${arg#*=} ;;
    --sizes=*) sizes=${arg#*=} ;;
    --layers=*) layers=${arg#*=} ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

build=build/release
build_release kvtier-bench

mkdir -p bench/results
out=bench/results/fast_mode.jsonl
rm -f "$out"
machine_line
for rows in ${sizes//,/ }; do
  for queries in needle mixed; do
    # The exact mode costs seconds per call at these sizes: 3 timed calls beside 30 fast.
    "$build/tools/kvtier-bench" select --rows="$rows" --layers="$layers" --queries="$queries" \
      --budgets=96,5000 --runs="$runs" --exact_runs=3 >>"$out"
  done
done
python3 - "$out" <<'PY'
import csv, json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
keys = list(rows[0].keys())
with open(sys.argv[1].replace(".jsonl", ".csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
print("| N | layers | queries | K | fast p50 / p95 / p99 ms | first pass ms | floor ms | "
      "first pass / floor | rescore ms | rescored rows | exact p50 ms | exact / fast | "
      "recall@K | score mass | needles fast / exact |")
print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['rows']} | {r['layers']} | {r['queries']} | {r['K']} | "
          f"{r['fast_p50_ms']:.1f} / {r['fast_p95_ms']:.1f} / {r['fast_p99_ms']:.1f} | "
          f"{r['first_pass_p50_ms']:.2f} | {r['floor_ms']:.2f} | {r['first_pass_over_floor']:.2f} | "
          f"{r['rescore_p50_ms']:.1f} | {r['rescored']} | {r['exact_p50_ms']:.0f} | "
          f"{r['exact_over_fast']:.0f}x | {r['recall_at_k']:.3f} | {r['score_mass_recall']:.4f} | "
          f"{r['needle_recall_fast']:.2f} / {r['needle_recall_exact']:.2f} |")
PY
