#!/usr/bin/env bash
# The nvme tier's RocksDB throughput beside RocksDB's own db_bench (docs/PERFORMANCE.md
# "RocksDB tier against db_bench"): builds Release kvtier-bench, installs rocksdb-tools if
# missing, then runs --reps rounds, each one `kvtier-bench rocksdb` (KvDb with kvtierd's
# options: blob files, no compression, WAL on) and one db_bench fillseq,flush,readrandom
# with the same value size, record count and blob/WAL settings. Writes compare Put calls
# (db_bench's fillseq does not include its flush); reads verify RocksDB's checksums in both
# (kvtierd reads that way; db_bench's default). Prints a Markdown table of
# medians and writes every run to bench/results/rocksdb_vs_db_bench.csv.
#   bench/rocksdb_vs_db_bench.sh [--reps=5] [--values=64] [--value_bytes=14680064]
# The databases live under $TMPDIR (put it on the disk you want to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh

reps=5 values=64 value_bytes=14680064
for arg in "$@"; do
  case "$arg" in
    --reps=*) reps=${arg#*=} ;;
    --values=*) values=${arg#*=} ;;
    --value_bytes=*) value_bytes=${arg#*=} ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done

build=build/release
build_release kvtier-bench
ensure_command db_bench rocksdb-tools

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p bench/results
csv=bench/results/rocksdb_vs_db_bench.csv
echo "rep,impl,write_MiBps,read_MiBps" >"$csv"
for rep in $(seq 1 "$reps"); do
  json=$("$build/tools/kvtier-bench" rocksdb --dir="$work/kvtier" --values="$values" \
    --value_bytes="$value_bytes")
  python3 - "$json" "$rep" >>"$csv" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{sys.argv[2]},kvtier KvDb,{r['put_MiBps']},{r['read_MiBps']}")
PY
  rm -rf "$work/db_bench"
  out=$(db_bench --benchmarks=fillseq,flush,readrandom --db="$work/db_bench" --num="$values" \
    --reads="$values" --value_size="$value_bytes" --key_size=21 --compression_type=none \
    --enable_blob_files=true --min_blob_size=4096 --blob_file_size=268435456 \
    --write_buffer_size=67108864 --max_write_buffer_number=3 --disable_wal=false --sync=false \
    --threads=1 2>&1)
  # "fillseq : ... 64 operations;  644.6 MB/s" (db_bench's MB is 2^20 bytes)
  write=$(awk '/^fillseq/ {for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") print $i}' <<<"$out")
  read=$(awk '/^readrandom/ {for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s") print $i}' <<<"$out")
  found=$(grep -o '([0-9]* of [0-9]* found)' <<<"$out" || true)
  [ -n "$write" ] && [ -n "$read" ] || { echo "cannot parse db_bench output:" >&2; echo "$out" >&2; exit 1; }
  [ "$found" = "($values of $values found)" ] || { echo "db_bench read misses: $found" >&2; exit 1; }
  echo "$rep,db_bench,$write,$read" >>"$csv"
done

machine_line
echo "value size $value_bytes bytes, $values records, WAL on, no compression, blob files;" \
  "medians of $reps runs (MiB/s)"
python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| implementation | write (Puts: WAL + memtable) | read (shuffled Gets, checksums verified) |")
print("|---|---:|---:|")
med = {}
for impl in ("kvtier KvDb", "db_bench"):
    w = statistics.median(float(r["write_MiBps"]) for r in rows if r["impl"] == impl)
    rd = statistics.median(float(r["read_MiBps"]) for r in rows if r["impl"] == impl)
    med[impl] = (w, rd)
    print(f"| {impl} | {w:.1f} | {rd:.1f} |")
k, d = med["kvtier KvDb"], med["db_bench"]
print(f"| ratio kvtier / db_bench | {k[0] / d[0]:.2f} | {k[1] / d[1]:.2f} |")
PY
