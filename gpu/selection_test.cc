// Tests of SelectPositions: ranking, burst packing over gaps, budget cuts and selectors.
#include "gpu/selection.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

namespace kvtier::scorer {
namespace {

PackOptions Options(int64_t budget, int32_t left, int32_t right, uint64_t seed = 0) {
  PackOptions options;
  options.budget = budget;
  options.burst_left = left;
  options.burst_right = right;
  options.seed = seed;
  return options;
}

std::vector<int64_t> Select(const std::vector<int64_t>& positions,
                            const std::vector<double>& scores, SelectorKind kind,
                            const PackOptions& options, const std::vector<float>& importance = {}) {
  absl::StatusOr<Selection> s =
      SelectPositions(CandidateSet{positions, scores, importance, {}}, kind, options);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return {};
  EXPECT_EQ(s->chosen.size(), s->chosen_index.size());
  for (size_t i = 0; i < s->chosen.size(); ++i) {
    EXPECT_EQ(positions[s->chosen_index[i]], s->chosen[i]);
  }
  return s->chosen;
}

TEST(SelectionTest, BurstSkipsMissingPositionsWithoutCountingThem) {
  // 12..14 and 17 are not offloaded.
  const std::vector<int64_t> positions = {10, 11, 15, 16, 18, 19, 20, 30};
  const std::vector<double> scores = {0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.5};
  // Anchor 15 with left 4, right 4 visits 11..19: takes 11, 15, 16, 18, 19.
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(5, 4, 4)),
            (std::vector<int64_t>{11, 15, 16, 18, 19}));
}

TEST(SelectionTest, BudgetCutsTheLastBurst) {
  const std::vector<int64_t> positions = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const std::vector<double> scores = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0.5};
  // Anchor 8 (left 1, right 1): 7, 8, 9; then anchor 10: 10 only would fit anyway; cut at 4.
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(4, 1, 1)),
            (std::vector<int64_t>{7, 8, 9, 10}));
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(2, 1, 1)),
            (std::vector<int64_t>{7, 8}));
}

TEST(SelectionTest, BudgetLargerThanStoreReturnsAllCandidates) {
  const std::vector<int64_t> positions = {50, 3, 17, 4, 100};
  const std::vector<double> scores = {0.1, 0.2, 0.3, 0.4, 0.5};
  const std::vector<int64_t> chosen =
      Select(positions, scores, SelectorKind::kRepairKv, Options(1000, 2, 20));
  // Anchor 100 takes itself; anchor 4 (window 2..24) takes 3, 4, 17; anchor 50 ends it.
  EXPECT_EQ(chosen, (std::vector<int64_t>{100, 3, 4, 17, 50}));
}

TEST(SelectionTest, OverlappingBurstsTakeEachPositionOnce) {
  std::vector<int64_t> positions(40);
  std::iota(positions.begin(), positions.end(), 0);
  std::vector<double> scores(40, 0.0);
  scores[10] = 1.0;
  scores[12] = 0.9;  // its burst overlaps the first one
  const std::vector<int64_t> chosen =
      Select(positions, scores, SelectorKind::kRepairKv, Options(12, 2, 5));
  EXPECT_EQ(chosen, (std::vector<int64_t>{8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0, 1}));
  EXPECT_EQ(std::set<int64_t>(chosen.begin(), chosen.end()).size(), chosen.size());
}

TEST(SelectionTest, TiesBreakByImportanceThenPosition) {
  const std::vector<int64_t> positions = {40, 10, 30, 20};
  const std::vector<double> scores = {0.5, 0.5, 0.5, 0.5};
  const std::vector<float> importance = {0.0f, 0.0f, 2.0f, 0.0f};
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(4, 0, 0), importance),
            (std::vector<int64_t>{30, 10, 20, 40}));
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(4, 0, 0)),
            (std::vector<int64_t>{10, 20, 30, 40}));
}

