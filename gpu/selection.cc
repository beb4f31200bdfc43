// SelectPositions (gpu/selection.h): anchor ranking and burst packing of DESIGN.md §1.
#include "gpu/selection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace kvtier::scorer {
namespace {

// A NaN would break the strict weak ordering of the ranking; it ranks as -infinity.
double RankValue(double v) { return std::isnan(v) ? -std::numeric_limits<double>::infinity() : v; }

// Candidate positions in ascending order with their indices, for window walks.
struct SortedCandidates {
  std::vector<int64_t> positions;
  std::vector<int32_t> index;
};

// Produces anchors (indices into CandidateSet.positions) on demand.
class AnchorSource {
 public:
  virtual ~AnchorSource() = default;
  // Next anchor index, or -1 when there are no more.
  virtual int32_t Next() = 0;
};

// Anchors in a precomputed order.
class ListAnchors final : public AnchorSource {
 public:
  explicit ListAnchors(std::vector<int32_t> order) : order_(std::move(order)) {}
  int32_t Next() override { return next_ < order_.size() ? order_[next_++] : -1; }

 private:
  std::vector<int32_t> order_;
  size_t next_ = 0;
};

// Anchors ranked by (score desc, importance desc, position asc), sorted lazily: only the
// best `ranked_` are ordered, doubling when the packer needs more, so K << N stays cheap.
class RankedAnchors final : public AnchorSource {
 public:
  RankedAnchors(const CandidateSet& candidates, int64_t budget) : candidates_(candidates) {
    if (candidates.anchors.empty()) {
      order_.resize(candidates.positions.size());
      std::iota(order_.begin(), order_.end(), 0);
    } else {
      for (size_t i = 0; i < candidates.anchors.size(); ++i) {
        if (candidates.anchors[i] != 0) order_.push_back(static_cast<int32_t>(i));
      }
    }
    want_ = static_cast<size_t>(std::max<int64_t>(budget, 64));
  }

  int32_t Next() override {
    if (next_ == ranked_) {
      if (ranked_ == order_.size()) return -1;
      const size_t upto = std::min(order_.size(), std::max(want_, 2 * ranked_));
      // Elements past ranked_ all rank after the ones before it, so sorting on continues.
      std::partial_sort(order_.begin() + ranked_, order_.begin() + upto, order_.end(),
                        [this](int32_t a, int32_t b) { return Before(a, b); });
      ranked_ = upto;
    }
    return order_[next_++];
  }

 private:
  bool Before(int32_t a, int32_t b) const {
    const double sa = RankValue(candidates_.scores[a]);
    const double sb = RankValue(candidates_.scores[b]);
    if (sa != sb) return sa > sb;
    const double ia = Importance(a);
    const double ib = Importance(b);
    if (ia != ib) return ia > ib;
    return candidates_.positions[a] < candidates_.positions[b];
  }

  double Importance(int32_t i) const {
    return candidates_.importance.empty() ? 0.0 : RankValue(candidates_.importance[i]);
  }

  const CandidateSet& candidates_;
  std::vector<int32_t> order_;
  size_t want_;
  size_t ranked_ = 0;
  size_t next_ = 0;
};

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_add_overflow(a, b, &out)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return out;
}

}  // namespace

absl::StatusOr<Selection> SelectPositions(const CandidateSet& candidates, SelectorKind kind,
                                          const PackOptions& options) {
  const size_t n = candidates.positions.size();
  if (options.budget < 1) {
    return absl::InvalidArgumentError(absl::StrCat("budget must be >= 1, got ", options.budget));
  }
  if (options.burst_left < 0 || options.burst_right < 0) {
    return absl::InvalidArgumentError(absl::StrCat("burst_left and burst_right must be >= 0, got ",
                                                   options.burst_left, " and ",
                                                   options.burst_right));
  }
  if (kind != SelectorKind::kRepairKv && kind != SelectorKind::kOldest &&
      kind != SelectorKind::kRandom) {
    return absl::InvalidArgumentError("selector is not a known SelectorKind");
  }
  if (kind == SelectorKind::kRepairKv && candidates.scores.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("scores has ", candidates.scores.size(), " entries for ", n, " positions"));
  }
  if (!candidates.importance.empty() && candidates.importance.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("importance has ", candidates.importance.size(),
                                                   " entries for ", n, " positions"));
  }
  if (!candidates.anchors.empty() && candidates.anchors.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("anchors has ", candidates.anchors.size(), " entries for ", n, " positions"));
  }
  if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("too many positions");
  }

  SortedCandidates sorted;
  {
    std::vector<int32_t> by_position(n);
    std::iota(by_position.begin(), by_position.end(), 0);
    // Stores hand positions over mostly in offload order, often ascending already.
    if (!std::is_sorted(candidates.positions.begin(), candidates.positions.end())) {
      std::sort(by_position.begin(), by_position.end(), [&](int32_t a, int32_t b) {
        return candidates.positions[a] < candidates.positions[b];
      });
    }
    sorted.positions.reserve(n);
    for (int32_t i : by_position) {
      if (!sorted.positions.empty() && sorted.positions.back() == candidates.positions[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("positions must be unique; ", candidates.positions[i], " repeats"));
      }
      sorted.positions.push_back(candidates.positions[i]);
    }
    sorted.index = std::move(by_position);
  }

  std::unique_ptr<AnchorSource> anchors;
  switch (kind) {
    case SelectorKind::kRepairKv:
      anchors = std::make_unique<RankedAnchors>(candidates, options.budget);
      break;
    case SelectorKind::kOldest:
      anchors = std::make_unique<ListAnchors>(sorted.index);
      break;
    case SelectorKind::kRandom: {
      std::vector<int32_t> order = sorted.index;
      std::mt19937_64 rng(options.seed);
      std::shuffle(order.begin(), order.end(), rng);
      anchors = std::make_unique<ListAnchors>(std::move(order));
      break;
    }
  }

  Selection selection;
  const size_t want = static_cast<size_t>(std::min<int64_t>(options.budget, n));
  selection.chosen.reserve(want);
  selection.chosen_index.reserve(want);
  // next_free[r] leads (with path halving) to the smallest untaken rank >= r, or n: a
  // window skips runs of taken positions instead of re-walking them, so packing costs about
  // O(n + K) however much the bursts overlap.
  std::vector<int32_t> next_free(n + 1);
  std::iota(next_free.begin(), next_free.end(), 0);
  auto first_free = [&next_free](int32_t r) {
    while (next_free[r] != r) {
      next_free[r] = next_free[next_free[r]];
      r = next_free[r];
    }
    return r;
  };
  const int32_t end = static_cast<int32_t>(n);
  while (selection.chosen.size() < want) {
    const int32_t anchor = anchors->Next();
    if (anchor < 0) break;
    const int64_t x = candidates.positions[anchor];
    const int64_t lo = SaturatingAdd(x, -int64_t{options.burst_left});
    const int64_t hi = SaturatingAdd(x, options.burst_right);
    // Positions absent from the candidate set are skipped; they do not count against K.
    int32_t rank = first_free(static_cast<int32_t>(
        std::lower_bound(sorted.positions.begin(), sorted.positions.end(), lo) -
        sorted.positions.begin()));
    while (rank < end && sorted.positions[rank] <= hi && selection.chosen.size() < want) {
      selection.chosen.push_back(sorted.positions[rank]);
      selection.chosen_index.push_back(sorted.index[rank]);
      next_free[rank] = rank + 1;
      rank = first_free(rank + 1);
    }
  }
  return selection;
}

}  // namespace kvtier::scorer
