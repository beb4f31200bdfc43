#include "storage/policy/windowed_recency_policy.h"

namespace kvtier::policy {

void WindowedRecencyPolicy::OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {
  window_.push_back(page.key);
  ++count_in_window_[page.key];
  if (static_cast<int>(window_.size()) > window_size_) {
    const PageKey oldest = window_.front();
    window_.pop_front();
    if (--count_in_window_[oldest] == 0) count_in_window_.erase(oldest);
  }
  last_[page.key] = ctx.step;
}

double WindowedRecencyPolicy::Score(const PolicyContext& ctx, const PageView& page,
                                    int tier) const {
  const auto count = count_in_window_.find(page.key);
  const auto last = last_.find(page.key);
  const double in_window = count == count_in_window_.end() ? 0.0 : count->second;
  const double last_step = last == last_.end() ? -1.0 : last->second;
  return in_window * 1e6 + last_step;
}

}  // namespace kvtier::policy