TEST(SelectionTest, NanScoresRankLast) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<int64_t> positions = {1, 2, 3, 4, 5, 6};
  const std::vector<double> scores = {nan, 0.2, nan, 0.9, -1.0, nan};
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(6, 0, 0)),
            (std::vector<int64_t>{4, 2, 5, 1, 3, 6}));
}

// A plain implementation of the header's contract: full sort, then a scan of every position.
std::vector<int64_t> NaiveSelect(const std::vector<int64_t>& positions,
                                 const std::vector<double>& scores,
                                 const std::vector<float>& importance, int64_t budget, int left,
                                 int right) {
  std::vector<size_t> order(positions.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    if (importance[a] != importance[b]) return importance[a] > importance[b];
    return positions[a] < positions[b];
  });
  const std::set<int64_t> present(positions.begin(), positions.end());
  std::set<int64_t> taken;
  std::vector<int64_t> out;
  for (size_t a : order) {
    for (int64_t x = positions[a] - left; x <= positions[a] + right; ++x) {
      if (static_cast<int64_t>(out.size()) == budget) return out;
      if (present.count(x) && taken.insert(x).second) out.push_back(x);
    }
  }
  return out;
}

TEST(SelectionTest, MatchesNaiveSelectionOnRandomInputsWithTies) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 3000);
    std::set<int64_t> unique;
    while (static_cast<int>(unique.size()) < n) unique.insert(static_cast<int64_t>(rng() % 9000));
    std::vector<int64_t> positions(unique.begin(), unique.end());
    std::shuffle(positions.begin(), positions.end(), rng);
    std::vector<double> scores(n);
    std::vector<float> importance(n);
    for (int i = 0; i < n; ++i) {
      scores[i] = static_cast<double>(rng() % 50) / 50.0;  // many exact ties
      importance[i] = static_cast<float>(rng() % 3);
    }
    const int64_t budget = 1 + static_cast<int64_t>(rng() % (trial % 2 ? 100 : 4000));
    const int left = static_cast<int>(rng() % 4);
    const int right = static_cast<int>(rng() % 25);
    SCOPED_TRACE(testing::Message() << "trial " << trial << " n=" << n << " K=" << budget);
    ASSERT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(budget, left, right),
                     importance),
              NaiveSelect(positions, scores, importance, budget, left, right));
  }
}

TEST(SelectionTest, OldestUsesAscendingAnchors) {
  const std::vector<int64_t> positions = {9, 3, 7, 1, 5};
  const std::vector<double> scores = {1, 1, 1, 1, 1};
  EXPECT_EQ(Select(positions, {}, SelectorKind::kOldest, Options(3, 0, 1)),
            (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(Select(positions, scores, SelectorKind::kOldest, Options(10, 0, 0)),
            (std::vector<int64_t>{1, 3, 5, 7, 9}));
}

TEST(SelectionTest, RandomIsDeterministicPerSeedAndMatchesTheDocumentedShuffle) {
  std::vector<int64_t> positions(200);
  for (int i = 0; i < 200; ++i) positions[i] = 3 * (199 - i);
  const std::vector<int64_t> a = Select(positions, {}, SelectorKind::kRandom, Options(20, 0, 0, 7));
  const std::vector<int64_t> b = Select(positions, {}, SelectorKind::kRandom, Options(20, 0, 0, 7));
  const std::vector<int64_t> c = Select(positions, {}, SelectorKind::kRandom, Options(20, 0, 0, 8));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int64_t> expected = positions;
  std::sort(expected.begin(), expected.end());
  std::mt19937_64 rng(7);
  std::shuffle(expected.begin(), expected.end(), rng);
  expected.resize(20);
  EXPECT_EQ(a, expected);
}

TEST(SelectionTest, ZeroBurstTakesAnchorsOnly) {
  const std::vector<int64_t> positions = {5, 6, 7, 8};
  const std::vector<double> scores = {0.1, 0.4, 0.3, 0.2};
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(3, 0, 0)),
            (std::vector<int64_t>{6, 7, 8}));
}

