// RowStore: the rows of one session, as segments whose heads (score index and slot
// metadata) stay in host RAM and whose payloads move between host RAM and RocksDB under
// the tier manager (DESIGN.md §3, docs/STORAGE.md). With a database and durability wal or
// sync, every change is written through to RocksDB before the call returns, so an
// acknowledged change survives a crash; RowStore::Recover rebuilds the store from it.
#ifndef KVTIER_STORAGE_ROW_STORE_H_
#define KVTIER_STORAGE_ROW_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu/scorer.h"
#include "storage/geometry.h"
#include "storage/kv_db.h"
#include "storage/quant/codec.h"
#include "storage/tier.h"
#include "storage/tier_manager.h"

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
  absl::Status persisted;  // OK unless writing the release to disk failed
};

// The scorer's element type for keys of `dtype` (a validated session dtype).
scorer::KeyType ScorerKeyType(DType dtype);

// Read-only view of the score index for the scorer. Block b covers slots
// [b * block_capacity, (b + 1) * block_capacity) of the store. Valid until the next
// mutating call on the store.
struct ScoreIndexView {
  int32_t block_capacity = 0;
  struct Block {
    // [scoring layer][kv_head][head_dim][block_capacity] of the session dtype.
    const void* keys = nullptr;
    // Sketches of those keys (gpu/sketch.h): codes and scales.
    const uint8_t* sketch_codes = nullptr;
    const float* sketch_scales = nullptr;
    int32_t rows = 0;                    // slots in use
    const uint8_t* candidate = nullptr;  // [rows] 1 = complete and not promoted
    const int64_t* positions = nullptr;  // [rows]; position of each slot (-1 when free)
    const float* importance = nullptr;   // [rows]; 0 when the engine sent none
  };
  std::vector<Block> blocks;
  // The view slot (block index * block_capacity + row) holding `position`, or -1 when no
  // slot holds it. Valid as long as the blocks are; O(1).
  std::function<int64_t(int64_t position)> slot_of;
};

// Counters of one store.
struct RowCounts {
  int64_t stored = 0;     // rows with at least one layer
  int64_t complete = 0;   // rows with every layer
  int64_t candidate = 0;  // complete and not promoted
  int64_t promoted = 0;   // complete and promoted
};

// Where a store lives. Either `host` alone (host RAM only, nothing persisted: unit
// tests), or `tiers` (the daemon's tier manager; its host budget is used).
struct StoreContext {
  TierBudget* host = nullptr;
  TierManager* tiers = nullptr;  // not owned; outlives the store
  std::string tenant;
  std::string session_id;
  int32_t segment_rows = 256;  // slots per segment, rounded up to a multiple of 16
  // Distinguishes this session from an earlier one with the same id: segment keys live
  // under SessionStorageName(session_id, incarnation), so records a dropped session's
  // in-flight demotion writes late can never mix with a re-opened session's.
  uint64_t incarnation = 0;
};

// A demotion in three steps, so that the disk write happens without the owner's lock:
// PrepareDemotion (lock held) snapshots the segment, Write (no lock) stores it,
// FinishDemotion (lock held) frees the payload if nothing changed meanwhile.
struct DemotionPlan {
  uint32_t segment = 0;
  uint64_t payload_version = 0;
  uint64_t patch_bytes = 0;  // patch bytes on disk that the base replaces
  uint64_t base_bytes = 0;   // size of the new base (0: nothing to write)
  KvDb* db = nullptr;
  KvBatch batch;  // empty when the payload is already on disk
  absl::Status Write() { return db == nullptr ? absl::OkStatus() : db->Write(batch); }
};

// What a BeginPause staged.
struct StageResult {
  int64_t segments_loaded = 0;
  uint64_t bytes_loaded = 0;
  int64_t segments_resident = 0;  // already in host RAM
  int64_t segments_left = 0;      // left on disk: host RAM has no room under its watermark
};

