#include "server/repair_pipeline.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "absl/strings/str_cat.h"

namespace kvtier::server {
namespace {

scorer::KeyType KeyTypeOf(storage::DType dtype) {
  switch (dtype) {
    case storage::DType::kFloat16:
      return scorer::KeyType::kFloat16;
    case storage::DType::kBFloat16:
      return scorer::KeyType::kBFloat16;
    default:
      return scorer::KeyType::kFloat32;
  }
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::StatusOr<SelectionOutcome> RepairPipeline::Select(const storage::RowStore& store,
                                                        const storage::Geometry& geometry,
                                                        const RepairParams& params,
                                                        const DecodedSignal* signal,
                                                        std::function<bool()> should_stop) const {
  SelectionOutcome out;
  const storage::ScoreIndexView view = store.View();
  const bool score = params.selector == scorer::SelectorKind::kRepairKv;

  std::vector<double> slot_scores;
  auto start = std::chrono::steady_clock::now();
  if (score) {
    if (signal == nullptr) return absl::InvalidArgumentError("signal: required");
    std::vector<scorer::KeyBlock> blocks;
    blocks.reserve(view.blocks.size());
    for (const auto& b : view.blocks) {
      blocks.push_back({b.keys, b.rows, b.candidate});
    }
    scorer::ScoreRequest request;
    request.shape = {static_cast<int32_t>(geometry.scoring_layers.size()),
                     geometry.num_q_heads,
                     geometry.num_kv_heads,
                     geometry.head_dim,
                     signal->num_tokens,
                     KeyTypeOf(geometry.dtype)};
    request.block_capacity = view.block_capacity;
    request.blocks = blocks;
    request.queries = signal->queries;
    request.lse_active = signal->lse_active;
    request.should_stop = std::move(should_stop);
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
  scorer::CandidateSet candidates{positions, scores, importance};
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