TEST(SelectionTest, EmptyCandidateSetGivesEmptySelection) {
  EXPECT_TRUE(Select({}, {}, SelectorKind::kRepairKv, Options(5, 2, 20)).empty());
}

TEST(SelectionTest, ExtremePositionsDoNotOverflow) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  const int64_t min = std::numeric_limits<int64_t>::min();
  const std::vector<int64_t> positions = {min, max, 0};
  const std::vector<double> scores = {0.9, 0.8, 0.1};
  EXPECT_EQ(Select(positions, scores, SelectorKind::kRepairKv, Options(3, 5, 5)),
            (std::vector<int64_t>{min, max, 0}));
}

TEST(SelectionTest, InvalidOptionsAreInvalidArgument) {
  const std::vector<int64_t> positions = {1, 2, 3};
  const std::vector<double> scores = {1, 2, 3};
  const std::vector<double> short_scores = {1, 2};
  const std::vector<float> short_importance = {1};
  const std::vector<int64_t> repeated = {1, 2, 1};
  auto code = [](const CandidateSet& c, SelectorKind k, const PackOptions& o) {
    return SelectPositions(c, k, o).status().code();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code({positions, scores, {}, {}}, SelectorKind::kRepairKv, Options(0, 2, 20)),
            kInvalid);
  EXPECT_EQ(code({positions, scores, {}, {}}, SelectorKind::kRepairKv, Options(-3, 2, 20)),
            kInvalid);
  EXPECT_EQ(code({positions, scores, {}, {}}, SelectorKind::kRepairKv, Options(2, -1, 20)),
            kInvalid);
  EXPECT_EQ(code({positions, scores, {}, {}}, SelectorKind::kOldest, Options(2, 2, -1)), kInvalid);
  EXPECT_EQ(code({positions, short_scores, {}, {}}, SelectorKind::kRepairKv, Options(2, 2, 20)),
            kInvalid);
  EXPECT_EQ(
      code({positions, scores, short_importance, {}}, SelectorKind::kRepairKv, Options(2, 2, 20)),
      kInvalid);
  EXPECT_EQ(code({repeated, scores, {}, {}}, SelectorKind::kRepairKv, Options(2, 2, 20)), kInvalid);
  EXPECT_EQ(code({positions, {}, {}, {}}, SelectorKind::kRepairKv, Options(2, 2, 20)), kInvalid);
  // Scores are ignored, so may be absent, for the controls.
  EXPECT_EQ(code({positions, {}, {}, {}}, SelectorKind::kOldest, Options(2, 2, 20)),
            absl::StatusCode::kOk);
}

TEST(SelectionTest, OnlyAllowedAnchorsStartBurstsButAnyCandidateFillsThem) {
  const std::vector<int64_t> positions = {10, 11, 12, 20, 21, 30};
  const std::vector<double> scores = {0.1, 0.9, 0.2, 0.8, 0.3, 0.95};
  const std::vector<uint8_t> anchors = {0, 0, 0, 1, 0, 0};  // only position 20
  PackOptions options;
  options.budget = 5;
  options.burst_left = 1;
  options.burst_right = 1;
  absl::StatusOr<Selection> selection = SelectPositions(
      CandidateSet{positions, scores, {}, anchors}, SelectorKind::kRepairKv, options);
  ASSERT_TRUE(selection.ok()) << selection.status();
  // 20's burst is [19, 21]: 20 and 21; then no anchor is left, so fewer than K come back.
  EXPECT_EQ(selection->chosen, (std::vector<int64_t>{20, 21}));
  const std::vector<uint8_t> short_anchors = {1};
  EXPECT_EQ(SelectPositions(CandidateSet{positions, scores, {}, short_anchors},
                            SelectorKind::kRepairKv, options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier::scorer
