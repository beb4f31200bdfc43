#include "storage/policy/lru_policy.h"

namespace kvtier::policy {

void LruPolicy::OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {
  last_[page.key] = ctx.step;
}

void LruPolicy::OnInsert(const PolicyContext& ctx, const PageView& page, int tier) {
  last_[page.key] = ctx.step;
}

double LruPolicy::Score(const PolicyContext& ctx, const PageView& page, int tier) const {
  const auto it = last_.find(page.key);
  return it == last_.end() ? -1.0 : static_cast<double>(it->second);
}

}  // namespace kvtier::policy
