// kvtier-bench select: the fast selection mode against the exact one on the same store
// (docs/FAST_MODE.md), through the server's own RepairPipeline on a host-RAM RowStore.
#ifndef KVTIER_TOOLS_KVTIER_BENCH_RECALL_H_
#define KVTIER_TOOLS_KVTIER_BENCH_RECALL_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kvtier::bench {

struct SelectBenchOptions {
  int64_t rows = 32768;
  int32_t layers = 4;  // scoring layers of the 7B shape (spread over its 28)
  int32_t tokens = 64;
  std::vector<int64_t> budgets = {96, 5000};
  int32_t runs = 5;                // timed fast repairs per budget (after one warm-up)
  int32_t exact_runs = 1;          // timed exact repairs per budget (0: quality from one run only)
  std::string queries = "needle";  // "needle" (one needle per signal) or "mixed" (heads split)
  uint64_t seed = 1;
  int64_t first_round = 256;  // server::PipelineOptions of the fast mode
  int64_t oversample = 2;
  int32_t sample_rows = 256;
  // Regression guard (0: off): exit 1 when exact / fast (p50) falls below the first, or
  // first pass / bandwidth floor rises above the second, or a needle the exact mode finds
  // is missed.
  double min_exact_over_fast = 0;
  double max_first_pass_over_floor = 0;
};

// Prints one JSON line per budget; returns 0, or 1 when something failed.
int RunSelectBench(const SelectBenchOptions& options);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_KVTIER_BENCH_RECALL_H_
