// The host-RAM RowStore of version 1: the session's rows in segments charged to one
// TierBudget, with the score index kept inside each segment.
#include "storage/row_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "storage/segment.h"

namespace kvtier::storage {
namespace {

// Scatters one row's keys of one layer ([kv][d], `count` elements) into the score index
// ([kv][d][rows]) at `slot`. Elements are moved as raw bits of their size: no conversion.
template <typename Bits>
void ScatterKeys(const std::byte* src, size_t count, std::byte* dst, size_t rows, int32_t slot) {
  Bits* out = reinterpret_cast<Bits*>(dst) + slot;
  for (size_t e = 0; e < count; ++e) {
    Bits v;
    std::memcpy(&v, src + e * sizeof(Bits), sizeof(Bits));  // the chunk may be unaligned
    out[e * rows] = v;
  }
}

absl::Status CheckLayerRange(int32_t begin, int32_t end, int32_t num_layers) {
  if (begin < 0 || begin >= num_layers) {
    return absl::OutOfRangeError(
        absl::StrCat("layer_begin: ", begin, " is out of range [0, ", num_layers, ")"));
  }
  if (end <= begin || end > num_layers) {
    return absl::OutOfRangeError(
        absl::StrCat("layer_end: ", end, " is out of range [", begin + 1, ", ", num_layers, "]"));
  }
  return absl::OkStatus();
}

// Index of the first NaN or infinite element of `bytes` (elements of `dtype`), or -1. Such a
// key would turn the softmax normalizer, and so every score of the session, into NaN.
int64_t FirstNonFinite(DType dtype, absl::Span<const std::byte> bytes) {
  auto scan = [&](auto zero, auto exponent_mask) -> int64_t {
    using Bits = decltype(zero);
    const size_t count = bytes.size() / sizeof(Bits);
    for (size_t e = 0; e < count; ++e) {
      Bits v;
      std::memcpy(&v, bytes.data() + e * sizeof(Bits), sizeof(Bits));
      if ((v & exponent_mask) == exponent_mask) return static_cast<int64_t>(e);
    }
    return -1;
  };
  switch (dtype) {
    case DType::kFloat16:
      return scan(uint16_t{0}, uint16_t{0x7c00});
    case DType::kBFloat16:
      return scan(uint16_t{0}, uint16_t{0x7f80});
    case DType::kFloat32:
      return scan(uint32_t{0}, uint32_t{0x7f800000});
    default:
      return -1;
  }
}

absl::Status CheckBytes(const char* field, size_t got, size_t expected, int32_t layers, size_t rows,
                        size_t layer_row_bytes) {
  if (got != expected) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", expected, " bytes (",
                                                   layers, " layers x ", rows, " rows x ",
                                                   layer_row_bytes, " bytes), got ", got));
  }
  return absl::OkStatus();
}

// Not thread-safe (see RowStore).
class HostRowStore final : public RowStore {
 public:
  HostRowStore(const Geometry& geometry, TierBudget* budget, int32_t segment_rows)
      : geometry_(geometry),
        budget_(budget),
        layout_(SegmentLayout::For(geometry_, segment_rows)),
        scoring_index_of_layer_(static_cast<size_t>(geometry_.num_layers), -1) {
    for (size_t i = 0; i < geometry_.scoring_layers.size(); ++i) {
      scoring_index_of_layer_[static_cast<size_t>(geometry_.scoring_layers[i])] =
          static_cast<int32_t>(i);
    }
  }

  ~HostRowStore() override {
    budget_->Free(charged_);
    budget_->AddSegments(-live_segments_);
  }

  absl::StatusOr<OffloadResult> Offload(const OffloadChunk& chunk) override;
  ScoreIndexView View() const override;
  RowCounts counts() const override { return counts_; }
  uint64_t bytes() const override { return charged_; }
  absl::Status CheckComplete(absl::Span<const int64_t> positions) const override {
    return Resolve(positions, nullptr);
  }
  absl::Status MarkPromoted(absl::Span<const int64_t> positions) override;
  absl::Status Gather(absl::Span<const int64_t> positions, int32_t layer_begin, int32_t layer_end,
                      absl::Span<std::byte> keys, absl::Span<std::byte> values) const override;
  ReleaseResult Release(absl::Span<const int64_t> positions) override;

 private:
  struct SlotRef {
    uint32_t segment = 0;  // index into segments_
    int32_t slot = 0;
  };

  // Finds every position, all stored and complete, or returns NOT_FOUND /
  // FAILED_PRECONDITION naming the first offender. Fills `refs` (when not null) in order.
  absl::Status Resolve(absl::Span<const int64_t> positions, std::vector<SlotRef>* refs) const;

