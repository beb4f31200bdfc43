#include "client/src/offload_chunker.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvtier::client_internal {

absl::Status ValidateBatch(const RowGeometry& geometry, const OffloadBatch& batch) {
  if (geometry.num_layers <= 0 || geometry.num_kv_heads <= 0 || geometry.head_dim <= 0 ||
      geometry.dtype_bytes <= 0) {
    return absl::InvalidArgumentError("geometry: every dimension must be positive");
  }
  if (batch.layer_begin < 0 || batch.layer_end > geometry.num_layers ||
      batch.layer_begin >= batch.layer_end) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer_begin/layer_end: [", batch.layer_begin, ", ", batch.layer_end,
                     ") is not a non-empty range inside [0, ", geometry.num_layers, ")"));
  }
  if (batch.positions.empty()) return absl::InvalidArgumentError("positions: empty");
  const size_t expected = static_cast<size_t>(batch.layer_end - batch.layer_begin) *
                          batch.positions.size() * geometry.LayerRowBytes();
  if (batch.keys.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("keys: ", batch.keys.size(), " bytes, expected ", expected));
  }
  const size_t expected_values = geometry.index_only ? 0 : expected;
  if (batch.values.size() != expected_values) {
    return absl::InvalidArgumentError(
        absl::StrCat("values: ", batch.values.size(), " bytes, expected ", expected_values,
                     geometry.index_only ? " (index-only session)" : ""));
  }
  if (!batch.importance.empty() && batch.importance.size() != batch.positions.size()) {
    return absl::InvalidArgumentError(absl::StrCat("importance: ", batch.importance.size(),
                                                   " entries for ", batch.positions.size(),
                                                   " positions"));
  }
  return absl::OkStatus();
}

OffloadChunker::OffloadChunker(const std::string& session_id, const RowGeometry& geometry,
                               const OffloadBatch& batch, size_t max_chunk_bytes)
    : session_id_(session_id),
      layer_row_bytes_(geometry.LayerRowBytes()),
      batch_(batch),
      layer_(batch.layer_begin),
      row_(0) {
  const int32_t num_layers = batch.layer_end - batch.layer_begin;
  // Keys + values of one row-layer (keys only in an index-only session).
  const size_t kv_layer_row = (batch.values.empty() ? 1 : 2) * layer_row_bytes_;
  const size_t row_bytes = kv_layer_row * static_cast<size_t>(num_layers);
  if (row_bytes <= max_chunk_bytes) {
    layers_per_chunk_ = num_layers;
    rows_per_chunk_ = max_chunk_bytes / row_bytes;
  } else {
    layers_per_chunk_ = static_cast<int32_t>(std::max<size_t>(1, max_chunk_bytes / kv_layer_row));
    rows_per_chunk_ = std::max<size_t>(
        1, max_chunk_bytes / (kv_layer_row * static_cast<size_t>(layers_per_chunk_)));
  }
}

bool OffloadChunker::Next(v1::OffloadChunk* chunk) {
  const size_t num_rows = batch_.positions.size();
  if (layer_ >= batch_.layer_end) return false;
  const int32_t layer_end = std::min(batch_.layer_end, layer_ + layers_per_chunk_);
  const size_t row_end = std::min(num_rows, row_ + rows_per_chunk_);
  const size_t rows = row_end - row_;

  chunk->Clear();
  chunk->set_session_id(session_id_);
  chunk->mutable_positions()->Add(batch_.positions.begin() + row_,
                                  batch_.positions.begin() + row_end);
  chunk->set_layer_begin(layer_);
  chunk->set_layer_end(layer_end);
  if (!batch_.importance.empty()) {
    chunk->mutable_importance()->Add(batch_.importance.begin() + row_,
                                     batch_.importance.begin() + row_end);
  }
  // The batch is [layer][row][...]: each layer of the chunk is one contiguous run of rows.
  const size_t run = rows * layer_row_bytes_;
  std::string* keys = chunk->mutable_keys();
  std::string* values = chunk->mutable_values();
  keys->resize(run * static_cast<size_t>(layer_end - layer_));
  values->resize(batch_.values.empty() ? 0 : keys->size());
  for (int32_t l = layer_; l < layer_end; ++l) {
    const size_t src =
        (static_cast<size_t>(l - batch_.layer_begin) * num_rows + row_) * layer_row_bytes_;
    const size_t dst = static_cast<size_t>(l - layer_) * run;
    std::memcpy(keys->data() + dst, batch_.keys.data() + src, run);
    if (!batch_.values.empty()) std::memcpy(values->data() + dst, batch_.values.data() + src, run);
  }

  row_ = row_end;
  if (row_ == num_rows) {
    row_ = 0;
    layer_ = layer_end;
  }
  return true;
}

}  // namespace kvtier::client_internal
