// Segment: up to `rows` slots of one session (DESIGN.md §3), the unit a tier holds and the
// tier manager moves. Two allocations: the head (the segment's block of the score index and
// the per-slot metadata), which stays in host RAM where the scorer runs, and the payload
// (the slots' K/V), which the tier manager demotes to RocksDB and loads back on access.
// The bytes charged to the host tier are exactly the bytes allocated. Internal to storage/.
#ifndef KVTIER_STORAGE_SEGMENT_H_
#define KVTIER_STORAGE_SEGMENT_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "storage/geometry.h"

namespace kvtier::storage {

// Where each section of a segment lives in its allocation. Computed once per session.
struct SegmentLayout {
  // `geometry` must be validated and normalized; `rows` > 0 (a multiple of 16 for the scorer).
  static SegmentLayout For(const Geometry& geometry, int32_t rows);

  int32_t rows = 0;                // slots per segment
  int32_t num_layers = 0;          //
  int32_t num_scoring_layers = 0;  //
  int32_t complete_layers = 0;     // layers a slot needs to be complete (Geometry::CompleteLayers)
  int32_t mask_words = 0;          // uint64_t words of one slot's layer bitset
  size_t elem_bytes = 0;           // bytes of one element of the session dtype
  size_t layer_row_bytes = 0;      // K (or V) of one row and one layer
  size_t row_bytes = 0;            // K and V of one row, every layer

  // The payload allocation: [rows] x (K [layer][kv][d], then V [layer][kv][d]).
  size_t payload_bytes = 0;  // a multiple of kAlignment; 0 in an index-only session

  // Byte offsets of the head's sections, each aligned to kAlignment:
  size_t index = 0;  // [scoring layer][kv][d][rows]: keys of the scoring layers
  // Key sketches of the scoring layers for the fast mode (gpu/sketch.h): uint8 codes
  // [scoring layer][kv][head_dim / 4 rounded up][rows][4] and float scales
  // [scoring layer][kv][rows].
  size_t sketch_codes = 0;
  size_t sketch_scales = 0;
  int32_t kv_heads = 0;       // of the geometry, for the sketch sections
  int32_t sketch_groups = 0;  // head_dim / 4 rounded up
  size_t positions = 0;       // int64_t [rows]; -1 when the slot is free
  size_t importance = 0;      // float [rows]
  size_t layer_mask = 0;      // uint64_t [rows][mask_words]; bit l set when layer l arrived
  size_t layer_count = 0;     // uint16_t [rows]; bits set in the slot's layer_mask
  size_t candidate = 0;       // uint8_t [rows]; 1 = complete and not promoted
  size_t promoted = 0;        // uint8_t [rows]
  size_t free_list = 0;       // int32_t [rows]; stack of released slots below the high-water mark
  size_t head_bytes = 0;      // the head allocation, a multiple of kAlignment
  size_t total_bytes = 0;     // head_bytes + payload_bytes

  static constexpr size_t kAlignment = 64;
};

// Where a segment's payload is and how it relates to its copy on disk. Kept by RowStore.
struct SegmentTierState {
  uint64_t page_key = 0;              // the segment's key in the tier manager (0: not tracked)
  uint64_t payload_version = 0;       // bumped by every change of the payload
  bool has_base = false;              // a base image of the segment is on disk
  uint64_t base_payload_version = 0;  // payload_version captured in that base
  uint64_t disk_bytes = 0;            // bytes of the base and patches on disk, charged to the tier
  bool demoting = false;              // a demotion copy is in flight: do not free the segment
};

// The slots of one segment. Not thread-safe: owned and serialized by one RowStore.
class Segment {
 public:
  // Allocates a segment with every slot free and its payload resident; nullptr when the
  // host has no memory.
  static std::unique_ptr<Segment> Allocate(const SegmentLayout& layout);

  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const SegmentLayout& layout() const { return layout_; }
  // Head bytes, plus payload bytes while the payload is resident.
  uint64_t allocated_bytes() const {
    return layout_.head_bytes + (resident() ? layout_.payload_bytes : 0);
  }

  // Whether the payload is in host RAM (always, for an index-only segment, which has none).
  // Payload accessors require it and a payload.
  bool resident() const { return payload_ != nullptr || layout_.payload_bytes == 0; }
  // Frees the payload (its bytes are on disk). Precondition: resident().
  void DropPayload() { payload_.reset(); }
  // Allocates an (uninitialized) payload; false when the host has no memory.
  bool AllocatePayload();
  std::byte* payload() { return payload_.get(); }
  const std::byte* payload() const { return payload_.get(); }

