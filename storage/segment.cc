#include "storage/segment.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/memory/memory.h"
#include "gpu/sketch.h"

namespace kvtier::storage {
namespace {

size_t AlignUp(size_t n) {
  return (n + SegmentLayout::kAlignment - 1) / SegmentLayout::kAlignment *
         SegmentLayout::kAlignment;
}

std::byte* AlignedAlloc(size_t bytes) {
  // std::aligned_alloc wants a size that is a multiple of the alignment; callers pass one.
  return static_cast<std::byte*>(std::aligned_alloc(SegmentLayout::kAlignment, bytes));
}

}  // namespace

SegmentLayout SegmentLayout::For(const Geometry& geometry, int32_t rows) {
  SegmentLayout l;
  l.rows = rows;
  l.num_layers = geometry.num_layers;
  l.num_scoring_layers = static_cast<int32_t>(geometry.scoring_layers.size());
  l.complete_layers = geometry.CompleteLayers();
  l.mask_words = (geometry.num_layers + 63) / 64;
  l.elem_bytes = static_cast<size_t>(DTypeSize(geometry.dtype));
  l.layer_row_bytes = geometry.LayerRowBytes();
  l.row_bytes = geometry.RowBytes();

  const size_t n = static_cast<size_t>(rows);
  size_t offset = 0;
  auto section = [&offset](size_t bytes) {
    const size_t at = offset;
    offset = AlignUp(offset + bytes);
    return at;
  };
  l.payload_bytes = geometry.index_only ? 0 : AlignUp(std::max<size_t>(1, n * l.row_bytes));
  l.index = section(n * static_cast<size_t>(l.num_scoring_layers) * l.layer_row_bytes);
  l.kv_heads = geometry.num_kv_heads;
  l.sketch_groups = scorer::SketchGroups(geometry.head_dim);
  l.sketch_codes = section(scorer::SketchCodeBytes(l.num_scoring_layers, geometry.num_kv_heads,
                                                   geometry.head_dim, rows));
  l.sketch_scales = section(
      scorer::SketchScaleCount(l.num_scoring_layers, geometry.num_kv_heads, rows) * sizeof(float));
  l.positions = section(n * sizeof(int64_t));
  l.importance = section(n * sizeof(float));
  l.layer_mask = section(n * static_cast<size_t>(l.mask_words) * sizeof(uint64_t));
  l.layer_count = section(n * sizeof(uint16_t));
  l.candidate = section(n * sizeof(uint8_t));
  l.promoted = section(n * sizeof(uint8_t));
  l.free_list = section(n * sizeof(int32_t));
  l.head_bytes = offset;
  l.total_bytes = l.head_bytes + l.payload_bytes;
  return l;
}

std::unique_ptr<Segment> Segment::Allocate(const SegmentLayout& layout) {
  Memory head(AlignedAlloc(layout.head_bytes));
  Memory payload(layout.payload_bytes > 0 ? AlignedAlloc(layout.payload_bytes) : nullptr);
  if (head == nullptr || (payload == nullptr && layout.payload_bytes > 0)) return nullptr;
  // The payload is written before it is read (Gather needs complete rows), so it is left
  // uninitialized: zeroing it would touch every page of a segment up front. The score
  // index and the metadata are zeroed: the scorer streams whole blocks, free slots included.
  std::memset(head.get(), 0, layout.head_bytes);
  // Private constructor: the factory is the only way to get a segment with its memory.
  auto segment = absl::WrapUnique(new Segment(layout, std::move(head), std::move(payload)));
  int64_t* positions = segment->positions();
  for (int32_t s = 0; s < layout.rows; ++s) positions[s] = -1;
  return segment;
}

Segment::Segment(const SegmentLayout& layout, Memory head, Memory payload)
    : layout_(layout), head_(std::move(head)), payload_(std::move(payload)) {}

bool Segment::AllocatePayload() {
  payload_.reset(AlignedAlloc(layout_.payload_bytes));
  return payload_ != nullptr;
}

void Segment::RestoreSlot(int32_t slot, int64_t position) {
  positions()[slot] = position;
  high_water_ = std::max(high_water_, slot + 1);
}

void Segment::ClearSlot(int32_t slot) {
  // The slot's column of the score index goes too: a free slot scores as zeros, and the
  // layers of a later occupant that have not arrived never show the old row's keys.
  const size_t elems = static_cast<size_t>(layout_.num_scoring_layers) *
                       (layout_.layer_row_bytes / layout_.elem_bytes);
  const size_t rows = static_cast<size_t>(layout_.rows);
  std::byte* column = index() + static_cast<size_t>(slot) * layout_.elem_bytes;
  for (size_t e = 0; e < elems; ++e) {
    std::memset(column + e * rows * layout_.elem_bytes, 0, layout_.elem_bytes);
  }
  // And its sketch, back to the bytes of a fresh segment (gpu/sketch.h layout).
  const size_t heads =
      static_cast<size_t>(layout_.num_scoring_layers) * static_cast<size_t>(layout_.kv_heads);
  const size_t groups = static_cast<size_t>(layout_.sketch_groups);
  uint8_t* codes = Array<uint8_t>(layout_.sketch_codes);
  float* scales = Array<float>(layout_.sketch_scales);
  const size_t tile = static_cast<size_t>(slot / 16) * groups * 64 + (slot % 16) * 4;
  for (size_t h = 0; h < heads; ++h) {
    for (size_t g = 0; g < groups; ++g)
      std::memset(codes + h * groups * rows * 4 + tile + g * 64, 0, 4);
    scales[h * rows + static_cast<size_t>(slot)] = 0.f;
  }
  positions()[slot] = -1;
  importance()[slot] = 0.f;
  candidate()[slot] = 0;
  promoted()[slot] = 0;
  layer_count()[slot] = 0;
  std::memset(layer_mask() + static_cast<size_t>(slot) * layout_.mask_words, 0,
              static_cast<size_t>(layout_.mask_words) * sizeof(uint64_t));
}

void Segment::RebuildFreeList() {
  live_ = 0;
  free_count_ = 0;
  int32_t* free_list = Array<int32_t>(layout_.free_list);
  // Pushed in reverse so that the lowest free slot is taken first.
  for (int32_t s = high_water_ - 1; s >= 0; --s) {
    if (positions()[s] < 0) {
      free_list[free_count_++] = s;
    } else {
      ++live_;
    }
  }
}

int32_t Segment::AcquireSlot(int64_t position) {
  int32_t slot;
  if (free_count_ > 0) {
    slot = Array<int32_t>(layout_.free_list)[--free_count_];
  } else {
    slot = high_water_++;
  }
  ++live_;
  positions()[slot] = position;
  // Layers that have not arrived read as zeros, never as another row's (or another
  // tenant's) old bytes: the payload is written to disk whole, and quantized by groups.
  if (payload_ != nullptr) {
    std::memset(payload_.get() + static_cast<size_t>(slot) * layout_.row_bytes, 0,
                layout_.row_bytes);
  }
  return slot;
}

void Segment::ReleaseSlot(int32_t slot) {
  ClearSlot(slot);
  Array<int32_t>(layout_.free_list)[free_count_++] = slot;
  --live_;
}

int32_t Segment::RecordLayers(int32_t slot, int32_t begin, int32_t end) {
  uint64_t* mask =
      Array<uint64_t>(layout_.layer_mask) + static_cast<size_t>(slot) * layout_.mask_words;
  int32_t added = 0;
  for (int32_t l = begin; l < end; ++l) {
    const uint64_t bit = uint64_t{1} << (l % 64);
    if ((mask[l / 64] & bit) == 0) {
      mask[l / 64] |= bit;
      ++added;
    }
  }
  Array<uint16_t>(layout_.layer_count)[slot] += static_cast<uint16_t>(added);
  return added;
}

}  // namespace kvtier::storage
