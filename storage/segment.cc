#include "storage/segment.h"

#include <cstring>
#include <utility>

#include "absl/memory/memory.h"

namespace kvtier::storage {
namespace {

size_t AlignUp(size_t n) {
  return (n + SegmentLayout::kAlignment - 1) / SegmentLayout::kAlignment *
         SegmentLayout::kAlignment;
}

}  // namespace

SegmentLayout SegmentLayout::For(const Geometry& geometry, int32_t rows) {
  SegmentLayout l;
  l.rows = rows;
  l.num_layers = geometry.num_layers;
  l.num_scoring_layers = static_cast<int32_t>(geometry.scoring_layers.size());
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
  l.payload = section(n * l.row_bytes);
  l.index = section(n * static_cast<size_t>(l.num_scoring_layers) * l.layer_row_bytes);
  l.positions = section(n * sizeof(int64_t));
  l.importance = section(n * sizeof(float));
  l.layer_mask = section(n * static_cast<size_t>(l.mask_words) * sizeof(uint64_t));
  l.layer_count = section(n * sizeof(uint16_t));
  l.candidate = section(n * sizeof(uint8_t));
  l.promoted = section(n * sizeof(uint8_t));
  l.free_list = section(n * sizeof(int32_t));
  l.total_bytes = offset;
  return l;
}

std::unique_ptr<Segment> Segment::Allocate(const SegmentLayout& layout) {
  // std::aligned_alloc wants a size that is a multiple of the alignment; total_bytes is.
  std::unique_ptr<std::byte, FreeDeleter> memory(
      static_cast<std::byte*>(std::aligned_alloc(SegmentLayout::kAlignment, layout.total_bytes)));
  if (memory == nullptr) return nullptr;
  // The payload is written before it is read (Gather needs complete rows), so it is left
  // uninitialized: zeroing it would touch every page of a segment up front. The score
  // index and the metadata are zeroed: the scorer streams whole blocks, free slots included.
  std::memset(memory.get() + layout.index, 0, layout.total_bytes - layout.index);
  // Private constructor: the factory is the only way to get a segment with its memory.
  auto segment = absl::WrapUnique(new Segment(layout, std::move(memory)));
  int64_t* positions = segment->positions();
  for (int32_t s = 0; s < layout.rows; ++s) positions[s] = -1;
  return segment;
}

Segment::Segment(const SegmentLayout& layout, std::unique_ptr<std::byte, FreeDeleter> memory)
    : layout_(layout), memory_(std::move(memory)) {}

int32_t Segment::AcquireSlot(int64_t position) {
  int32_t slot;
  if (free_count_ > 0) {
    slot = Array<int32_t>(layout_.free_list)[--free_count_];
  } else {
    slot = high_water_++;
  }
  ++live_;
  positions()[slot] = position;
  return slot;
}

void Segment::ReleaseSlot(int32_t slot) {
  positions()[slot] = -1;
  importance()[slot] = 0.f;
  candidate()[slot] = 0;
  promoted()[slot] = 0;
  Array<uint16_t>(layout_.layer_count)[slot] = 0;
  std::memset(Array<uint64_t>(layout_.layer_mask) + static_cast<size_t>(slot) * layout_.mask_words,
              0, static_cast<size_t>(layout_.mask_words) * sizeof(uint64_t));
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
