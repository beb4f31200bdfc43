// The trace-replay engine: serves an ordered list of page accesses from an exclusive
// hierarchy of tiers under a placement policy and accounts misses, evictions, latency and
// bytes moved. Its semantics (including the reference simulator's quirks, such as double
// residency during cascades) are those of ../shared/reference/tier_policies/README.md
// §1.3; docs/REPLAY.md summarises them.
#ifndef KVTIER_TOOLS_REPLAY_REPLAY_ENGINE_H_
#define KVTIER_TOOLS_REPLAY_REPLAY_ENGINE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "storage/policy/placement_policy.h"
#include "tools/replay/cost_model.h"

namespace kvtier::replay {

struct ReplayOptions {
  bool prefetch_enabled = false;
  // The engine keeps at most this many of the policy's prefetch suggestions per access.
  int max_prefetch_candidates = 2;
  // Whether to keep the per-event log in ReplayResult::events.
  bool record_events = false;
};

enum class EventType { kPromote, kPrefetch, kDemote, kEvict };

// "promote", "prefetch", "demote" or "evict".
const char* EventTypeName(EventType type);

// One movement. `evict` means dropped from the last tier: dst_tier is policy::kNoTier, no
// latency, and its bytes are not counted in bytes moved.
struct ReplayEvent {
  int64_t step = 0;
  EventType type = EventType::kPromote;
  uint32_t page = 0;  // position in the pages span
  int src_tier = 0;
  int dst_tier = 0;
  double latency_ms = 0.0;  // unrounded
  int64_t bytes = 0;
};

struct ReplayMetrics {
  int64_t accesses = 0;
  int64_t miss_count = 0;
  int64_t eviction_count = 0;
  double total_latency_ms = 0.0;
  int64_t demand_bytes_moved = 0;
  int64_t prefetch_bytes_moved = 0;
  int64_t prefetch_requests = 0;
  int64_t useful_prefetches = 0;
  int64_t wasted_prefetches = 0;
  // (tier, accesses credited to it), in the order tiers were first credited: tier 0 for
  // hits, lower tiers for misses found there; cold misses credit no tier.
  std::vector<std::pair<int, int64_t>> tier_hits;
  // High-water mark of used bytes, per tier.
  std::vector<int64_t> peak_footprint_bytes;

  int64_t bytes_moved() const { return demand_bytes_moved + prefetch_bytes_moved; }
  // total latency / accesses (0 for an empty trace).
  double avg_latency_ms() const;
  // 1 − misses / accesses (0 for an empty trace).
  double overall_hit_rate() const;
  // useful / requests (0 when nothing was prefetched).
  double prefetch_usefulness() const;
};

struct ReplayResult {
  ReplayMetrics metrics;
  std::vector<ReplayEvent> events;  // empty unless ReplayOptions::record_events
};

// Replays `accesses` (positions in `pages`) over `tiers` (fastest first, at least one)
// with `policy`, which must be fresh. The policy sees PageKey = position in `pages`.
// Returns INVALID_ARGUMENT for no tiers or an access outside `pages`, and
// RESOURCE_EXHAUSTED when a page cannot fit in a tier even when that tier is empty.
absl::StatusOr<ReplayResult> Replay(absl::Span<const TierSpec> tiers,
                                    absl::Span<const ReplayPage> pages,
                                    absl::Span<const uint32_t> accesses,
                                    policy::PlacementPolicy& policy, const ReplayOptions& options);

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_REPLAY_ENGINE_H_
