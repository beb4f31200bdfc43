// Reassembles the payload chunks of a Repair or Promote stream into contiguous
// [layer][row][kv_head][head_dim] arrays, checking that the chunks are consistent with the
// announced rows, chunk count and byte count.
#ifndef KVTIER_CLIENT_SRC_PAYLOAD_ASSEMBLER_H_
#define KVTIER_CLIENT_SRC_PAYLOAD_ASSEMBLER_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "kvtier/client.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier::client_internal {

// Not thread-safe. Every error is INTERNAL (the server broke the stream protocol).
class PayloadAssembler {
 public:
  // `out->positions` must hold the row order announced by the summary; the assembler sizes
  // out->keys/values for it. `expected_chunks`/`expected_bytes` are the summary's
  // payload_chunks and payload_bytes. `out` is borrowed.
  PayloadAssembler(const RowGeometry& geometry, int32_t expected_chunks, uint64_t expected_bytes,
                   RowPayload* out);

  // INTERNAL when `positions` of the summary repeat a position or the announced byte count
  // does not match the rows (called once, before Add).
  absl::Status Start();

  // Places one chunk. INTERNAL when its positions are not a contiguous run of the announced
  // order, its layer range is outside the geometry, its byte sizes do not match, or it
  // repeats a row-layer already received.
  absl::Status Add(const v1::PayloadChunk& chunk);

  // INTERNAL unless every row-layer arrived exactly once in the announced number of chunks.
  absl::Status Finish() const;

 private:
  const RowGeometry geometry_;
  const int32_t expected_chunks_;
  const uint64_t expected_bytes_;
  RowPayload* const out_;
  absl::flat_hash_map<int64_t, size_t> index_;  // position -> row in out_->positions
  std::vector<bool> seen_;                      // [layer][row]
  int32_t chunks_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace kvtier::client_internal

#endif  // KVTIER_CLIENT_SRC_PAYLOAD_ASSEMBLER_H_
