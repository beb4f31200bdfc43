// kvtier-bench envelope: repair latency through a running kvtierd (gRPC, the real server),
// at the 7B shape, in the exact and the fast mode side by side on one session, with the
// streaming-read floor of the bytes each mode must read measured in the same process
// (docs/PERFORMANCE.md, "Repair envelope").
#ifndef KVTIER_TOOLS_KVTIER_BENCH_ENVELOPE_H_
#define KVTIER_TOOLS_KVTIER_BENCH_ENVELOPE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kvtier::bench {

struct EnvelopeOptions {
  std::string server;  // kvtierd address
  int64_t rows = 32768;
  int32_t layers = 4;       // scoring layers of the 7B shape's 28 (bench_util.h SourceLayers)
  bool index_only = false;  // index-only session (scoring keys only) instead of full rows
  int32_t tokens = 64;
  std::vector<int64_t> budgets = {96, 5000};
  std::vector<std::string> modes = {"exact", "fast"};  // run in this order for each K
  int32_t runs = 30;        // timed repairs per (K, fast), after one warm-up
  int32_t exact_runs = 30;  // timed repairs per (K, exact), after one warm-up
  uint64_t seed = 1;
};

// Prints one JSON line per (K, mode); returns 0, or 1 when a call failed.
int RunEnvelope(const EnvelopeOptions& options);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_KVTIER_BENCH_ENVELOPE_H_
