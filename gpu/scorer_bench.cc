// Timing of the CPU scorer at the 7B shape: 28 scoring layers, 28 q heads, 4 kv heads,
// head dim 128, fp16 keys, T = 64 signal tokens, N = 32768 offloaded rows in blocks of 256.
// Reports GFLOP/s counting 2*L*Hq*T*D*N flops (one pass of q.k). BM_StreamRead measures
// the machine's memory-bandwidth floor for the same key bytes.
//
//   build-scorer/gpu/kvtier_scorer_bench [--benchmark_filter=...] [--benchmark_min_time=...]
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "gpu/internal/cpu_scorer_internal.h"
#include "gpu/scorer.h"

namespace kvtier::scorer {
namespace {

struct Problem {
  ScoreShape shape;
  int32_t capacity = 256;
  int64_t rows = 0;
  std::vector<std::vector<uint16_t>> keys;
  std::vector<std::vector<uint8_t>> valid;
  std::vector<KeyBlock> blocks;
  std::vector<float> queries;
  std::vector<double> scores;
};

Problem& SevenB(int tokens, int64_t rows) {
  static Problem* problem = nullptr;
  if (problem != nullptr && problem->shape.num_tokens == tokens && problem->rows == rows) {
    return *problem;
  }
  delete problem;
  problem = new Problem;
  Problem& p = *problem;
  p.shape = ScoreShape{28, 28, 4, 128, tokens, KeyType::kFloat16};
  p.rows = rows;
  std::mt19937_64 rng(1);
  const int64_t per_block = int64_t{28} * 4 * 128 * p.capacity;
  for (int64_t r = 0; r < rows; r += p.capacity) {
    std::vector<uint16_t> k(per_block);
    for (uint16_t& v : k) {
      v = static_cast<uint16_t>(((rng() & 1) << 15) | ((11 + rng() % 6) << 10) | (rng() & 0x3ff));
    }
    p.keys.push_back(std::move(k));
    p.valid.emplace_back(p.capacity, 1);
    p.blocks.push_back(KeyBlock{p.keys.back().data(),
                                static_cast<int32_t>(std::min<int64_t>(p.capacity, rows - r)),
                                p.valid.back().data()});
  }
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    p.blocks[b].keys = p.keys[b].data();
    p.blocks[b].valid = p.valid[b].data();
  }
  std::normal_distribution<float> normal(0.0f, 1.0f);
  p.queries.resize(static_cast<size_t>(28) * 28 * tokens * 128);
  for (float& q : p.queries) q = normal(rng);
  p.scores.resize(p.blocks.size() * p.capacity);
  return p;
}

void BM_Score7B(benchmark::State& state) {
  const int tokens = static_cast<int>(state.range(0));
  const int64_t rows = state.range(1);
  Problem& p = SevenB(tokens, rows);
  internal::CpuScorerOptions options;
  options.isa = static_cast<internal::Isa>(state.range(2));
  options.num_threads = static_cast<int>(state.range(3));
  if (!internal::IsaSupported(options.isa)) {
    state.SkipWithError("ISA not supported");
    return;
  }
  auto scorer = internal::MakeCpuScorerWithOptions(options);
  ScoreRequest request;
  request.shape = p.shape;
  request.block_capacity = p.capacity;
  request.blocks = p.blocks;
  request.queries = p.queries;
  for (auto _ : state) {
    absl::Status status = (*scorer)->Score(request, absl::MakeSpan(p.scores));
    if (!status.ok()) state.SkipWithError(status.ToString().c_str());
    benchmark::DoNotOptimize(p.scores.data());
  }
  const double flops = 2.0 * 28 * 28 * tokens * 128 * static_cast<double>(rows);
  state.counters["GFLOP/s_per_pass"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(internal::IsaName(options.isa));
}

// Args: tokens, rows, ISA, threads (0: one per hardware thread).
BENCHMARK(BM_Score7B)
    ->ArgNames({"T", "N", "isa", "threads"})
    ->Args({64, 32768, static_cast<int>(internal::Isa::kAvx512), 0})
    ->Args({64, 32768, static_cast<int>(internal::Isa::kAvx512), 1})
    ->Args({64, 32768, static_cast<int>(internal::Isa::kAvx2), 0})
    ->Args({8, 32768, static_cast<int>(internal::Isa::kAvx512), 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

// The memory-bandwidth floor: a streaming read of the key bytes the exact scorer reads at
// the 7B shape (28 layers x 4 KV heads x 128 x 2 bytes = 28,672 bytes per row), split
// over `threads` threads. Any scorer that reads every key once takes at least this long.
void BM_StreamRead(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const size_t words = static_cast<size_t>(rows) * 28 * 4 * 128 * 2 / sizeof(uint64_t);
  static std::vector<uint64_t>* buffer = new std::vector<uint64_t>();
  if (buffer->size() != words) buffer->assign(words, 1);  // touched: no page faults timed
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  for (auto _ : state) {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t begin = words * static_cast<size_t>(t) / static_cast<size_t>(threads);
        const size_t end = words * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
        const uint64_t* p = buffer->data();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        size_t i = begin;
        for (; i + 4 <= end; i += 4) {
          s0 += p[i];
          s1 += p[i + 1];
          s2 += p[i + 2];
          s3 += p[i + 3];
        }
        for (; i < end; ++i) s0 += p[i];
        sums[static_cast<size_t>(t)] = s0 + s1 + s2 + s3;
      });
    }
    for (std::thread& th : pool) th.join();
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(words * sizeof(uint64_t)));
}

// Args: rows, threads.
BENCHMARK(BM_StreamRead)
    ->ArgNames({"N", "threads"})
    ->Args({32768, 1})
    ->Args({32768, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

}  // namespace
}  // namespace kvtier::scorer

BENCHMARK_MAIN();
