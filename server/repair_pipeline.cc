#include "server/repair_pipeline.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gpu/fast_select.h"

namespace kvtier::server {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::Status CheckPipelineOptions(const PipelineOptions& options) {
  const struct {
    const char* flag;
    int64_t value;
    int64_t min;
    int64_t max;  // keeps oversample x anchors far from overflow
  } checks[] = {{"--fast_min_candidates", options.fast_min_candidates, 0, int64_t{1} << 40},
                {"--fast_first_round", options.fast_first_round, 1, int64_t{1} << 32},
                {"--fast_oversample", options.fast_oversample, 1, int64_t{1} << 16},
                {"--fast_sample_rows", options.fast_sample_rows, 1, int64_t{1} << 24}};
  for (const auto& c : checks) {
    if (c.value < c.min || c.value > c.max) {
      return absl::InvalidArgumentError(
          absl::StrCat(c.flag, " must be in [", c.min, ", ", c.max, "], got ", c.value));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SelectionOutcome> RepairPipeline::Select(const storage::RowStore& store,
                                                        const storage::Geometry& geometry,
                                                        const RepairParams& params,
                                                        const DecodedSignal* signal,
                                                        std::function<bool()> should_stop) const {
  SelectionOutcome out;
  const storage::ScoreIndexView view = store.View();
  const bool score = params.selector == scorer::SelectorKind::kRepairKv;
  if (score && signal == nullptr) return absl::InvalidArgumentError("signal: required");

  std::vector<scorer::KeyBlock> blocks;
  scorer::ScoreRequest request;
  if (score) {
    blocks.reserve(view.blocks.size());
    for (const auto& b : view.blocks) {
      blocks.push_back({b.keys, b.rows, b.candidate, b.sketch_codes, b.sketch_scales});
    }
    request.shape = {static_cast<int32_t>(geometry.scoring_layers.size()),
                     geometry.num_q_heads,
                     geometry.num_kv_heads,
                     geometry.head_dim,
                     signal->num_tokens,
                     storage::ScorerKeyType(geometry.dtype)};
    request.block_capacity = view.block_capacity;
    request.blocks = blocks;
    request.queries = signal->queries;
    request.lse_active = signal->lse_active;
    request.should_stop = std::move(should_stop);
    const int64_t candidates = store.counts().candidate;
    out.fast = params.scoring == ScoringMode::kFast ||
               (params.scoring == ScoringMode::kAuto && candidates > options_.fast_min_candidates);
  }
  if (out.fast) {
    bool too_many = false;
    if (absl::Status s =
            SelectFast(view, request, params, store.counts().candidate, &out, &too_many);
        !s.ok()) {
      return s;
    }
    if (!too_many) return out;
    out = SelectionOutcome();  // K needs most of the rows: the exact mode costs less
  }

  std::vector<double> slot_scores;
  auto start = std::chrono::steady_clock::now();
  if (score) {
    slot_scores.resize(view.blocks.size() * static_cast<size_t>(view.block_capacity));
    if (absl::Status s = scorer_->Score(request, absl::MakeSpan(slot_scores)); !s.ok()) {
      return s;
    }
  }
  out.score_seconds = score ? SecondsSince(start) : 0.0;

  start = std::chrono::steady_clock::now();
  std::vector<int64_t> positions;
  std::vector<double> scores;
  std::vector<float> importance;
  for (size_t b = 0; b < view.blocks.size(); ++b) {
    const auto& block = view.blocks[b];
    for (int32_t r = 0; r < block.rows; ++r) {
      if (!block.candidate[r]) continue;
      positions.push_back(block.positions[r]);
      importance.push_back(block.importance[r]);
      if (score) scores.push_back(slot_scores[b * view.block_capacity + r]);
    }
  }
  out.candidates = static_cast<int64_t>(positions.size());
  out.rescored = score ? out.candidates : 0;
  scorer::CandidateSet candidates{positions, scores, importance, {}};
  absl::StatusOr<scorer::Selection> selection =
      scorer::SelectPositions(candidates, params.selector, params.pack);
  if (!selection.ok()) return selection.status();
  out.chosen = std::move(selection->chosen);
  if (score) {
    out.scores.reserve(out.chosen.size());
    for (int32_t index : selection->chosen_index) out.scores.push_back(scores[index]);
  }
  out.select_seconds = SecondsSince(start);
  return out;
}

absl::Status RepairPipeline::SelectFast(const storage::ScoreIndexView& view,
                                        const scorer::ScoreRequest& request,
                                        const RepairParams& params, int64_t candidates,
                                        SelectionOutcome* out, bool* too_many) const {
  auto start = std::chrono::steady_clock::now();
  const int64_t width = int64_t{params.pack.burst_left} + params.pack.burst_right + 1;
  scorer::FastOptions fast_options;
  fast_options.first_round =
      std::max(options_.fast_first_round,
               options_.fast_oversample * ((params.pack.budget + width - 1) / width));
  fast_options.sample_rows = options_.fast_sample_rows;
  if (fast_options.first_round > candidates / 4) {
    *too_many = true;
    return absl::OkStatus();
  }
  scorer::FastScoring fast(scorer_, &request, fast_options);
  if (absl::Status s = fast.Start(); !s.ok()) return s;
  out->score_seconds = SecondsSince(start);
  double select_seconds = 0;

  // Only rescored rows may be anchors, and any candidate may fill a burst. The packer is
  // given the rescored rows and the candidates within burst reach of one, found through the
  // store's position map: the same selection as from every candidate, without building and
  // sorting arrays of all N rows (100 ms at 4M).
  start = std::chrono::steady_clock::now();
  const int64_t cap = view.block_capacity;
  std::vector<int64_t> positions;
  std::vector<float> importance;
  std::vector<double> scores;
  std::vector<uint8_t> anchors;
  // Positions looked up so far: index into the vectors above, or -1 when not a candidate.
  absl::flat_hash_map<int64_t, int32_t> index_of_position;
  auto add_slot = [&](int64_t slot) {
    const auto& block = view.blocks[static_cast<size_t>(slot / cap)];
    const int32_t row = static_cast<int32_t>(slot % cap);
    positions.push_back(block.positions[row]);
    importance.push_back(block.importance[row]);
    scores.push_back(-std::numeric_limits<double>::infinity());
    anchors.push_back(0);
    return static_cast<int32_t>(positions.size() - 1);
  };
  auto add_position = [&](int64_t position) {
    auto [it, inserted] = index_of_position.try_emplace(position, -1);
    if (!inserted) return it->second;
    const int64_t slot = view.slot_of(position);
    if (slot >= 0 && view.blocks[static_cast<size_t>(slot / cap)].candidate[slot % cap]) {
      it->second = add_slot(slot);
    }
    return it->second;
  };
  size_t applied = 0;  // rescored rows copied into scores / anchors
  select_seconds += SecondsSince(start);
  while (true) {
    start = std::chrono::steady_clock::now();
    for (; applied < fast.slots().size(); ++applied) {
      const int64_t slot = fast.slots()[applied];
      const int64_t x = view.blocks[static_cast<size_t>(slot / cap)].positions[slot % cap];
      const int32_t index = add_position(x);
      if (index < 0) continue;  // rescored rows are candidates; never taken otherwise
      scores[static_cast<size_t>(index)] = fast.scores()[applied];
      anchors[static_cast<size_t>(index)] = 1;
      const int64_t lo = x > std::numeric_limits<int64_t>::min() + params.pack.burst_left
                             ? x - params.pack.burst_left
                             : std::numeric_limits<int64_t>::min();
      const int64_t hi = x < std::numeric_limits<int64_t>::max() - params.pack.burst_right
                             ? x + params.pack.burst_right
                             : std::numeric_limits<int64_t>::max();
      for (int64_t p = lo;; ++p) {
        add_position(p);
        if (p == hi) break;
      }
    }
    scorer::CandidateSet candidates{positions, scores, importance, anchors};
    absl::StatusOr<scorer::Selection> selection =
        scorer::SelectPositions(candidates, params.selector, params.pack);
    if (!selection.ok()) return selection.status();
    select_seconds += SecondsSince(start);
    bool done = static_cast<int64_t>(selection->chosen.size()) >=
                    std::min<int64_t>(params.pack.budget, fast.candidates()) ||
                fast.all_rescored();
    if (!done) {
      // The packer ran out of rescored anchors: rescore twice as many rows (and stop if
      // none is left to rescore).
      start = std::chrono::steady_clock::now();
      const size_t before = fast.slots().size();
      if (2 * static_cast<int64_t>(before) > fast.candidates() / 4) {
        *too_many = true;
        return absl::OkStatus();
      }
      if (absl::Status s = fast.Extend(2 * static_cast<int64_t>(before)); !s.ok()) return s;
      out->score_seconds += SecondsSince(start);
      done = fast.slots().size() == before;
    }
    if (done) {
      out->chosen = std::move(selection->chosen);
      out->scores.reserve(out->chosen.size());
      // Rows that only fill a burst were never scored exactly: NaN, not a made-up number.
      for (int32_t index : selection->chosen_index) {
        out->scores.push_back(anchors[index] ? scores[index]
                                             : std::numeric_limits<double>::quiet_NaN());
      }
      break;
    }
  }
  out->candidates = fast.candidates();
  out->rescored = static_cast<int64_t>(fast.slots().size());
  out->first_pass_seconds = fast.first_pass_seconds();
  out->rescore_seconds = fast.rescore_seconds();
  out->select_seconds = select_seconds;
  return absl::OkStatus();
}

std::vector<PayloadSlice> PlanPayload(size_t rows, const storage::Geometry& geometry,
                                      size_t max_chunk_bytes) {
  std::vector<PayloadSlice> slices;
  const size_t layer_row = geometry.LayerRowBytes();  // K (or V) of one row, one layer
  const int32_t layers = geometry.num_layers;
  const size_t row_bytes = 2 * layer_row * static_cast<size_t>(layers);
  size_t rows_per_chunk = 1;
  int32_t layers_per_chunk = layers;
  if (row_bytes <= max_chunk_bytes) {
    rows_per_chunk = max_chunk_bytes / row_bytes;
  } else {
    layers_per_chunk =
        std::max<int32_t>(1, static_cast<int32_t>(max_chunk_bytes / (2 * layer_row)));
  }
  for (size_t begin = 0; begin < rows; begin += rows_per_chunk) {
    const size_t end = std::min(rows, begin + rows_per_chunk);
    for (int32_t l0 = 0; l0 < layers; l0 += layers_per_chunk) {
      slices.push_back({begin, end, l0, std::min(layers, l0 + layers_per_chunk)});
    }
  }
  return slices;
}

uint64_t SliceBytes(const PayloadSlice& slice, const storage::Geometry& geometry) {
  return 2 * geometry.LayerRowBytes() * (slice.row_end - slice.row_begin) *
         static_cast<uint64_t>(slice.layer_end - slice.layer_begin);
}

absl::Status GatherSlice(storage::RowStore& store, const storage::Geometry& geometry,
                         absl::Span<const int64_t> positions, const PayloadSlice& slice,
                         v1::PayloadChunk* chunk) {
  absl::Span<const int64_t> rows =
      positions.subspan(slice.row_begin, slice.row_end - slice.row_begin);
  chunk->mutable_positions()->Assign(rows.begin(), rows.end());
  chunk->set_layer_begin(slice.layer_begin);
  chunk->set_layer_end(slice.layer_end);
  const size_t bytes = SliceBytes(slice, geometry) / 2;
  std::string* keys = chunk->mutable_keys();
  std::string* values = chunk->mutable_values();
  keys->resize(bytes);  // no reallocation (nor zero fill) when the size is unchanged
  values->resize(bytes);
  return store.Gather(rows, slice.layer_begin, slice.layer_end,
                      absl::MakeSpan(reinterpret_cast<std::byte*>(keys->data()), bytes),
                      absl::MakeSpan(reinterpret_cast<std::byte*>(values->data()), bytes));
}

}  // namespace kvtier::server
