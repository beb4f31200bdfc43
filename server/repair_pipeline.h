// The repair pipeline (DESIGN.md §1): score every candidate row, rank and pack bursts, and
// gather the chosen rows' payload into wire-sized chunks.
#ifndef KVTIER_SERVER_REPAIR_PIPELINE_H_
#define KVTIER_SERVER_REPAIR_PIPELINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu/scorer.h"
#include "gpu/selection.h"
#include "kvtier/v1/kvtier.pb.h"
#include "server/validation.h"
#include "storage/geometry.h"
#include "storage/row_store.h"

namespace kvtier::server {

// Upper bound of keys + values bytes in one PayloadChunk (under gRPC's 4 MiB default).
inline constexpr size_t kMaxPayloadChunkBytes = 4u << 20;

struct SelectionOutcome {
  std::vector<int64_t> chosen;  // in the order taken
  std::vector<double> scores;   // a_i of each chosen row (kRepairKv only)
  int64_t candidates = 0;
  bool fast = false;     // scored by the fast mode
  int64_t rescored = 0;  // rows with the exact score (all candidates when !fast)
  double score_seconds = 0;
  double first_pass_seconds = 0;  // fast mode: sketch pass
  double rescore_seconds = 0;     // fast mode: exact scores of the rescored rows
  double select_seconds = 0;
};

struct PipelineOptions {
  // SCORING_MODE_AUTO scores exactly up to this many candidates, fast above.
  int64_t fast_min_candidates = 16384;
  // Fast mode: rows rescored first = max(fast_first_round, fast_oversample * the anchors
  // K needs at the request's burst width); the normalizer sample size.
  int64_t fast_first_round = 256;
  int64_t fast_oversample = 2;
  int32_t fast_sample_rows = 256;
};

// INVALID_ARGUMENT naming the kvtierd flag of the first option out of range (the counts
// are >= 1, fast_min_candidates >= 0, each with an upper bound far above any store).
absl::Status CheckPipelineOptions(const PipelineOptions& options);

// Thread-safe if the scorer is; holds no state of its own beyond the scorer pointer.
class RepairPipeline {
 public:
  explicit RepairPipeline(scorer::Scorer* scorer, PipelineOptions options = {})
      : scorer_(scorer), options_(options) {}

  std::string_view scorer_name() const { return scorer_->name(); }

  // Scores (kRepairKv) and selects from the store's candidates. `signal` is required for
  // kRepairKv. Does not mark anything promoted. DEADLINE_EXCEEDED when should_stop fires.
  // The caller holds the session lock.
  absl::StatusOr<SelectionOutcome> Select(const storage::RowStore& store,
                                          const storage::Geometry& geometry,
                                          const RepairParams& params, const DecodedSignal* signal,
                                          std::function<bool()> should_stop) const;

  const PipelineOptions& options() const { return options_; }

 private:
  // The fast mode over the store's `candidates` candidate rows: sketch pass, rescoring
  // rounds until the packer has K rows. Sets *too_many when more than a quarter of the
  // candidates would need rescoring (the caller then scores exactly, in place, instead of
  // copying most of the index).
  absl::Status SelectFast(const storage::ScoreIndexView& view, const scorer::ScoreRequest& request,
                          const RepairParams& params, int64_t candidates, SelectionOutcome* out,
                          bool* too_many) const;

  scorer::Scorer* scorer_;
  PipelineOptions options_;
};

// One payload chunk: rows [row_begin, row_end) of the returned positions, layers
// [layer_begin, layer_end).
struct PayloadSlice {
  size_t row_begin = 0;
  size_t row_end = 0;
  int32_t layer_begin = 0;
  int32_t layer_end = 0;
};

// Splits the payload of `rows` complete rows into chunks of at most max_chunk_bytes of
// keys + values: runs of whole rows when a row fits, else one row split by layer ranges.
std::vector<PayloadSlice> PlanPayload(size_t rows, const storage::Geometry& geometry,
                                      size_t max_chunk_bytes = kMaxPayloadChunkBytes);

// Bytes of keys + values of `slice`.
uint64_t SliceBytes(const PayloadSlice& slice, const storage::Geometry& geometry);

// Copies K and V of the slice's rows of `positions` into `chunk`, reusing its buffers (so a
// chunk message reused across slices allocates once). NOT_FOUND / FAILED_PRECONDITION when
// a row is no longer stored and complete, DATA_LOSS when a stored segment fails its check.
// The caller holds the session lock.
absl::Status GatherSlice(storage::RowStore& store, const storage::Geometry& geometry,
                         absl::Span<const int64_t> positions, const PayloadSlice& slice,
                         v1::PayloadChunk* chunk);

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_REPAIR_PIPELINE_H_
