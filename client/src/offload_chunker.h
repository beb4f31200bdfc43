// Splits an OffloadBatch into OffloadChunk messages under a byte limit.
#ifndef KVTIER_CLIENT_SRC_OFFLOAD_CHUNKER_H_
#define KVTIER_CLIENT_SRC_OFFLOAD_CHUNKER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kvtier/client.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier::client_internal {

// Checks that `batch` matches `geometry`: layer range inside [0, num_layers) and not empty,
// at least one position, keys and values of exactly the right size, importance empty or one
// per position. INVALID_ARGUMENT naming the field otherwise.
absl::Status ValidateBatch(const RowGeometry& geometry, const OffloadBatch& batch);

// Produces the chunks of one batch in a fixed order. Each chunk carries at most
// `max_chunk_bytes` of keys + values, except when a single layer of a single row is already
// larger (then that row-layer goes alone). Rows are split first; only when one row's layers
// do not fit is the layer range split too.
//
// Not thread-safe; the batch is borrowed and must outlive the chunker. Precondition:
// ValidateBatch(geometry, batch) is OK.
class OffloadChunker {
 public:
  OffloadChunker(const std::string& session_id, const RowGeometry& geometry,
                 const OffloadBatch& batch, size_t max_chunk_bytes);

  // Fills `chunk` with the next chunk; false when every chunk was produced.
  bool Next(v1::OffloadChunk* chunk);

  // Restarts from the first chunk (to resend the stream).
  void Rewind() {
    layer_ = batch_.layer_begin;
    row_ = 0;
  }

  int32_t layers_per_chunk() const { return layers_per_chunk_; }
  size_t rows_per_chunk() const { return rows_per_chunk_; }

 private:
  const std::string session_id_;
  const size_t layer_row_bytes_;
  const OffloadBatch batch_;
  int32_t layers_per_chunk_;
  size_t rows_per_chunk_;
  int32_t layer_;  // first layer of the next chunk
  size_t row_;     // first row of the next chunk
};

}  // namespace kvtier::client_internal

#endif  // KVTIER_CLIENT_SRC_OFFLOAD_CHUNKER_H_
