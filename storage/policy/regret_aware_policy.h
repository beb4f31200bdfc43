#ifndef KVTIER_STORAGE_POLICY_REGRET_AWARE_POLICY_H_
#define KVTIER_STORAGE_POLICY_REGRET_AWARE_POLICY_H_

#include "absl/container/flat_hash_map.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::policy {

// Frequency and recency plus a learned "regret" for pages that come back soon after being
// evicted: a re-access `gap` steps after the page's most recent eviction (from any tier)
// adds (horizon − gap + 1) / horizon when gap <= horizon; regret decays by `decay` on every
// access of the page. score = freq_weight*freq + recency_weight*(last/max(step,1)) +
// regret_weight*regret. Not thread-safe.
class RegretAwarePolicy final : public ScoredPolicy {
 public:
  struct Options {
    int regret_horizon = 24;
    double regret_weight = 6.0;
    double freq_weight = 1.5;
    double recency_weight = 1.0;
    double decay = 0.98;
  };
  explicit RegretAwarePolicy(Options options) : options_(options) {}

  std::string_view Name() const override { return "regret_aware"; }
  void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) override;
  void OnEvict(const PolicyContext& ctx, const PageView& page, int tier) override;
  double Score(const PolicyContext& ctx, const PageView& page, int tier) const override;

 private:
  struct Stats {
    int64_t freq = 0;
    int64_t last = -1;
    bool has_regret = false;
    double regret = 0.0;
    bool has_eviction = false;
    int64_t eviction_step = 0;
  };
  const Options options_;
  absl::flat_hash_map<PageKey, Stats> stats_;
};

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_REGRET_AWARE_POLICY_H_
