#ifndef KVTIER_STORAGE_POLICY_HEAVY_HITTER_POLICY_H_
#define KVTIER_STORAGE_POLICY_HEAVY_HITTER_POLICY_H_

#include "absl/container/flat_hash_map.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::policy {

// Lifetime access frequency with recency as the tie-break (LFU with an LRU tie-break):
// score = freq * 10000 + last_access_step. Not thread-safe.
class HeavyHitterPolicy final : public ScoredPolicy {
 public:
  std::string_view Name() const override { return "heavy_hitter"; }
  void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) override;
  double Score(const PolicyContext& ctx, const PageView& page, int tier) const override;

 private:
  struct Stats {
    int64_t freq = 0;
    int64_t last = -1;
  };
  absl::flat_hash_map<PageKey, Stats> stats_;
};

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_HEAVY_HITTER_POLICY_H_
