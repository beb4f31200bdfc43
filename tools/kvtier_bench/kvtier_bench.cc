// kvtier-bench: kvtier's benchmark modes, in one binary (docs/PERFORMANCE.md).
//
//   kvtier-bench rocksdb --dir=DIR [--value_bytes=N] [--values=M] [--durability=wal]
//   kvtier-bench ingest [--server=ADDR --transport=unix|tcp] [--redis_socket=PATH |
//                       --redis_port=N] [--rows=8192] [--reps=3]
//
// ingest: gRPC offload/promote throughput beside Redis and memcpy (ingest.cc).
//
//   kvtier-bench crc [--value_bytes=N]
//
//   kvtier-bench select [--rows=32768] [--layers=4] [--tokens=64] [--budgets=96,5000]
//                       [--runs=5] [--exact_runs=1] [--queries=needle|mixed]
//
// select: the fast selection mode against the exact one on one store (recall.cc).
//
//   kvtier-bench envelope --server=ADDR [--rows=32768] [--layers=4] [--index_only]
//                         [--tokens=64] [--budgets=96,5000] [--modes=exact,fast]
//                         [--runs=30] [--exact_runs=30]
//
// envelope: repair latency per stage through a running kvtierd, exact and fast side by
// side, with each mode's streaming-read floor (envelope.cc).
//
// crc: CRC32C of an N-byte record (a segment) with kvtier's checksum (SSE4.2 when the CPU
// has it) and with RocksDB's implementation, side by side; one JSON line.
//
// rocksdb: the nvme tier's own throughput through storage::KvDb, with the options kvtierd
// uses (blob files, no compression, the durability given): M records of N bytes (the size
// of a segment record) written one per batch, as demotions write them, then flushed to
// files, then read back in a shuffled order and checked byte for byte. Prints one JSON
// line; bench/rocksdb_vs_db_bench.sh runs it beside RocksDB's own db_bench.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "storage/crc32c.h"
#include "storage/kv_db.h"
#include "tools/kvtier_bench/bench_util.h"
#include "tools/kvtier_bench/envelope.h"
#include "tools/kvtier_bench/ingest.h"
#include "tools/kvtier_bench/recall.h"

ABSL_FLAG(std::string, dir, "",
          "rocksdb: database directory, missing, empty or a RocksDB one (deleted and created)");
ABSL_FLAG(int64_t, value_bytes, int64_t{14} << 20, "rocksdb, crc: bytes per record");
ABSL_FLAG(int64_t, values, 64, "rocksdb: records written and read");
ABSL_FLAG(std::string, durability, "wal", "rocksdb: none, wal or sync");
ABSL_FLAG(std::string, server, "",
          "ingest, envelope: kvtierd address (unix:///path.sock or host:port)");
ABSL_FLAG(std::string, transport, "unix", "ingest: label of --server's transport");
ABSL_FLAG(std::string, redis_socket, "", "ingest: Redis Unix socket");
ABSL_FLAG(int32_t, redis_port, 0, "ingest: Redis TCP port on 127.0.0.1 (without a socket)");
ABSL_FLAG(int64_t, rows, 8192,
          "ingest, select, envelope: rows of the 7B-class geometry (57,344 bytes each)");
ABSL_FLAG(int32_t, reps, 3, "ingest: repetitions of every measurement");
ABSL_FLAG(int32_t, layers, 4, "select, envelope: scoring layers of the 7B shape");
ABSL_FLAG(int32_t, tokens, 64, "select, envelope: signal tokens T");
ABSL_FLAG(std::vector<std::string>, budgets, std::vector<std::string>({"96", "5000"}),
          "select, envelope: comma-separated K values");
ABSL_FLAG(int32_t, runs, 5, "select, envelope: timed fast repairs per K");
ABSL_FLAG(int32_t, exact_runs, 1, "select, envelope: timed exact repairs per K");
ABSL_FLAG(bool, index_only, false,
          "envelope: an index-only session (scoring layers' keys only) instead of full rows");
