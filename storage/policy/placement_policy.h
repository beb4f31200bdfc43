// The placement-policy interface shared by the live tier manager and kvtier-replay.
//
// A policy decides which page (segment) leaves a full tier and which pages to prefetch
// into the fastest tier. The engine that owns the tiers calls the hooks below in a fixed
// order (docs/REPLAY.md and ../shared/reference/tier_policies/README.md §1.3-1.4); the
// policy only keeps bookkeeping and answers questions, it never moves data itself.
//
// Tiers are named by their index in the hierarchy, 0 = fastest. Pages are named by an
// opaque PageKey chosen by the engine. Policies are not thread-safe: the owner serialises
// every call (the tier manager under its lock, the replay engine on one thread).
#ifndef KVTIER_STORAGE_POLICY_PLACEMENT_POLICY_H_
#define KVTIER_STORAGE_POLICY_PLACEMENT_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvtier::policy {

// Identifies one page (or segment) for the lifetime of a policy object.
using PageKey = uint64_t;

// What a policy may know about a page.
struct PageView {
  PageKey key = 0;
  int64_t size_bytes = 0;
};

// Built by the engine once per access, before any movement, and reused for every hook
// called while serving that access. `step` is the index of the access in the trace (or a
// monotonically increasing access counter in the live tier manager).
struct PolicyContext {
  int64_t step = 0;
};

// Sentinel tier index: "no tier" (a cold page, or a page whose source is unknown).
inline constexpr int kNoTier = -1;

class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;

  // The registry name ("lru", "regret_aware", ...).
  virtual std::string_view Name() const = 0;

  // First call for every access, before any movement. `hit_tier` is the tier holding
  // the page, or kNoTier when it is resident nowhere.
  virtual void OnAccess(const PolicyContext& ctx, const PageView& page, int hit_tier) {}
  // The access was not served by tier 0 (cold, or found in a lower tier).
  virtual void OnMiss(const PolicyContext& ctx, const PageView& page) {}
  // The page entered tier 0 (demand or prefetch), or was cold-inserted into the last
  // tier. Not called for demotions into a lower tier.
  virtual void OnInsert(const PolicyContext& ctx, const PageView& page, int tier) {}
  // The page was evicted from `tier` (demoted one tier down, or dropped from the last).
  virtual void OnEvict(const PolicyContext& ctx, const PageView& page, int tier) {}
  // The page was placed in tier 0 (`dst_tier`) coming from `src_tier`.
  virtual void OnPromote(const PolicyContext& ctx, const PageView& page, int src_tier,
                         int dst_tier) {}

  // Chooses the page to evict from `tier` to make room for `incoming`. `candidates` are
  // the pages resident in that tier in insertion order; it is never empty. Returns an
  // index into `candidates`.
  virtual size_t SelectEvictionCandidate(const PolicyContext& ctx, int tier,
                                         absl::Span<const PageView> candidates,
                                         const PageView& incoming) = 0;

  // Pages worth prefetching into tier 0 after `page` was accessed, best first. The
  // engine truncates the list and ignores keys it does not know. Default: none.
  virtual std::vector<PageKey> MaybePrefetch(const PolicyContext& ctx, const PageView& page) {
    return {};
  }
};

// A policy that evicts the page with the lowest score ("higher = more valuable"); ties go
// to the earliest candidate, i.e. the page inserted into that tier first.
class ScoredPolicy : public PlacementPolicy {
 public:
  // The value of keeping `page` in `tier` at `ctx.step`.
  virtual double Score(const PolicyContext& ctx, const PageView& page, int tier) const = 0;

  size_t SelectEvictionCandidate(const PolicyContext& ctx, int tier,
                                 absl::Span<const PageView> candidates,
                                 const PageView& incoming) final;
};

// Numeric tuning knobs by name, e.g. {"regret_horizon", 8}.
using PolicyParams = std::vector<std::pair<std::string, double>>;

// The names MakePlacementPolicy accepts, in a stable order.
std::vector<std::string> PlacementPolicyNames();

// Creates the named policy with its defaults overridden by `params`. Returns
// INVALID_ARGUMENT for an unknown name, an unknown parameter or an out-of-range value.
absl::StatusOr<std::unique_ptr<PlacementPolicy>> MakePlacementPolicy(std::string_view name,
                                                                     const PolicyParams& params);

}  // namespace kvtier::policy

#endif  // KVTIER_STORAGE_POLICY_PLACEMENT_POLICY_H_
