#include "storage/policy/regret_aware_policy.h"

#include <algorithm>

namespace kvtier::policy {

void RegretAwarePolicy::OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {
  Stats& s = stats_[page.key];
  ++s.freq;
  s.last = ctx.step;
  // Decay only multiplies an existing entry, before this access's bump.
  if (s.has_regret) s.regret *= options_.decay;
  if (s.has_eviction) {
    s.has_eviction = false;  // consumed by the first re-access
    const int64_t gap = ctx.step - s.eviction_step;
    if (gap <= options_.regret_horizon) {
      s.regret += static_cast<double>(options_.regret_horizon - gap + 1) /
                  static_cast<double>(options_.regret_horizon);
      s.has_regret = true;
    }
  }
}

void RegretAwarePolicy::OnEvict(const PolicyContext& ctx, const PageView& page, int tier) {
  Stats& s = stats_[page.key];
  s.has_eviction = true;
  s.eviction_step = ctx.step;
}

double RegretAwarePolicy::Score(const PolicyContext& ctx, const PageView& page, int tier) const {
  const auto it = stats_.find(page.key);
  const Stats s = it == stats_.end() ? Stats{} : it->second;
  const double recency =
      static_cast<double>(s.last) / static_cast<double>(std::max<int64_t>(ctx.step, 1));
  return options_.freq_weight * static_cast<double>(s.freq) + options_.recency_weight * recency +
         options_.regret_weight * s.regret;
}

}  // namespace kvtier::policy
