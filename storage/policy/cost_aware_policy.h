#ifndef KVTIER_STORAGE_POLICY_COST_AWARE_POLICY_H_
#define KVTIER_STORAGE_POLICY_COST_AWARE_POLICY_H_

#include "absl/container/flat_hash_map.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::policy {

// Frequency and normalised recency minus a size penalty, so large pages leave first:
// score = freq_weight*freq + recency_weight*(last/max(step,1)) − size_penalty*(bytes/1024).
// Not thread-safe.
class CostAwarePolicy final : public ScoredPolicy {
 public:
  struct Options {
    double freq_weight = 2.0;
    double recency_weight = 1.0;
    double size_penalty = 0.4;
  };
  explicit CostAwarePolicy(Options options) : options_(options) {}

  std::string_view Name() const override { return "cost_aware"; }
  void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) override;
  double Score(const PolicyContext& ctx, const PageView& page, int tier) const override;

 private:
  struct Stats {
    int64_t freq = 0;
    int64_t last = -1;
  };
  const Options options_;
  absl::flat_hash_map<PageKey, Stats> stats_;
};

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_COST_AWARE_POLICY_H_
