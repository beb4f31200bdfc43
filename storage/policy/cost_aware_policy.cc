#include "storage/policy/cost_aware_policy.h"

#include <algorithm>

namespace kvtier::policy {

void CostAwarePolicy::OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {
  Stats& s = stats_[page.key];
  ++s.freq;
  s.last = ctx.step;
}

double CostAwarePolicy::Score(const PolicyContext& ctx, const PageView& page, int tier) const {
  const auto it = stats_.find(page.key);
  const Stats s = it == stats_.end() ? Stats{} : it->second;
  const double recency =
      static_cast<double>(s.last) / static_cast<double>(std::max<int64_t>(ctx.step, 1));
  return options_.freq_weight * static_cast<double>(s.freq) + options_.recency_weight * recency -
         options_.size_penalty * (static_cast<double>(page.size_bytes) / 1024.0);
}

}  // namespace kvtier::policy
