#include "tools/replay/replay_engine.h"

#include <list>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvtier::replay {
namespace {

using policy::PageView;
using policy::PolicyContext;

// A tier's residents in insertion order (victim ties go to the earliest inserted).
struct TierState {
  const TierSpec* spec = nullptr;
  std::list<uint32_t> order;
  absl::flat_hash_map<uint32_t, std::list<uint32_t>::iterator> position;
  int64_t used_bytes = 0;
  int64_t peak_used_bytes = 0;

  bool Holds(uint32_t page) const { return position.contains(page); }
  bool CanFit(int64_t size) const { return used_bytes + size <= spec->capacity_bytes; }
  void Add(uint32_t page, int64_t size) {
    if (Holds(page)) return;
    order.push_back(page);
    position.emplace(page, std::prev(order.end()));
    used_bytes += size;
    peak_used_bytes = std::max(peak_used_bytes, used_bytes);
  }
  void Remove(uint32_t page, int64_t size) {
    const auto it = position.find(page);
    if (it == position.end()) return;
    order.erase(it->second);
    position.erase(it);
    used_bytes -= size;
  }
};

class Engine {
 public:
  Engine(absl::Span<const TierSpec> tiers, absl::Span<const ReplayPage> pages,
         policy::PlacementPolicy& policy, const ReplayOptions& options)
      : pages_(pages), policy_(policy), options_(options), tiers_(tiers.size()) {
    for (size_t i = 0; i < tiers.size(); ++i) tiers_[i].spec = &tiers[i];
    result_.metrics.peak_footprint_bytes.assign(tiers.size(), 0);
  }

  absl::Status Access(int64_t step, uint32_t page_index);

  ReplayResult Finish() {
    result_.metrics.wasted_prefetches += static_cast<int64_t>(pending_.size());
    for (size_t i = 0; i < tiers_.size(); ++i) {
      result_.metrics.peak_footprint_bytes[i] = tiers_[i].peak_used_bytes;
    }
    return std::move(result_);
  }

 private:
  PageView View(uint32_t page) const { return PageView{page, pages_[page].size_bytes}; }
  int Last() const { return static_cast<int>(tiers_.size()) - 1; }
  int TierHolding(uint32_t page) const {
    for (size_t i = 0; i < tiers_.size(); ++i) {
      if (tiers_[i].Holds(page)) return static_cast<int>(i);
    }
    return policy::kNoTier;
  }
  void CreditTier(int tier) {
    for (auto& [t, hits] : result_.metrics.tier_hits) {
      if (t == tier) {
        ++hits;
        return;
      }
    }
    result_.metrics.tier_hits.emplace_back(tier, 1);
  }
  void Log(int64_t step, EventType type, uint32_t page, int src, int dst, double latency) {
    if (!options_.record_events) return;
    result_.events.push_back(
        ReplayEvent{step, type, page, src, dst, latency, pages_[page].size_bytes});
  }

  absl::Status PlaceInTier0(const PolicyContext& ctx, uint32_t page, int src, bool prefetch);
  absl::Status EnsureCapacity(const PolicyContext& ctx, int tier, uint32_t incoming);
  absl::Status EvictFromTier(const PolicyContext& ctx, int tier, uint32_t victim);
  absl::Status InsertCold(const PolicyContext& ctx, uint32_t page);

