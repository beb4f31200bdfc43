#include "tools/replay/cost_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace kvtier::replay {

absl::StatusOr<double> DecodePenaltyMs(std::string_view scheme) {
  if (scheme == "fp16") return 0.0;
  if (scheme == "fp8") return 0.01;
  if (scheme == "int4") return 0.03;
  if (scheme == "int2") return 0.06;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown quantization scheme '", std::string(scheme), "'; expected fp16, fp8, int4 or int2"));
}

double TransferCostMs(const TierSpec& src, const TierSpec& dst, const ReplayPage& page) {
  const double bandwidth = std::min(src.bandwidth_bytes_per_ms, dst.bandwidth_bytes_per_ms);
  // Summed left to right, as the reference does, so results match to the last bit.
  return src.read_latency_ms + dst.write_latency_ms +
         static_cast<double>(page.size_bytes) / std::max(bandwidth, 1.0) + page.decode_penalty_ms;
}

std::vector<TierSpec> DefaultTiers(int64_t divisor) {
  std::vector<TierSpec> tiers = {
      {"tier0_gpu_fast", 128'000, 0.02, 0.02, 80'000.0},
      {"tier1_gpu_overflow", 256'000, 0.06, 0.06, 40'000.0},
      {"tier2_host_ram", 1'000'000, 0.40, 0.35, 8'000.0},
      {"tier3_nvme_like", 8'000'000, 2.50, 2.00, 2'000.0},
  };
  for (TierSpec& t : tiers) t.capacity_bytes /= divisor;
  return tiers;
}

std::vector<Scenario> BuiltinScenarios() {
  std::vector<Scenario> s = {
      {"small_fp16_prefetch", 2, "fp16", true, {}},
      {"small_fp16_no_prefetch", 2, "fp16", false, {}},
      {"small_int4_no_prefetch", 2, "int4", false, {}},
      {"base_fp8_prefetch", 1, "fp8", true, {}},
      {"constrained_fp16_prefetch", 4, "fp16", true, {}},
      // The regret ablation's capacity sets (prefetch off).
      {"ablation_medium_fp16_no_prefetch", 3, "fp16", false, {}},
      {"ablation_constrained_fp16_no_prefetch", 6, "fp16", false, {}},
  };
  for (Scenario& scenario : s) scenario.tiers = DefaultTiers(scenario.capacity_divisor);
  return s;
}

absl::StatusOr<Scenario> FindScenario(std::string_view name) {
  std::vector<std::string> names;
  for (Scenario& s : BuiltinScenarios()) {
    if (s.name == name) return std::move(s);
    names.push_back(s.name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown scenario '", std::string(name), "'; expected one of ", absl::StrJoin(names, ", ")));
}

absl::StatusOr<std::vector<TierSpec>> ParseTierList(std::string_view text) {
  std::vector<TierSpec> tiers;
  for (absl::string_view entry :
       absl::StrSplit(absl::string_view(text.data(), text.size()), ',', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> f = absl::StrSplit(entry, ':');
    TierSpec t;
    double capacity = 0;
    const bool ok = f.size() == 5 && !f[0].empty() && absl::SimpleAtod(f[1], &capacity) &&
                    absl::SimpleAtod(f[2], &t.read_latency_ms) &&
                    absl::SimpleAtod(f[3], &t.write_latency_ms) &&
                    absl::SimpleAtod(f[4], &t.bandwidth_bytes_per_ms) && capacity >= 0 &&
                    capacity == std::floor(capacity) && capacity < 9e15 && t.read_latency_ms >= 0 &&
                    t.write_latency_ms >= 0 && t.bandwidth_bytes_per_ms > 0 &&
                    std::isfinite(t.read_latency_ms) && std::isfinite(t.write_latency_ms) &&
                    std::isfinite(t.bandwidth_bytes_per_ms);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("tiers: bad entry '", entry,
                       "'; expected name:capacity_bytes:read_ms:write_ms:bandwidth_bytes_per_ms "
                       "with non-negative numbers"));
    }
    t.name = std::string(f[0]);
    t.capacity_bytes = static_cast<int64_t>(capacity);
    tiers.push_back(std::move(t));
  }
  if (tiers.empty()) return absl::InvalidArgumentError("tiers: no tier given");
  return tiers;
}

}  // namespace kvtier::replay
