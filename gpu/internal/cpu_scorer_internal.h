// Test and benchmark hooks for the CPU scorer: force an instruction set or a cache budget.
// Production code calls MakeCpuScorer (gpu/scorer.h) instead.
#ifndef KVTIER_GPU_INTERNAL_CPU_SCORER_INTERNAL_H_
#define KVTIER_GPU_INTERNAL_CPU_SCORER_INTERNAL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "gpu/internal/cpu_kernels.h"
#include "gpu/scorer.h"

namespace kvtier::scorer::internal {

struct CpuScorerOptions {
  int num_threads = 0;  // 0: one per hardware thread
  Isa isa = BestIsa();
  // Per-thread bytes for keeping pass-1 scores so that pass 2 does not recompute them;
  // work items whose scores do not fit are recomputed in pass 2.
  int64_t cache_budget_bytes = int64_t{64} << 20;
};

// FAILED_PRECONDITION when options.isa is not supported by this CPU.
absl::StatusOr<std::unique_ptr<Scorer>> MakeCpuScorerWithOptions(const CpuScorerOptions& options);

}  // namespace kvtier::scorer::internal

#endif  // KVTIER_GPU_INTERNAL_CPU_SCORER_INTERNAL_H_
