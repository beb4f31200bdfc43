#include "storage/policy/predictive_policy.h"

#include <algorithm>

namespace kvtier::policy {

void PredictivePolicy::OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {
  if (previous_.has_value()) {
    auto& next = successors_[*previous_];
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const auto& entry) { return entry.first == page.key; });
    if (it == next.end()) {
      next.emplace_back(page.key, 1);
    } else {
      ++it->second;
    }
  }
  previous_ = page.key;
  Stats& s = stats_[page.key];
  ++s.freq;
  s.last = ctx.step;
}

double PredictivePolicy::Score(const PolicyContext& ctx, const PageView& page, int tier) const {
  const auto it = stats_.find(page.key);
  const Stats s = it == stats_.end() ? Stats{} : it->second;
  return static_cast<double>(s.freq * 100 + s.last);
}

std::vector<PageKey> PredictivePolicy::MaybePrefetch(const PolicyContext& ctx,
                                                     const PageView& page) {
  std::vector<PageKey> out;
  const auto it = successors_.find(page.key);
  if (it == successors_.end()) return out;
  std::vector<std::pair<PageKey, int64_t>> ranked = it->second;
  // Stable: equal counts keep first-seen order, like Python's Counter.most_common.
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [key, count] : ranked) {
    if (static_cast<int>(out.size()) >= options_.max_prefetches) break;
    if (count >= options_.min_confidence) out.push_back(key);
  }
  return out;
}

}  // namespace kvtier::policy
