#ifndef KVTIER_STORAGE_POLICY_PREDICTIVE_POLICY_H_
#define KVTIER_STORAGE_POLICY_PREDICTIVE_POLICY_H_

#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::policy {

// First-order transition model. Evicts by score = freq * 100 + last_access_step and,
// after each access, prefetches up to `max_prefetches` successors of the accessed page
// seen at least `min_confidence` times, most frequent first (ties: first seen first).
// Not thread-safe.
class PredictivePolicy final : public ScoredPolicy {
 public:
  struct Options {
    int max_prefetches = 2;
    int min_confidence = 2;
  };
  explicit PredictivePolicy(Options options) : options_(options) {}

  std::string_view Name() const override { return "predictive"; }
  void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) override;
  double Score(const PolicyContext& ctx, const PageView& page, int tier) const override;
  std::vector<PageKey> MaybePrefetch(const PolicyContext& ctx, const PageView& page) override;

 private:
  struct Stats {
    int64_t freq = 0;
    int64_t last = -1;
  };
  const Options options_;
  absl::flat_hash_map<PageKey, Stats> stats_;
  // Successor counts per page, in the order each successor was first seen.
  absl::flat_hash_map<PageKey, std::vector<std::pair<PageKey, int64_t>>> successors_;
  std::optional<PageKey> previous_;
};

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_PREDICTIVE_POLICY_H_
