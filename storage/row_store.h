// RowStore: the rows of one session, as segments in a tier plus the score index
// (DESIGN.md §3). This is the only storage type the server talks to.
#ifndef KVTIER_STORAGE_ROW_STORE_H_
#define KVTIER_STORAGE_ROW_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "storage/geometry.h"
#include "storage/tier.h"

namespace kvtier::storage {

// One Offload chunk, already validated for shape by the caller or not (Offload validates
// again and names the field on error).
struct OffloadChunk {
  absl::Span<const int64_t> positions;
  int32_t layer_begin = 0;  // [layer_begin, layer_end)
  int32_t layer_end = 0;
  // [layer_end - layer_begin][positions.size()][num_kv_heads][head_dim], session dtype.
  absl::Span<const std::byte> keys;
  absl::Span<const std::byte> values;
  absl::Span<const float> importance;  // empty or positions.size()
};

struct OffloadResult {
  int64_t rows_written = 0;    // positions in the chunk
  int64_t rows_completed = 0;  // rows that became complete with this chunk
  int64_t new_rows = 0;        // positions not stored before
  uint64_t bytes = 0;          // K+V bytes copied
};

struct ReleaseResult {
  int64_t rows_released = 0;
  uint64_t bytes_freed = 0;
};

// Read-only view of the score index for the scorer. Block b covers slots
// [b * block_capacity, (b + 1) * block_capacity) of the store. Valid until the next
// mutating call on the store.
struct ScoreIndexView {
  int32_t block_capacity = 0;
  struct Block {
    // [scoring layer][kv_head][head_dim][block_capacity] of the session dtype.
    const void* keys = nullptr;
    int32_t rows = 0;                    // slots in use
    const uint8_t* candidate = nullptr;  // [rows] 1 = complete and not promoted
    const int64_t* positions = nullptr;  // [rows]; position of each slot (-1 when free)
    const float* importance = nullptr;   // [rows]; 0 when the engine sent none
  };
  std::vector<Block> blocks;
};

// Counters of one store.
struct RowCounts {
  int64_t stored = 0;     // rows with at least one layer
  int64_t complete = 0;   // rows with every layer
  int64_t candidate = 0;  // complete and not promoted
  int64_t promoted = 0;   // complete and promoted
};

// Not thread-safe: the owning session serializes calls (the server holds its lock).
class RowStore {
 public:
  // `geometry` must be validated and normalized. `budget` (not owned, outlives the store)
  // is charged for every byte the store allocates (segments and score index).
  // segment_rows: slots per segment, a multiple of 16 (default 256).
  static std::unique_ptr<RowStore> Create(const Geometry& geometry, TierBudget* budget,
                                          int32_t segment_rows = 256);
  virtual ~RowStore() = default;  // gives every byte back to the budget

  // Stores one chunk atomically: on error nothing changes. Errors: INVALID_ARGUMENT
  // (positions negative or duplicated, byte sizes that do not match, importance size),
  // OUT_OF_RANGE (layer range), RESOURCE_EXHAUSTED (the budget cannot hold the new rows).
  // Re-offloading a stored position overwrites the layers sent (and its importance when
  // sent) and makes a promoted row a candidate again.
  virtual absl::StatusOr<OffloadResult> Offload(const OffloadChunk& chunk) = 0;

  virtual ScoreIndexView View() const = 0;
  virtual RowCounts counts() const = 0;
  // Host bytes charged to the budget by this store.
  virtual uint64_t bytes() const = 0;

  // NOT_FOUND naming positions[i] if a position is not stored; FAILED_PRECONDITION if a
  // row is not complete. On error nothing changes.
  virtual absl::Status CheckComplete(absl::Span<const int64_t> positions) const = 0;

  // Marks complete rows as promoted (no longer candidates). Same errors as CheckComplete.
  virtual absl::Status MarkPromoted(absl::Span<const int64_t> positions) = 0;

  // Copies K and V of `positions` (all complete) for layers [layer_begin, layer_end) into
  // keys/values laid out [layer][row][kv_head][head_dim] (row in the given order). Buffers
  // must hold exactly (layer_end - layer_begin) * positions.size() * LayerRowBytes().
  virtual absl::Status Gather(absl::Span<const int64_t> positions, int32_t layer_begin,
                              int32_t layer_end, absl::Span<std::byte> keys,
                              absl::Span<std::byte> values) const = 0;

  // Drops the rows that are stored among `positions`; others are ignored.
  virtual ReleaseResult Release(absl::Span<const int64_t> positions) = 0;
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_ROW_STORE_H_