  // Takes a free slot for a new position: from a live segment with room, else from the
  // next of `fresh` (segments already allocated and charged for this chunk).
  SlotRef AcquireSlot(int64_t position, std::vector<std::unique_ptr<Segment>>& fresh,
                      size_t& next_fresh);
  uint32_t InstallSegment(std::unique_ptr<Segment> segment);

  const Geometry geometry_;
  TierBudget* const budget_;
  const SegmentLayout layout_;
  std::vector<int32_t> scoring_index_of_layer_;  // [num_layers]; -1 when not a scoring layer

  // Null entries are freed segments; their indices wait in free_segment_ids_ for reuse.
  std::vector<std::unique_ptr<Segment>> segments_;
  std::vector<uint32_t> free_segment_ids_;
  // Live segments that are not full; new positions take slots from the back one.
  std::vector<uint32_t> open_segments_;
  absl::flat_hash_map<int64_t, SlotRef> slots_;  // position -> slot
  int64_t free_slots_ = 0;                       // free slots over every live segment
  int64_t live_segments_ = 0;
  uint64_t charged_ = 0;  // bytes reserved from budget_
  RowCounts counts_;
};

absl::Status HostRowStore::Resolve(absl::Span<const int64_t> positions,
                                   std::vector<SlotRef>* refs) const {
  if (refs != nullptr) refs->resize(positions.size());
  for (size_t i = 0; i < positions.size(); ++i) {
    auto it = slots_.find(positions[i]);
    if (it == slots_.end()) {
      return absl::NotFoundError(
          absl::StrCat("positions[", i, "]: position ", positions[i], " is not stored"));
    }
    const Segment& segment = *segments_[it->second.segment];
    if (!segment.complete(it->second.slot)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "positions[", i, "]: position ", positions[i], " is missing layers (",
          segment.layer_count()[it->second.slot], " of ", geometry_.num_layers, " arrived)"));
    }
    if (refs != nullptr) (*refs)[i] = it->second;
  }
  return absl::OkStatus();
}

uint32_t HostRowStore::InstallSegment(std::unique_ptr<Segment> segment) {
  uint32_t id;
  if (!free_segment_ids_.empty()) {
    id = free_segment_ids_.back();
    free_segment_ids_.pop_back();
    segments_[id] = std::move(segment);
  } else {
    id = static_cast<uint32_t>(segments_.size());
    segments_.push_back(std::move(segment));
  }
  open_segments_.push_back(id);
  free_slots_ += layout_.rows;
  ++live_segments_;
  return id;
}

HostRowStore::SlotRef HostRowStore::AcquireSlot(int64_t position,
                                                std::vector<std::unique_ptr<Segment>>& fresh,
                                                size_t& next_fresh) {
  // Holes in live segments are filled before a fresh segment is opened.
  if (open_segments_.empty()) InstallSegment(std::move(fresh[next_fresh++]));
  const uint32_t id = open_segments_.back();
  Segment& segment = *segments_[id];
  const int32_t slot = segment.AcquireSlot(position);
  if (segment.full()) open_segments_.pop_back();
  --free_slots_;
  return {id, slot};
}

