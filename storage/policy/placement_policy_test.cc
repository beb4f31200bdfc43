// Unit tests of the placement policies against the semantics of
// ../shared/reference/tier_policies/README.md §1.4 (the replay tests check them end to end).
#include "storage/policy/placement_policy.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace kvtier::policy {
namespace {

std::unique_ptr<PlacementPolicy> Make(std::string_view name, const PolicyParams& params = {}) {
  absl::StatusOr<std::unique_ptr<PlacementPolicy>> p = MakePlacementPolicy(name, params);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *std::move(p) : nullptr;
}

PageView Page(PageKey key, int64_t size = 100) { return PageView{key, size}; }

// Accesses keys at steps 0, 1, 2, ...
void AccessAll(PlacementPolicy& p, const std::vector<PageKey>& keys) {
  for (size_t i = 0; i < keys.size(); ++i) {
    p.OnAccess(PolicyContext{static_cast<int64_t>(i)}, Page(keys[i]), kNoTier);
  }
}

size_t Victim(PlacementPolicy& p, int64_t step, const std::vector<PageKey>& residents) {
  std::vector<PageView> candidates;
  for (PageKey k : residents) candidates.push_back(Page(k));
  return p.SelectEvictionCandidate(PolicyContext{step}, 0, candidates, Page(999));
}

TEST(PlacementPolicyTest, FactoryKnowsAllSixAndRejectsTheRest) {
  EXPECT_EQ(PlacementPolicyNames().size(), 6u);
  for (const std::string& name : PlacementPolicyNames()) {
    auto p = Make(name);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->Name(), name);
  }
  EXPECT_EQ(MakePlacementPolicy("mru", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakePlacementPolicy("lru", {{"window_size", 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakePlacementPolicy("regret_aware", {{"regret_horizon", 0.5}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PlacementPolicyTest, LruEvictsLeastRecentAndCountsInsertionAsUse) {
  auto p = Make("lru");
  AccessAll(*p, {1, 2, 3, 1});
  EXPECT_EQ(Victim(*p, 4, {1, 2, 3}), 1u);  // page 2, last used at step 1
  p->OnInsert(PolicyContext{5}, Page(2), 0);
  EXPECT_EQ(Victim(*p, 5, {1, 2, 3}), 2u);  // now page 3
}

TEST(PlacementPolicyTest, TiesGoToTheEarliestCandidate) {
  auto p = Make("heavy_hitter");
  EXPECT_EQ(Victim(*p, 0, {7, 8, 9}), 0u);  // never seen: all −1
}

TEST(PlacementPolicyTest, HeavyHitterPrefersFrequency) {
  auto p = Make("heavy_hitter");
  AccessAll(*p, {1, 1, 2});
  EXPECT_EQ(Victim(*p, 3, {2, 1}), 0u);  // 2 was accessed once, though more recently
}

TEST(PlacementPolicyTest, WindowedRecencyForgetsOutsideTheWindow) {
  auto p = Make("windowed_recency", {{"window_size", 2}});
  AccessAll(*p, {1, 1, 2, 3});  // window now {2, 3}: page 1 counts 0
  EXPECT_EQ(Victim(*p, 4, {2, 1, 3}), 1u);
}

TEST(PlacementPolicyTest, CostAwarePenalisesLargePages) {
  auto p = Make("cost_aware");
  AccessAll(*p, {1, 2});
  std::vector<PageView> candidates = {Page(1, 100), Page(2, 100 * 1024)};
  EXPECT_EQ(p->SelectEvictionCandidate(PolicyContext{2}, 0, candidates, Page(3)), 1u);
}

TEST(PlacementPolicyTest, PredictivePrefetchesFrequentSuccessors) {
  auto p = Make("predictive");
  // 1→2 twice, 1→3 three times, 1→4 twice (2 seen before 4), 1→5 once.
  AccessAll(*p, {1, 2, 1, 3, 1, 3, 1, 2, 1, 4, 1, 4, 1, 3, 1, 5, 1});
  EXPECT_EQ(p->MaybePrefetch(PolicyContext{17}, Page(1)), (std::vector<PageKey>{3, 2}));
  EXPECT_TRUE(p->MaybePrefetch(PolicyContext{17}, Page(5)).empty());  // 5→1 seen once
}

TEST(PlacementPolicyTest, RegretAwareRemembersEarlyReaccess) {
  auto p = Make("regret_aware", {{"regret_horizon", 4}});
  AccessAll(*p, {1, 2});
  p->OnEvict(PolicyContext{2}, Page(1), 0);
  p->OnAccess(PolicyContext{3}, Page(1), 1);  // gap 1: regret += 4/4
  p->OnAccess(PolicyContext{4}, Page(2), 0);
  p->OnAccess(PolicyContext{5}, Page(2), 0);
  // 1: 1.5*2 + 3/6 + 6*1.0 = 9.5; 2: 1.5*3 + 5/6 = 5.33.
  EXPECT_EQ(Victim(*p, 6, {1, 2}), 1u);
  auto* scored = dynamic_cast<ScoredPolicy*>(p.get());
  ASSERT_NE(scored, nullptr);
  EXPECT_DOUBLE_EQ(scored->Score(PolicyContext{6}, Page(1), 0), 1.5 * 2 + 3.0 / 6 + 6.0);
  p->OnAccess(PolicyContext{7}, Page(1), 0);  // decays, no new eviction to consume
  EXPECT_DOUBLE_EQ(scored->Score(PolicyContext{7}, Page(1), 0), 1.5 * 3 + 1.0 + 6.0 * 0.98);
}

}  // namespace
}  // namespace kvtier::policy