  SegmentTierState tier;
  int32_t live() const { return live_; }              // slots holding a position
  int32_t high_water() const { return high_water_; }  // slots [0, high_water) were ever used
  bool full() const { return live_ == layout_.rows; }

  // Takes a free slot (a released one first, else the next never-used one) for `position`
  // with no layer arrived, importance 0, not promoted. Precondition: !full().
  int32_t AcquireSlot(int64_t position);
  // Clears the slot's metadata and makes it free. Precondition: the slot is in use.
  void ReleaseSlot(int32_t slot);

  // Recovery: puts `position` in `slot` without the free list (see RebuildFreeList).
  void RestoreSlot(int32_t slot, int64_t position);
  // Recovery: clears the slot's metadata without the free list.
  void ClearSlot(int32_t slot);
  // Recovery: recomputes live(), high_water() and the free list from the positions.
  void RebuildFreeList();
  // Recovery: the high-water mark of the restored segment.
  void set_high_water(int32_t high_water) { high_water_ = high_water; }

  // Marks layers [begin, end) of `slot` as arrived; returns how many had not arrived before.
  int32_t RecordLayers(int32_t slot, int32_t begin, int32_t end);
  bool complete(int32_t slot) const { return layer_count()[slot] == layout_.complete_layers; }

  // K (or V) of one slot and one layer: layer_row_bytes bytes.
  std::byte* keys(int32_t slot, int32_t layer) { return Payload(slot, layer, 0); }
  std::byte* values(int32_t slot, int32_t layer) { return Payload(slot, layer, 1); }
  const std::byte* keys(int32_t slot, int32_t layer) const { return Payload(slot, layer, 0); }
  const std::byte* values(int32_t slot, int32_t layer) const { return Payload(slot, layer, 1); }

  // The segment's block of the score index: [scoring layer][kv][d][rows].
  std::byte* index() { return base() + layout_.index; }
  const std::byte* index() const { return base() + layout_.index; }

  uint8_t* sketch_codes() { return Array<uint8_t>(layout_.sketch_codes); }
  const uint8_t* sketch_codes() const { return Array<uint8_t>(layout_.sketch_codes); }
  float* sketch_scales() { return Array<float>(layout_.sketch_scales); }
  const float* sketch_scales() const { return Array<float>(layout_.sketch_scales); }

  int64_t* positions() { return Array<int64_t>(layout_.positions); }
  const int64_t* positions() const { return Array<int64_t>(layout_.positions); }
  float* importance() { return Array<float>(layout_.importance); }
  const float* importance() const { return Array<float>(layout_.importance); }
  uint8_t* candidate() { return Array<uint8_t>(layout_.candidate); }
  const uint8_t* candidate() const { return Array<uint8_t>(layout_.candidate); }
  uint8_t* promoted() { return Array<uint8_t>(layout_.promoted); }
  const uint8_t* promoted() const { return Array<uint8_t>(layout_.promoted); }
  const uint16_t* layer_count() const { return Array<uint16_t>(layout_.layer_count); }
  uint16_t* layer_count() { return Array<uint16_t>(layout_.layer_count); }
  uint64_t* layer_mask() { return Array<uint64_t>(layout_.layer_mask); }
  const uint64_t* layer_mask() const { return Array<uint64_t>(layout_.layer_mask); }

 private:
  struct FreeDeleter {
    void operator()(std::byte* p) const { std::free(p); }
  };

  using Memory = std::unique_ptr<std::byte, FreeDeleter>;
  Segment(const SegmentLayout& layout, Memory head, Memory payload);

  std::byte* base() { return head_.get(); }
  const std::byte* base() const { return head_.get(); }
  template <typename T>
  T* Array(size_t offset) {
    return reinterpret_cast<T*>(base() + offset);
  }
  template <typename T>
  const T* Array(size_t offset) const {
    return reinterpret_cast<const T*>(base() + offset);
  }
  std::byte* Payload(int32_t slot, int32_t layer, int kv) const {
    return payload_.get() + static_cast<size_t>(slot) * layout_.row_bytes +
           (static_cast<size_t>(kv) * static_cast<size_t>(layout_.num_layers) +
            static_cast<size_t>(layer)) *
               layout_.layer_row_bytes;
  }

  const SegmentLayout layout_;
  Memory head_;
  Memory payload_;
  int32_t live_ = 0;
  int32_t high_water_ = 0;
  int32_t free_count_ = 0;  // entries on the free list
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_SEGMENT_H_
