// Shape validation shared by every Scorer implementation.
#ifndef KVTIER_GPU_INTERNAL_SCORE_REQUEST_CHECK_H_
#define KVTIER_GPU_INTERNAL_SCORE_REQUEST_CHECK_H_

#include <cstddef>

#include "absl/status/status.h"
#include "gpu/scorer.h"

namespace kvtier::scorer::internal {

// OK when `request` and an output of `scores_size` entries satisfy the preconditions of
// Scorer::Score; otherwise INVALID_ARGUMENT naming the offending field.
absl::Status CheckScoreRequest(const ScoreRequest& request, size_t scores_size);

}  // namespace kvtier::scorer::internal

#endif  // KVTIER_GPU_INTERNAL_SCORE_REQUEST_CHECK_H_