ABSL_FLAG(std::vector<std::string>, modes, std::vector<std::string>({"exact", "fast"}),
          "envelope: scoring modes, in order (exact first gives fast's recall@K)");
ABSL_FLAG(std::string, queries, "needle", "select: needle or mixed");
ABSL_FLAG(int64_t, first_round, 256, "select: fast mode's fewest rows rescored first");
ABSL_FLAG(int64_t, oversample, 2, "select: fast mode's rescored rows per anchor K needs");
ABSL_FLAG(int32_t, sample_rows, 256, "select: fast mode's normalizer sample");
ABSL_FLAG(double, min_exact_over_fast, 0, "select: fail below this exact/fast ratio (0: off)");
ABSL_FLAG(double, max_first_pass_over_floor, 0,
          "select: fail above this first-pass/bandwidth-floor ratio (0: off)");

namespace kvtier::bench {
namespace {

std::string Key(int64_t i) { return absl::StrFormat("bench/%016x", i); }

// Makes *record record i: random bytes stamped with i in their first 8 bytes, so that
// every record differs. `record` must already hold the random bytes; only the stamp is
// written, so the timed write loop copies nothing but what RocksDB copies.
void StampRecord(int64_t i, std::string* record) { std::memcpy(record->data(), &i, sizeof(i)); }

int RunRocksDb() {
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const int64_t value_bytes = absl::GetFlag(FLAGS_value_bytes);
  const int64_t values = absl::GetFlag(FLAGS_values);
  absl::StatusOr<storage::Durability> durability =
      storage::ParseDurability(absl::GetFlag(FLAGS_durability), "--durability");
  if (dir.empty() || value_bytes < 8 || values < 1 || !durability.ok()) {
    std::fprintf(stderr,
                 "kvtier-bench rocksdb: need --dir, --value_bytes >= 8, --values >= 1 and "
                 "--durability none|wal|sync\n");
    return 2;
  }
  // The directory is deleted first and at the end: refuse anything but a missing or empty
  // directory or a RocksDB one (a previous run), so that a wrong --dir deletes nothing else.
  std::error_code ec;
  if (std::filesystem::exists(dir) && !std::filesystem::is_empty(dir) &&
      !std::filesystem::exists(std::filesystem::path(dir) / "CURRENT")) {
    std::fprintf(stderr, "kvtier-bench rocksdb: --dir %s is not empty and not a RocksDB dir\n",
                 dir.c_str());
    return 2;
  }
  std::filesystem::remove_all(dir, ec);
  storage::KvDbOptions options;
  options.path = dir;
  options.durability = *durability;
  absl::StatusOr<std::unique_ptr<storage::KvDb>> db = storage::KvDb::Open(options);
  if (!db.ok()) {
    std::fprintf(stderr, "kvtier-bench rocksdb: %s\n", db.status().ToString().c_str());
    return 1;
  }

  std::mt19937_64 rng(1);
  std::string random(static_cast<size_t>(value_bytes), '\0');
  for (char& c : random) c = static_cast<char>(rng());
  std::string value = random;

  // Writes: one record per batch, as a demotion writes a segment base.
  const auto write_start = Clock::now();
  for (int64_t i = 0; i < values; ++i) {
    StampRecord(i, &value);
    storage::KvBatch batch;
    batch.Put(Key(i), value);
    if (absl::Status s = (*db)->Write(batch); !s.ok()) {
      std::fprintf(stderr, "kvtier-bench rocksdb: write: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  const double put_seconds = SecondsSince(write_start);
  if (absl::Status s = (*db)->Flush(); !s.ok()) {
    std::fprintf(stderr, "kvtier-bench rocksdb: flush: %s\n", s.ToString().c_str());
    return 1;
  }
  const double write_seconds = SecondsSince(write_start);

  // Reads in a shuffled order, each checked.
  std::vector<int64_t> order(static_cast<size_t>(values));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::string expected = random, got;
  double read_seconds = 0;
  for (const int64_t i : order) {
    const auto start = Clock::now();
    if (absl::Status s = (*db)->Get(Key(i), &got); !s.ok()) {
      std::fprintf(stderr, "kvtier-bench rocksdb: read: %s\n", s.ToString().c_str());
      return 1;
    }
    read_seconds += SecondsSince(start);
    StampRecord(i, &expected);
    if (got != expected) {
      std::fprintf(stderr, "kvtier-bench rocksdb: record %lld read back different\n",
                   static_cast<long long>(i));
      return 1;
    }
  }

  // MiB, as db_bench counts its "MB".
  const double mb = static_cast<double>(value_bytes) * static_cast<double>(values) / 1048576.0;
  std::printf(
      "{\"mode\": \"rocksdb\", \"durability\": \"%s\", \"value_bytes\": %lld, \"values\": %lld, "
      "\"put_MiBps\": %.1f, \"put_and_flush_MiBps\": %.1f, \"read_MiBps\": %.1f, "
      "\"verified\": true}\n",
      std::string(storage::DurabilityName(*durability)).c_str(),
      static_cast<long long>(value_bytes), static_cast<long long>(values), mb / put_seconds,
      mb / write_seconds, mb / read_seconds);
  db->reset();
  std::filesystem::remove_all(dir, ec);
  return 0;
}

int RunCrc() {
  const int64_t value_bytes = absl::GetFlag(FLAGS_value_bytes);
  if (value_bytes < 1) {
    std::fprintf(stderr, "kvtier-bench crc: need --value_bytes >= 1\n");
    return 2;
  }
  std::vector<std::byte> data(static_cast<size_t>(value_bytes));
  std::mt19937_64 rng(1);
  for (std::byte& b : data) b = static_cast<std::byte>(rng());
  // Median of 9 timings of each, interleaved.
  auto time = [&](auto&& crc) {
    const auto start = Clock::now();
    const uint32_t value = crc(absl::MakeConstSpan(data));
    return std::make_pair(SecondsSince(start), value);
  };
  std::vector<double> ours, rocks;
  for (int i = 0; i < 9; ++i) {
    const auto [a, va] = time(storage::ComputeCrc32c);
    const auto [b, vb] = time(storage::internal::RocksDbCrc32c);
    if (va != vb) {
      std::fprintf(stderr, "kvtier-bench crc: the two implementations disagree\n");
      return 1;
    }
    ours.push_back(a);
    rocks.push_back(b);
  }
  std::sort(ours.begin(), ours.end());
  std::sort(rocks.begin(), rocks.end());
  const double gib = static_cast<double>(value_bytes) / (1024.0 * 1024.0 * 1024.0);
  std::printf(
      "{\"mode\": \"crc\", \"value_bytes\": %lld, \"hardware\": %s, \"kvtier_GiBps\": %.2f, "
      "\"rocksdb_GiBps\": %.2f}\n",
      static_cast<long long>(value_bytes), storage::internal::HardwareCrc32c() ? "true" : "false",
      gib / ours[4], gib / rocks[4]);
  return 0;
}

}  // namespace

// --budgets as positive integers; false (with a message) when one is not.
bool ParseBudgets(std::vector<int64_t>* budgets) {
  budgets->clear();
  for (const std::string& k : absl::GetFlag(FLAGS_budgets)) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(k, &v) || v < 1) {
      std::fprintf(stderr, "--budgets: '%s' is not a positive integer\n", k.c_str());
      return false;
    }
    budgets->push_back(v);
  }
  return true;
}

}  // namespace kvtier::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "kvtier-bench MODE [flags]\n"
      "modes:\n"
      "  rocksdb   nvme tier write/flush/read throughput through KvDb (--dir, --value_bytes,\n"
      "            --values, --durability); one JSON line\n"
      "  crc       CRC32C of a --value_bytes record: kvtier's against RocksDB's\n"
      "  select    fast vs exact selection on one in-process store (--rows, --layers, ...)\n"
      "  envelope  repair latency per stage through a running kvtierd, exact and fast\n"
      "            (--server, --rows, --layers, --index_only, --budgets, --runs, ...)\n"
      "  ingest    gRPC offload/promote beside Redis SET/GET and memcpy (--server,\n"
      "            --transport, --redis_socket, --redis_port, --rows, --reps)\n"
      "Every flag: kvtier-bench --helpfull");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() != 2) {
    std::fprintf(stderr, "usage: kvtier-bench MODE [flags] (kvtier-bench --help)\n");
    return 2;
  }
  const std::string mode = positional[1];
  if (mode == "rocksdb") return kvtier::bench::RunRocksDb();
  if (mode == "crc") return kvtier::bench::RunCrc();
  if (mode == "select") {
    kvtier::bench::SelectBenchOptions options;
    options.rows = absl::GetFlag(FLAGS_rows);
    options.layers = absl::GetFlag(FLAGS_layers);
    options.tokens = absl::GetFlag(FLAGS_tokens);
    if (!kvtier::bench::ParseBudgets(&options.budgets)) return 2;
    options.runs = absl::GetFlag(FLAGS_runs);
    options.exact_runs = absl::GetFlag(FLAGS_exact_runs);
    options.queries = absl::GetFlag(FLAGS_queries);
    options.first_round = absl::GetFlag(FLAGS_first_round);
    options.oversample = absl::GetFlag(FLAGS_oversample);
    options.sample_rows = absl::GetFlag(FLAGS_sample_rows);
    options.min_exact_over_fast = absl::GetFlag(FLAGS_min_exact_over_fast);
    options.max_first_pass_over_floor = absl::GetFlag(FLAGS_max_first_pass_over_floor);
    if (options.first_round < 1 || options.oversample < 1 || options.sample_rows < 1) {
      std::fprintf(stderr, "--first_round, --oversample and --sample_rows must be >= 1\n");
      return 2;
    }
    if (options.queries != "needle" && options.queries != "mixed") {
      std::fprintf(stderr, "--queries: must be needle or mixed\n");
      return 2;
    }
    return kvtier::bench::RunSelectBench(options);
  }
  if (mode == "envelope") {
    kvtier::bench::EnvelopeOptions options;
    options.server = absl::GetFlag(FLAGS_server);
    options.rows = absl::GetFlag(FLAGS_rows);
    options.layers = absl::GetFlag(FLAGS_layers);
    options.index_only = absl::GetFlag(FLAGS_index_only);
    options.tokens = absl::GetFlag(FLAGS_tokens);
    options.modes = absl::GetFlag(FLAGS_modes);
    options.runs = absl::GetFlag(FLAGS_runs);
    options.exact_runs = absl::GetFlag(FLAGS_exact_runs);
    if (!kvtier::bench::ParseBudgets(&options.budgets)) return 2;
    for (const std::string& m : options.modes) {
      if (m != "exact" && m != "fast") {
        std::fprintf(stderr, "--modes: '%s' is not exact or fast\n", m.c_str());
        return 2;
      }
    }
    if (options.server.empty() || options.rows < 1 || options.layers < 1 || options.layers > 28 ||
        options.tokens < 1 || options.runs < 1 || options.exact_runs < 1) {
      std::fprintf(stderr,
                   "kvtier-bench envelope: need --server, --rows >= 1, --layers in [1, 28], "
                   "--tokens, --runs and --exact_runs >= 1\n");
      return 2;
    }
    return kvtier::bench::RunEnvelope(options);
  }
  if (mode == "ingest") {
    return kvtier::bench::RunIngest(kvtier::bench::IngestOptions{
        absl::GetFlag(FLAGS_server), absl::GetFlag(FLAGS_transport),
        absl::GetFlag(FLAGS_redis_socket), absl::GetFlag(FLAGS_redis_port),
        absl::GetFlag(FLAGS_rows), absl::GetFlag(FLAGS_reps)});
  }
  std::fprintf(stderr, "kvtier-bench: unknown mode \"%s\"\n", mode.c_str());
  return 2;
}
