// The fast selection mode's two stages (docs/FAST_MODE.md): a first pass over the key
// sketches ranks every candidate by a proxy; the best few are scored exactly, with the
// softmax normalizer estimated from them plus a sample of the others. The caller (the
// repair pipeline) ranks and packs the rescored rows and asks for more when the packer
// runs out of anchors.
#ifndef KVTIER_GPU_FAST_SELECT_H_
#define KVTIER_GPU_FAST_SELECT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "gpu/scorer.h"

namespace kvtier::scorer {

struct FastOptions {
  int64_t first_round = 256;  // rows rescored by Start
  int32_t sample_rows = 256;  // other rows scored to estimate the normalizer
};

// One fast scoring of one request. Not thread-safe; the request (and what it points to)
// must outlive the object.
class FastScoring {
 public:
  FastScoring(Scorer* scorer, const ScoreRequest* request, const FastOptions& options)
      : scorer_(scorer), request_(request), options_(options) {}

  // First pass, normalizer estimate, and the exact score of the best first_round rows by
  // proxy (all candidates when there are not more than first_round + sample_rows: then
  // the normalizer is exact and so is every score).
  absl::Status Start();
  // Scores more rows, in proxy order, until `total` rows are rescored (or every
  // candidate is), with the normalizer fixed by Start.
  absl::Status Extend(int64_t total);

  // Rescored slots (b * block_capacity + r) and their scores, in the order rescored.
  absl::Span<const int64_t> slots() const { return slots_; }
  absl::Span<const double> scores() const { return scores_; }
  int64_t candidates() const { return candidates_; }
  bool all_rescored() const { return static_cast<int64_t>(slots_.size()) == candidates_; }
  double first_pass_seconds() const { return first_pass_seconds_; }
  double rescore_seconds() const { return rescore_seconds_; }
  // The first pass's proxy of every slot (-infinity for non-candidates).
  absl::Span<const float> proxy() const { return proxy_; }

 private:
  // The best `count` candidate slots by proxy not yet rescored, best first.
  std::vector<int64_t> NextByProxy(int64_t count) const;
  // Scores `slots` exactly (copying their keys into one block) with `lse_fixed` when
  // non-empty, else with lse_active_extra folded into the normalizer; writes the scores
  // and, when lse_out is non-empty, the normalizer used.
  absl::Status ScoreSlots(absl::Span<const int64_t> slots, absl::Span<const float> lse_active,
                          absl::Span<const double> lse_fixed, absl::Span<double> lse_out,
                          std::vector<double>* scores);

  Scorer* scorer_;
  const ScoreRequest* request_;
  FastOptions options_;
  std::vector<float> proxy_;
  std::vector<uint8_t> rescored_;  // [slots] 1 once rescored
  std::vector<int64_t> slots_;
  std::vector<double> scores_;
  std::vector<double> lse_;  // the normalizer fixed by Start
  int64_t candidates_ = 0;
  double first_pass_seconds_ = 0;
  double rescore_seconds_ = 0;
};

}  // namespace kvtier::scorer

#endif  // KVTIER_GPU_FAST_SELECT_H_
