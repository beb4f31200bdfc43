#include "storage/policy/placement_policy.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "storage/policy/cost_aware_policy.h"
#include "storage/policy/heavy_hitter_policy.h"
#include "storage/policy/lru_policy.h"
#include "storage/policy/predictive_policy.h"
#include "storage/policy/regret_aware_policy.h"
#include "storage/policy/windowed_recency_policy.h"

namespace kvtier::policy {
namespace {

// Hands out the parameters a policy knows and reports any left over.
class ParamReader {
 public:
  ParamReader(std::string_view policy, const PolicyParams& params)
      : policy_(policy), params_(params), used_(params.size(), false) {}

  void Real(const char* name, double& value) {
    for (size_t i = 0; i < params_.size(); ++i) {
      if (params_[i].first != name) continue;
      used_[i] = true;
      if (!std::isfinite(params_[i].second)) {
        Fail(absl::StrCat("policy ", policy_, ": parameter ", name, " must be finite"));
      } else {
        value = params_[i].second;
      }
    }
  }

  void Int(const char* name, int& value, int min_value) {
    double v = value;
    Real(name, v);
    if (v != std::floor(v) || v < min_value || v > 1e9) {
      Fail(absl::StrCat("policy ", policy_, ": parameter ", name,
                        " must be an integer >= ", min_value, ", got ", v));
      return;
    }
    value = static_cast<int>(v);
  }

  absl::Status Finish() {
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!used_[i]) {
        Fail(absl::StrCat("policy ", policy_, " has no parameter '", params_[i].first, "'"));
      }
    }
    return status_;
  }

 private:
  void Fail(std::string message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(std::move(message));
  }

  std::string policy_;
  const PolicyParams& params_;
  std::vector<bool> used_;
  absl::Status status_;
};

}  // namespace

size_t ScoredPolicy::SelectEvictionCandidate(const PolicyContext& ctx, int tier,
                                             absl::Span<const PageView> candidates,
                                             const PageView& incoming) {
  size_t best = 0;
  double best_score = Score(ctx, candidates[0], tier);
  for (size_t i = 1; i < candidates.size(); ++i) {
    const double score = Score(ctx, candidates[i], tier);
    if (score < best_score) {  // strict: the first minimum wins
      best = i;
      best_score = score;
    }
  }
  return best;
}

std::vector<std::string> PlacementPolicyNames() {
  return {"lru", "windowed_recency", "heavy_hitter", "cost_aware", "predictive", "regret_aware"};
}

absl::StatusOr<std::unique_ptr<PlacementPolicy>> MakePlacementPolicy(std::string_view name,
                                                                     const PolicyParams& params) {
  ParamReader reader(name, params);
  std::unique_ptr<PlacementPolicy> policy;
  if (name == "lru") {
    policy = std::make_unique<LruPolicy>();
  } else if (name == "windowed_recency") {
    int window_size = 32;
    reader.Int("window_size", window_size, 1);
    policy = std::make_unique<WindowedRecencyPolicy>(window_size);
  } else if (name == "heavy_hitter") {
    policy = std::make_unique<HeavyHitterPolicy>();
  } else if (name == "cost_aware") {
    CostAwarePolicy::Options o;
    reader.Real("freq_weight", o.freq_weight);
    reader.Real("recency_weight", o.recency_weight);
    reader.Real("size_penalty", o.size_penalty);
    policy = std::make_unique<CostAwarePolicy>(o);
  } else if (name == "predictive") {
    PredictivePolicy::Options o;
    reader.Int("max_prefetches", o.max_prefetches, 0);
    reader.Int("min_confidence", o.min_confidence, 1);
    policy = std::make_unique<PredictivePolicy>(o);
  } else if (name == "regret_aware") {
    RegretAwarePolicy::Options o;
    reader.Int("regret_horizon", o.regret_horizon, 1);
    reader.Real("regret_weight", o.regret_weight);
    reader.Real("freq_weight", o.freq_weight);
    reader.Real("recency_weight", o.recency_weight);
    reader.Real("decay", o.decay);
    policy = std::make_unique<RegretAwarePolicy>(o);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown policy '", std::string(name),
                                                   "'; expected one of ",
                                                   absl::StrJoin(PlacementPolicyNames(), ", ")));
  }
  if (absl::Status s = reader.Finish(); !s.ok()) return s;
  return policy;
}

}  // namespace kvtier::policy