absl::StatusOr<OffloadResult> HostRowStore::Offload(const OffloadChunk& chunk) {
  // Validate everything before changing anything: a chunk is stored whole or not at all.
  const size_t n = chunk.positions.size();
  if (n == 0) return absl::InvalidArgumentError("positions: empty");
  absl::flat_hash_set<int64_t> seen;
  seen.reserve(n);
  int64_t new_rows = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t p = chunk.positions[i];
    if (p < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("positions[", i, "]: position ", p, " is negative"));
    }
    if (!seen.insert(p).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("positions[", i, "]: position ", p, " is repeated in the chunk"));
    }
    if (!slots_.contains(p)) ++new_rows;
  }
  if (absl::Status s = CheckLayerRange(chunk.layer_begin, chunk.layer_end, geometry_.num_layers);
      !s.ok()) {
    return s;
  }
  const int32_t layers = chunk.layer_end - chunk.layer_begin;
  const size_t lrb = layout_.layer_row_bytes;
  const size_t expected = static_cast<size_t>(layers) * n * lrb;
  if (absl::Status s = CheckBytes("keys", chunk.keys.size(), expected, layers, n, lrb); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBytes("values", chunk.values.size(), expected, layers, n, lrb);
      !s.ok()) {
    return s;
  }
  if (!chunk.importance.empty() && chunk.importance.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance: expected 0 or ", n, " values, got ", chunk.importance.size()));
  }
  for (size_t i = 0; i < chunk.importance.size(); ++i) {
    if (!std::isfinite(chunk.importance[i])) {
      return absl::InvalidArgumentError(absl::StrCat("importance[", i, "]: not finite"));
    }
  }
  if (const int64_t e = FirstNonFinite(geometry_.dtype, chunk.keys); e >= 0) {
    const int64_t per_row = static_cast<int64_t>(lrb / DTypeSize(geometry_.dtype));
    const int64_t layer_row = e / per_row;
    return absl::InvalidArgumentError(absl::StrCat(
        "keys: element ", e, " (layer ", chunk.layer_begin + layer_row / static_cast<int64_t>(n),
        ", positions[", layer_row % static_cast<int64_t>(n), "]) is NaN or infinite"));
  }

  // Charge and allocate the segments the new rows need, still without changing anything.
  const int64_t missing = std::max<int64_t>(0, new_rows - free_slots_);
  const int64_t new_segments = (missing + layout_.rows - 1) / layout_.rows;
  std::vector<std::unique_ptr<Segment>> fresh;
  if (new_segments > 0) {
    const uint64_t charge = static_cast<uint64_t>(new_segments) * layout_.total_bytes;
    if (absl::Status s = budget_->Reserve(charge); !s.ok()) return s;
    fresh.reserve(static_cast<size_t>(new_segments));
    for (int64_t k = 0; k < new_segments; ++k) {
      std::unique_ptr<Segment> segment = Segment::Allocate(layout_);
      if (segment == nullptr) {
        budget_->Free(charge);
        return absl::ResourceExhaustedError(absl::StrCat("tier ", budget_->name(),
                                                         ": host allocation of ",
                                                         layout_.total_bytes, " bytes failed"));
      }
      fresh.push_back(std::move(segment));
    }
    charged_ += charge;
    budget_->AddSegments(new_segments);
    segments_.reserve(segments_.size() + static_cast<size_t>(new_segments));
  }
  slots_.reserve(slots_.size() + static_cast<size_t>(new_rows));

  // Scoring layers inside the chunk's range, as (layer, index of the scoring layer).
  std::vector<std::pair<int32_t, int32_t>> scoring;
  for (int32_t l = chunk.layer_begin; l < chunk.layer_end; ++l) {
    const int32_t si = scoring_index_of_layer_[static_cast<size_t>(l)];
    if (si >= 0) scoring.emplace_back(l, si);
  }
  const size_t elems = lrb / layout_.elem_bytes;  // kv_heads * head_dim
  const size_t rows = static_cast<size_t>(layout_.rows);

  OffloadResult result;
  result.rows_written = static_cast<int64_t>(n);
  result.new_rows = new_rows;
  result.bytes = 2 * expected;
  size_t next_fresh = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t p = chunk.positions[i];
    SlotRef ref;
    if (auto it = slots_.find(p); it != slots_.end()) {
      ref = it->second;
    } else {
      ref = AcquireSlot(p, fresh, next_fresh);
      slots_.emplace(p, ref);
      ++counts_.stored;
    }
    Segment& segment = *segments_[ref.segment];
    const int32_t slot = ref.slot;

    for (int32_t l = chunk.layer_begin; l < chunk.layer_end; ++l) {
      const size_t src = (static_cast<size_t>(l - chunk.layer_begin) * n + i) * lrb;
      std::memcpy(segment.keys(slot, l), chunk.keys.data() + src, lrb);
      std::memcpy(segment.values(slot, l), chunk.values.data() + src, lrb);
    }
    for (const auto& [l, si] : scoring) {
      const std::byte* src =
          chunk.keys.data() + (static_cast<size_t>(l - chunk.layer_begin) * n + i) * lrb;
      std::byte* dst =
          segment.index() + static_cast<size_t>(si) * elems * rows * layout_.elem_bytes;
      if (layout_.elem_bytes == 2) {
        ScatterKeys<uint16_t>(src, elems, dst, rows, slot);
      } else {
        ScatterKeys<uint32_t>(src, elems, dst, rows, slot);
      }
    }
    if (!chunk.importance.empty()) segment.importance()[slot] = chunk.importance[i];

    const bool was_complete = segment.complete(slot);
    segment.RecordLayers(slot, chunk.layer_begin, chunk.layer_end);
    if (!was_complete && segment.complete(slot)) {
      ++result.rows_completed;
      ++counts_.complete;
    }
    // A promoted row sent again was evicted again by the engine: a candidate once more.
    if (segment.promoted()[slot]) {
      segment.promoted()[slot] = 0;
      --counts_.promoted;
    }
    if (segment.complete(slot) && !segment.candidate()[slot]) {
      segment.candidate()[slot] = 1;
      ++counts_.candidate;
    }
  }
  return result;
}

