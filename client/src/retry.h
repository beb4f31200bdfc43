// Retry loop shared by every call of the SDK: retries UNAVAILABLE with exponential backoff
// and jitter, never past the call's deadline.
#ifndef KVTIER_CLIENT_SRC_RETRY_H_
#define KVTIER_CLIENT_SRC_RETRY_H_

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kvtier/client.h"

namespace kvtier::client_internal {

// Calls `attempt` until it returns something other than UNAVAILABLE, `policy.max_attempts`
// attempts were made, or the next wait would reach `deadline`. `attempt` sets
// `*may_retry = false` when a retry would be unsafe (e.g. part of a stream was consumed);
// it is true on entry. Returns the last attempt's status.
absl::Status RetryUnavailable(const RetryPolicy& policy, absl::Time deadline,
                              absl::FunctionRef<absl::Status(bool* may_retry)> attempt);

}  // namespace kvtier::client_internal

#endif  // KVTIER_CLIENT_SRC_RETRY_H_
