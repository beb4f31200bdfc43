#ifndef KVTIER_STORAGE_POLICY_WINDOWED_RECENCY_POLICY_H_
#define KVTIER_STORAGE_POLICY_WINDOWED_RECENCY_POLICY_H_

#include <deque>

#include "absl/container/flat_hash_map.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::policy {

// Frequency within a sliding window of the last `window_size` accesses, recency as the
// tie-break: score = count_in_window * 1e6 + last_access_step. Not thread-safe.
class WindowedRecencyPolicy final : public ScoredPolicy {
 public:
  // Precondition: window_size >= 1.
  explicit WindowedRecencyPolicy(int window_size = 32) : window_size_(window_size) {}

  std::string_view Name() const override { return "windowed_recency"; }
  void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) override;
  double Score(const PolicyContext& ctx, const PageView& page, int tier) const override;

 private:
  const int window_size_;
  std::deque<PageKey> window_;
  absl::flat_hash_map<PageKey, int64_t> count_in_window_;
  absl::flat_hash_map<PageKey, int64_t> last_;
};

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_WINDOWED_RECENCY_POLICY_H_