ScoreIndexView HostRowStore::View() const {
  ScoreIndexView view;
  view.block_capacity = layout_.rows;
  view.blocks.reserve(static_cast<size_t>(live_segments_));
  for (const auto& segment : segments_) {
    if (segment == nullptr) continue;
    ScoreIndexView::Block& block = view.blocks.emplace_back();
    block.keys = segment->index();
    block.rows = segment->high_water();
    block.candidate = segment->candidate();
    block.positions = segment->positions();
    block.importance = segment->importance();
  }
  return view;
}

absl::Status HostRowStore::MarkPromoted(absl::Span<const int64_t> positions) {
  std::vector<SlotRef> refs;
  if (absl::Status s = Resolve(positions, &refs); !s.ok()) return s;
  for (const SlotRef& ref : refs) {
    Segment& segment = *segments_[ref.segment];
    if (segment.promoted()[ref.slot]) continue;  // listed twice
    segment.promoted()[ref.slot] = 1;
    segment.candidate()[ref.slot] = 0;
    ++counts_.promoted;
    --counts_.candidate;
  }
  return absl::OkStatus();
}

absl::Status HostRowStore::Gather(absl::Span<const int64_t> positions, int32_t layer_begin,
                                  int32_t layer_end, absl::Span<std::byte> keys,
                                  absl::Span<std::byte> values) const {
  if (absl::Status s = CheckLayerRange(layer_begin, layer_end, geometry_.num_layers); !s.ok()) {
    return s;
  }
  const int32_t layers = layer_end - layer_begin;
  const size_t n = positions.size();
  const size_t lrb = layout_.layer_row_bytes;
  const size_t expected = static_cast<size_t>(layers) * n * lrb;
  if (absl::Status s = CheckBytes("keys", keys.size(), expected, layers, n, lrb); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckBytes("values", values.size(), expected, layers, n, lrb); !s.ok()) {
    return s;
  }
  std::vector<SlotRef> refs;
  if (absl::Status s = Resolve(positions, &refs); !s.ok()) return s;
  for (int32_t l = layer_begin; l < layer_end; ++l) {
    for (size_t i = 0; i < n; ++i) {
      const Segment& segment = *segments_[refs[i].segment];
      const size_t dst = (static_cast<size_t>(l - layer_begin) * n + i) * lrb;
      std::memcpy(keys.data() + dst, segment.keys(refs[i].slot, l), lrb);
      std::memcpy(values.data() + dst, segment.values(refs[i].slot, l), lrb);
    }
  }
  return absl::OkStatus();
}

ReleaseResult HostRowStore::Release(absl::Span<const int64_t> positions) {
  ReleaseResult result;
  for (const int64_t p : positions) {
    auto it = slots_.find(p);
    if (it == slots_.end()) continue;
    const SlotRef ref = it->second;
    slots_.erase(it);
    Segment& segment = *segments_[ref.segment];
    if (segment.complete(ref.slot)) --counts_.complete;
    if (segment.candidate()[ref.slot]) --counts_.candidate;
    if (segment.promoted()[ref.slot]) --counts_.promoted;
    --counts_.stored;
    ++result.rows_released;
    const bool was_full = segment.full();
    segment.ReleaseSlot(ref.slot);
    ++free_slots_;
    if (was_full) open_segments_.push_back(ref.segment);
    if (segment.live() == 0) {
      // An empty segment goes back to the tier. Once per segment, so the linear search of
      // the open list (one entry per live segment) stays off the per-row path.
      open_segments_.erase(std::find(open_segments_.begin(), open_segments_.end(), ref.segment));
      const uint64_t freed = segment.allocated_bytes();
      segments_[ref.segment].reset();
      free_segment_ids_.push_back(ref.segment);
      free_slots_ -= layout_.rows;
      --live_segments_;
      charged_ -= freed;
      budget_->Free(freed);
      budget_->AddSegments(-1);
      result.bytes_freed += freed;
    }
  }
  return result;
}

}  // namespace

std::unique_ptr<RowStore> RowStore::Create(const Geometry& geometry, TierBudget* budget,
                                           int32_t segment_rows) {
  // The scorer streams blocks of a multiple of 16 slots; round anything else up.
  segment_rows = std::max<int32_t>(16, (segment_rows + 15) / 16 * 16);
  Geometry g = geometry;
  if (g.scoring_layers.empty()) {  // not normalized: empty means every layer
    for (int32_t l = 0; l < g.num_layers; ++l) g.scoring_layers.push_back(l);
  }
  return std::make_unique<HostRowStore>(g, budget, segment_rows);
}

}  // namespace kvtier::storage
