#include "storage/policy/heavy_hitter_policy.h"

namespace kvtier::policy {

void HeavyHitterPolicy::OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {
  Stats& s = stats_[page.key];
  ++s.freq;
  s.last = ctx.step;
}

double HeavyHitterPolicy::Score(const PolicyContext& ctx, const PageView& page, int tier) const {
  const auto it = stats_.find(page.key);
  const Stats s = it == stats_.end() ? Stats{} : it->second;
  return static_cast<double>(s.freq * 10000 + s.last);
}

}  // namespace kvtier::policy