  absl::Span<const ReplayPage> pages_;
  policy::PlacementPolicy& policy_;
  const ReplayOptions& options_;
  std::vector<TierState> tiers_;
  absl::flat_hash_set<uint32_t> pending_;  // prefetched into tier 0, not yet used
  ReplayResult result_;
  std::vector<PageView> candidates_;  // reused buffer
};

absl::Status Engine::Access(int64_t step, uint32_t page) {
  const PolicyContext ctx{step};
  ReplayMetrics& m = result_.metrics;
  const int t = TierHolding(page);
  policy_.OnAccess(ctx, View(page), t);
  if (t == policy::kNoTier) {  // cold miss: materialise in the last tier, then promote
    ++m.miss_count;
    ++m.accesses;
    policy_.OnMiss(ctx, View(page));
    if (absl::Status s = InsertCold(ctx, page); !s.ok()) return s;
    if (absl::Status s = PlaceInTier0(ctx, page, Last(), false); !s.ok()) return s;
  } else if (t != 0) {  // found lower down: still a miss, but a cheaper one
    ++m.miss_count;
    ++m.accesses;
    CreditTier(t);
    policy_.OnMiss(ctx, View(page));
    if (absl::Status s = PlaceInTier0(ctx, page, t, false); !s.ok()) return s;
  } else {
    ++m.accesses;
    CreditTier(0);
    m.total_latency_ms += tiers_[0].spec->read_latency_ms + pages_[page].decode_penalty_ms;
  }
  if (pending_.erase(page) > 0) ++m.useful_prefetches;

  if (options_.prefetch_enabled) {
    std::vector<policy::PageKey> suggested = policy_.MaybePrefetch(ctx, View(page));
    if (static_cast<int>(suggested.size()) > options_.max_prefetch_candidates) {
      suggested.resize(static_cast<size_t>(std::max(options_.max_prefetch_candidates, 0)));
    }
    for (const policy::PageKey key : suggested) {
      if (key >= pages_.size()) continue;
      const auto candidate = static_cast<uint32_t>(key);
      if (tiers_[0].Holds(candidate)) continue;
      int src = TierHolding(candidate);
      if (src == policy::kNoTier) {
        if (absl::Status s = InsertCold(ctx, candidate); !s.ok()) return s;
        src = Last();
      }
      if (pending_.contains(candidate)) continue;
      pending_.insert(candidate);
      ++m.prefetch_requests;
      if (absl::Status s = PlaceInTier0(ctx, candidate, src, true); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::PlaceInTier0(const PolicyContext& ctx, uint32_t page, int src, bool prefetch) {
  if (tiers_[0].Holds(page)) return absl::OkStatus();
  if (absl::Status s = EnsureCapacity(ctx, 0, page); !s.ok()) return s;
  // The cascade above may have pushed `page` out of `src` already (reference quirk: it
  // then stays resident in the lower tier as well).
  tiers_[src].Remove(page, pages_[page].size_bytes);
  tiers_[0].Add(page, pages_[page].size_bytes);
  const double latency = TransferCostMs(*tiers_[src].spec, *tiers_[0].spec, pages_[page]);
  ReplayMetrics& m = result_.metrics;
  (prefetch ? m.prefetch_bytes_moved : m.demand_bytes_moved) += pages_[page].size_bytes;
  m.total_latency_ms += latency;
  policy_.OnInsert(ctx, View(page), 0);
  policy_.OnPromote(ctx, View(page), src, 0);
  Log(ctx.step, prefetch ? EventType::kPrefetch : EventType::kPromote, page, src, 0, latency);
  return absl::OkStatus();
}

absl::Status Engine::EnsureCapacity(const PolicyContext& ctx, int tier, uint32_t incoming) {
  TierState& state = tiers_[static_cast<size_t>(tier)];
  while (!state.CanFit(pages_[incoming].size_bytes)) {
    if (state.order.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          pages_[incoming].id, " (", pages_[incoming].size_bytes, " bytes) does not fit in tier ",
          state.spec->name, " (", state.spec->capacity_bytes, " bytes) even when it is empty"));
    }
    candidates_.clear();
    for (uint32_t p : state.order) candidates_.push_back(View(p));
    const size_t chosen = policy_.SelectEvictionCandidate(ctx, tier, candidates_, View(incoming));
    if (chosen >= candidates_.size()) {
      return absl::InternalError(absl::StrCat("policy ", std::string(policy_.Name()),
                                              " chose eviction candidate ", chosen, " of ",
                                              candidates_.size()));
    }
    const auto victim = static_cast<uint32_t>(candidates_[chosen].key);
    if (absl::Status s = EvictFromTier(ctx, tier, victim); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Engine::EvictFromTier(const PolicyContext& ctx, int tier, uint32_t victim) {
  ReplayMetrics& m = result_.metrics;
  tiers_[static_cast<size_t>(tier)].Remove(victim, pages_[victim].size_bytes);
  ++m.eviction_count;
  policy_.OnEvict(ctx, View(victim), tier);
  if (tier == 0 && pending_.erase(victim) > 0) ++m.wasted_prefetches;
  if (tier == Last()) {
    Log(ctx.step, EventType::kEvict, victim, tier, policy::kNoTier, 0.0);
    return absl::OkStatus();
  }
  const int lower = tier + 1;
  if (absl::Status s = EnsureCapacity(ctx, lower, victim); !s.ok()) return s;
  tiers_[static_cast<size_t>(lower)].Add(victim, pages_[victim].size_bytes);
  const double latency = TransferCostMs(*tiers_[static_cast<size_t>(tier)].spec,
                                        *tiers_[static_cast<size_t>(lower)].spec, pages_[victim]);
  m.demand_bytes_moved += pages_[victim].size_bytes;
  m.total_latency_ms += latency;
  Log(ctx.step, EventType::kDemote, victim, tier, lower, latency);
  return absl::OkStatus();
}

absl::Status Engine::InsertCold(const PolicyContext& ctx, uint32_t page) {
  TierState& last = tiers_[static_cast<size_t>(Last())];
  if (last.Holds(page)) return absl::OkStatus();
  if (absl::Status s = EnsureCapacity(ctx, Last(), page); !s.ok()) return s;
  last.Add(page, pages_[page].size_bytes);
  policy_.OnInsert(ctx, View(page), Last());
  return absl::OkStatus();
}

}  // namespace

const char* EventTypeName(EventType type) {
  switch (type) {
    case EventType::kPromote:
      return "promote";
    case EventType::kPrefetch:
      return "prefetch";
    case EventType::kDemote:
      return "demote";
    case EventType::kEvict:
      return "evict";
  }
  return "unknown";
}

double ReplayMetrics::avg_latency_ms() const {
  return accesses == 0 ? 0.0 : total_latency_ms / static_cast<double>(accesses);
}

double ReplayMetrics::overall_hit_rate() const {
  return accesses == 0 ? 0.0
                       : 1.0 - static_cast<double>(miss_count) / static_cast<double>(accesses);
}

double ReplayMetrics::prefetch_usefulness() const {
  return prefetch_requests == 0
             ? 0.0
             : static_cast<double>(useful_prefetches) / static_cast<double>(prefetch_requests);
}

absl::StatusOr<ReplayResult> Replay(absl::Span<const TierSpec> tiers,
                                    absl::Span<const ReplayPage> pages,
                                    absl::Span<const uint32_t> accesses,
                                    policy::PlacementPolicy& policy, const ReplayOptions& options) {
  if (tiers.empty()) return absl::InvalidArgumentError("replay needs at least one tier");
  Engine engine(tiers, pages, policy, options);
  for (size_t step = 0; step < accesses.size(); ++step) {
    if (accesses[step] >= pages.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("access ", step, " names page ", accesses[step], " of ", pages.size()));
    }
    if (absl::Status s = engine.Access(static_cast<int64_t>(step), accesses[step]); !s.ok()) {
      return s;
    }
  }
  return engine.Finish();
}

}  // namespace kvtier::replay