// Not thread-safe: the owning session serializes calls (the server holds its lock).
class RowStore {
 public:
  // `geometry` must be validated and normalized.
  static std::unique_ptr<RowStore> Create(const Geometry& geometry, StoreContext context);
  // Compatibility: host RAM only.
  static std::unique_ptr<RowStore> Create(const Geometry& geometry, TierBudget* budget,
                                          int32_t segment_rows = 256) {
    return Create(geometry, StoreContext{budget, nullptr, "", "", segment_rows});
  }
  // Rebuilds a store from what `context.tiers`'s database holds for the session: each
  // segment's base and the patches after it, with the score index rebuilt from the stored
  // keys. Segments that fail their checks are skipped and counted in `data_loss`. Payloads
  // that do not fit host RAM stay on disk.
  static absl::StatusOr<std::unique_ptr<RowStore>> Recover(const Geometry& geometry,
                                                           StoreContext context,
                                                           int64_t* data_loss);
  virtual ~RowStore() = default;  // gives every byte back to the budgets (the disk keeps them)

  // Writes the session record (durability wal or sync) so that Recover finds the session.
  virtual absl::Status PersistSession(absl::string_view record) = 0;
  // Deletes everything the session has on disk and gives back every budget and quota byte
  // (release or expiry, as opposed to a shutdown).
  virtual absl::Status Drop() = 0;

  // Lets the tier manager demote this store's segments through `client`.
  virtual void Bind(std::weak_ptr<TierClient> client) = 0;

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
  // Bytes of one full segment (head and payload).
  virtual uint64_t segment_bytes() const = 0;
  // Segments, and those whose payload is on disk only.
  virtual int64_t segments() const = 0;
  virtual int64_t segments_on_disk() const = 0;
  // Payload bytes on disk only (what Stage would load), and the owner id under which the
  // tier manager knows this store's segments (0 without a tier manager).
  virtual uint64_t demoted_payload_bytes() const = 0;
  virtual uint32_t tier_owner() const = 0;

  // NOT_FOUND naming positions[i] if a position is not stored; FAILED_PRECONDITION if a
  // row is not complete. On error nothing changes.
  virtual absl::Status CheckComplete(absl::Span<const int64_t> positions) const = 0;

  // Marks complete rows as promoted (no longer candidates). Same errors as CheckComplete.
  virtual absl::Status MarkPromoted(absl::Span<const int64_t> positions) = 0;

  // Copies K and V of `positions` (all complete) for layers [layer_begin, layer_end) into
  // keys/values laid out [layer][row][kv_head][head_dim] (row in the given order). Buffers
  // must hold exactly (layer_end - layer_begin) * positions.size() * LayerRowBytes().
  // Payloads on disk are loaded (and kept in host RAM when it has room). DATA_LOSS when a
  // stored segment fails its check: nothing of it is returned.
  virtual absl::Status Gather(absl::Span<const int64_t> positions, int32_t layer_begin,
                              int32_t layer_end, absl::Span<std::byte> keys,
                              absl::Span<std::byte> values) = 0;

  // Drops the rows that are stored among `positions`; others are ignored. The result's
  // status is not OK only when the release could not be written to disk (the rows are
  // released in memory all the same).
  virtual ReleaseResult Release(absl::Span<const int64_t> positions) = 0;

  // ---- Tier movement (called by the owner on behalf of the tier manager) ----
  // FAILED_PRECONDITION when the segment is not resident, is already moving or there is
  // no database; RESOURCE_EXHAUSTED when the disk tier cannot hold it.
  virtual absl::StatusOr<DemotionPlan> PrepareDemotion(uint32_t segment) = 0;
  // Ends a demotion whose Write returned `written`; returns the host bytes freed.
  virtual uint64_t FinishDemotion(DemotionPlan& plan, const absl::Status& written) = 0;
  // Loads the payload of a demoted segment if host RAM has room under the high watermark.
  virtual absl::Status Prefetch(uint32_t segment) = 0;
  // BeginPause: loads the session's demoted payloads while they fit under the high
  // watermark, so that the coming Repair and its payload read host RAM only.
  virtual absl::StatusOr<StageResult> Stage() = 0;
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_ROW_STORE_H_
