// Ranking and burst packing: turns per-row scores into the K positions to promote
// (DESIGN.md §1, "Select").
#ifndef KVTIER_GPU_SELECTION_H_
#define KVTIER_GPU_SELECTION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvtier::scorer {

enum class SelectorKind { kRepairKv, kOldest, kRandom };

// The rows that may be chosen. positions are unique (any order); scores and importance
// are parallel to positions. scores is required for kRepairKv and ignored otherwise;
// importance may be empty (all 0).
struct CandidateSet {
  absl::Span<const int64_t> positions;
  absl::Span<const double> scores;
  absl::Span<const float> importance;
  // kRepairKv only: empty (every row may be an anchor), or parallel to positions with
  // nonzero marking the rows that may be anchors; the others only fill bursts (the fast
  // mode's rows that were not rescored).
  absl::Span<const uint8_t> anchors;
};

struct PackOptions {
  int64_t budget = 0;        // K >= 1
  int32_t burst_left = 2;    // >= 0
  int32_t burst_right = 20;  // >= 0
  uint64_t seed = 0;         // kRandom only
};

struct Selection {
  std::vector<int64_t> chosen;        // in the order taken
  std::vector<int32_t> chosen_index;  // index into CandidateSet.positions of each chosen row
};

// Ranks anchors and packs bursts:
// - kRepairKv: anchors sorted by (score desc, importance desc, position asc);
// - kOldest: anchors in ascending position;
// - kRandom: anchors = positions ascending, then shuffled by std::shuffle with
//   std::mt19937_64(seed) (documented so that a client can reproduce it).
// For each anchor x, visits x-left .. x+right ascending and takes every position that is in
// the candidate set and not yet taken, stopping at exactly K (the last burst may be cut).
// Returns fewer than K when candidates (or allowed anchors) run out. INVALID_ARGUMENT on budget <
// 1, negative bursts, or spans of mismatched sizes.
absl::StatusOr<Selection> SelectPositions(const CandidateSet& candidates, SelectorKind kind,
                                          const PackOptions& options);

}  // namespace kvtier::scorer

#endif  // KVTIER_GPU_SELECTION_H_
