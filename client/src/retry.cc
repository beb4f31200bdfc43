#include "client/src/retry.h"

#include <algorithm>

#include "absl/random/random.h"

namespace kvtier::client_internal {

absl::Status RetryUnavailable(const RetryPolicy& policy, absl::Time deadline,
                              absl::FunctionRef<absl::Status(bool* may_retry)> attempt) {
  absl::BitGen gen;
  absl::Duration backoff = policy.initial_backoff;
  for (int n = 1;; ++n) {
    bool may_retry = true;
    absl::Status status = attempt(&may_retry);
    if (status.code() != absl::StatusCode::kUnavailable || !may_retry || n >= policy.max_attempts) {
      return status;
    }
    const double factor =
        policy.jitter > 0 ? absl::Uniform(gen, 1.0 - policy.jitter, 1.0 + policy.jitter) : 1.0;
    const absl::Duration wait = backoff * factor;
    if (absl::Now() + wait >= deadline) return status;
    absl::SleepFor(wait);
    backoff = std::min(backoff * 2, policy.max_backoff);
  }
}

}  // namespace kvtier::client_internal
