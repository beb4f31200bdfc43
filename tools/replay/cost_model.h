// The four-tier cost model of kvtier-replay: tier specifications, the quantization
// schemes' decode penalties, the transfer cost and the built-in scenarios, as specified
// in ../shared/reference/tier_policies/README.md §1.2, §1.3.1 and §1.5.
#ifndef KVTIER_TOOLS_REPLAY_COST_MODEL_H_
#define KVTIER_TOOLS_REPLAY_COST_MODEL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::replay {

// One tier of the hierarchy. Tiers are listed fastest first; the last one is the backing
// store where never-seen pages materialise at no cost.
struct TierSpec {
  std::string name;
  int64_t capacity_bytes = 0;
  double read_latency_ms = 0.0;
  double write_latency_ms = 0.0;
  double bandwidth_bytes_per_ms = 0.0;
};

// A page as the engine sees it: its footprint is already quantized.
struct ReplayPage {
  std::string id;
  int64_t size_bytes = 0;
  double decode_penalty_ms = 0.0;
};

// Decode penalty (ms) of a quantization scheme: fp16 0, fp8 0.01, int4 0.03, int2 0.06.
// INVALID_ARGUMENT for any other name.
absl::StatusOr<double> DecodePenaltyMs(std::string_view scheme);

// Cost in ms of moving `page` from `src` to `dst`:
// src.read + dst.write + size / max(min(src.bw, dst.bw), 1) + decode penalty.
double TransferCostMs(const TierSpec& src, const TierSpec& dst, const ReplayPage& page);

// The default hierarchy (tier0_gpu_fast, tier1_gpu_overflow, tier2_host_ram,
// tier3_nvme_like) with every capacity divided (integer division) by `divisor` >= 1.
std::vector<TierSpec> DefaultTiers(int64_t divisor);

// A named replay setting: tier capacities, the quantization its traces use and whether
// prefetching is on.
struct Scenario {
  std::string name;
  int64_t capacity_divisor = 1;
  std::string quantization_scheme;
  bool prefetch_enabled = false;
  std::vector<TierSpec> tiers;
};

// The built-in scenarios, reference ones first.
std::vector<Scenario> BuiltinScenarios();

// The named built-in scenario; INVALID_ARGUMENT listing the known names otherwise.
absl::StatusOr<Scenario> FindScenario(std::string_view name);

// Parses custom tiers "name:capacity:read_ms:write_ms:bandwidth[,name:...]" (fastest
// first). INVALID_ARGUMENT naming the bad entry on malformed input.
absl::StatusOr<std::vector<TierSpec>> ParseTierList(std::string_view text);

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_COST_MODEL_H_
