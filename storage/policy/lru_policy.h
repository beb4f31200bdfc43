#ifndef KVTIER_STORAGE_POLICY_LRU_POLICY_H_
#define KVTIER_STORAGE_POLICY_LRU_POLICY_H_

#include "absl/container/flat_hash_map.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::policy {

// Least recently used. Score = the step of the page's last access or insertion (−1 when
// never seen); insertion counts as a use, so a prefetched or cold-inserted page looks
// just used. Not thread-safe.
class LruPolicy final : public ScoredPolicy {
 public:
  std::string_view Name() const override { return "lru"; }
  void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) override;
  void OnInsert(const PolicyContext& ctx, const PageView& page, int tier) override;
  double Score(const PolicyContext& ctx, const PageView& page, int tier) const override;

 private:
  absl::flat_hash_map<PageKey, int64_t> last_;
};

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_LRU_POLICY_H_
