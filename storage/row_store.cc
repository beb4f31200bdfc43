// The host-RAM RowStore of version 1: the session's rows in segments charged to one
// TierBudget, with the score index kept inside each segment.
#include "storage/row_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gpu/sketch.h"
#include "storage/segment.h"
#include "storage/segment_codec.h"

namespace kvtier::storage {
namespace {

// Segments one session may hold (2^22 of 256 rows: a billion rows, far beyond any host).
// Offload refuses more; recovery treats larger ids as damaged keys.
constexpr uint32_t kMaxSegments = 1u << 22;

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

// Writes slot `slot`'s score index entry of scoring layer `si` from one row's keys of that
// layer ([kv][d]): the keys themselves and their sketch.
void IndexRowKeys(const Geometry& geometry, const SegmentLayout& layout, Segment& segment,
                  size_t si, int32_t slot, const std::byte* src) {
  const size_t elems = layout.layer_row_bytes / layout.elem_bytes;  // kv_heads * head_dim
  const size_t rows = static_cast<size_t>(layout.rows);
  std::byte* dst = segment.index() + si * elems * rows * layout.elem_bytes;
  if (layout.elem_bytes == 2) {
    ScatterKeys<uint16_t>(src, elems, dst, rows, slot);
  } else {
    ScatterKeys<uint32_t>(src, elems, dst, rows, slot);
  }
  const size_t kv = static_cast<size_t>(geometry.num_kv_heads);
  scorer::EncodeSketchRow(
      ScorerKeyType(geometry.dtype), src, geometry.num_kv_heads, geometry.head_dim, layout.rows,
      slot,
      segment.sketch_codes() +
          scorer::SketchCodeBytes(1, geometry.num_kv_heads, geometry.head_dim, layout.rows) * si,
      segment.sketch_scales() + si * kv * rows);
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
  HostRowStore(const Geometry& geometry, StoreContext context)
      : geometry_(geometry),
        ctx_(std::move(context)),
        storage_name_(SessionStorageName(ctx_.session_id, ctx_.incarnation)),
        tiers_(ctx_.tiers),
        host_(tiers_ != nullptr ? &tiers_->host() : ctx_.host),
        db_(tiers_ != nullptr ? tiers_->db() : nullptr),
        // Index-only sessions are never written to disk (docs/API.md): nothing to recover.
        write_through_(db_ != nullptr && db_->durability() != Durability::kNone &&
                       !geometry_.index_only),
        // Nor moved between tiers: they have no payload to demote.
        tracked_(tiers_ != nullptr && !geometry_.index_only),
        layout_(SegmentLayout::For(geometry_, ctx_.segment_rows)),
        scoring_index_of_layer_(static_cast<size_t>(geometry_.num_layers), -1) {
    for (size_t i = 0; i < geometry_.scoring_layers.size(); ++i) {
      scoring_index_of_layer_[static_cast<size_t>(geometry_.scoring_layers[i])] =
          static_cast<int32_t>(i);
    }
    if (tiers_ != nullptr) owner_ = tiers_->RegisterOwner();
  }

  ~HostRowStore() override {
    host_->Free(charged_);
    host_->AddSegments(-resident_segments_);
    if (tiers_ != nullptr) {
      tiers_->disk().Free(disk_charged_);
      tiers_->disk().AddSegments(-on_disk_);
      tiers_->RefundTenant(ctx_.tenant, quota_charged_);
      for (uint32_t id = 0; id < segments_.size(); ++id) {
        if (tracked_ && segments_[id] != nullptr) tiers_->OnFreed(PageKey(id));
      }
      tiers_->UnregisterOwner(owner_);
    }
  }

  absl::Status PersistSession(absl::string_view record) override;
  absl::Status Drop() override;
  void Bind(std::weak_ptr<TierClient> client) override {
    if (tiers_ != nullptr) tiers_->BindOwner(owner_, std::move(client));
  }

  absl::StatusOr<OffloadResult> Offload(const OffloadChunk& chunk) override;
  ScoreIndexView View() const override;
  RowCounts counts() const override { return counts_; }
  uint64_t bytes() const override { return charged_; }
  uint64_t segment_bytes() const override { return layout_.total_bytes; }
  int64_t segments() const override { return live_segments_; }
  int64_t segments_on_disk() const override { return on_disk_; }
  uint64_t demoted_payload_bytes() const override {
    return static_cast<uint64_t>(on_disk_) * layout_.payload_bytes;
  }
  uint32_t tier_owner() const override { return owner_; }
  absl::Status CheckComplete(absl::Span<const int64_t> positions) const override {
    return Resolve(positions, nullptr);
  }
  absl::Status MarkPromoted(absl::Span<const int64_t> positions) override;
  absl::Status Gather(absl::Span<const int64_t> positions, int32_t layer_begin, int32_t layer_end,
                      absl::Span<std::byte> keys, absl::Span<std::byte> values) override;
  ReleaseResult Release(absl::Span<const int64_t> positions) override;

  absl::StatusOr<DemotionPlan> PrepareDemotion(uint32_t segment) override;
  uint64_t FinishDemotion(DemotionPlan& plan, const absl::Status& written) override;
  absl::Status Prefetch(uint32_t segment) override;
  absl::StatusOr<StageResult> Stage() override;

  // Recovery: rebuilds the store from the database (see RowStore::Recover).
  absl::Status RecoverFromDb(int64_t* data_loss);

 private:
  struct SlotRef {
    uint32_t segment = 0;  // index into segments_
    int32_t slot = 0;
  };

  uint64_t PageKey(uint32_t id) const { return TierManager::PageKey(owner_, id); }

  // Finds every position, all stored and complete, or returns NOT_FOUND /
  // FAILED_PRECONDITION naming the first offender. Fills `refs` (when not null) in order.
  absl::Status Resolve(absl::Span<const int64_t> positions, std::vector<SlotRef>* refs) const;
  // An index-only chunk carries scoring layers only and no values.
  absl::Status CheckIndexOnlyChunk(const OffloadChunk& chunk) const;

  // Takes a free slot for a new position: from an open segment (resident, not full), else
  // from the next of `fresh` (segments already allocated and charged for this chunk).
  SlotRef AcquireSlot(int64_t position, std::vector<std::unique_ptr<Segment>>& fresh,
                      size_t& next_fresh);
  uint32_t InstallSegment(std::unique_ptr<Segment> segment);
  // Frees an empty segment (or, at Drop, any segment) from every tier. Its disk records
  // are deleted through `batch`.
  uint64_t FreeSegment(uint32_t id, KvBatch* batch);

  // Loads the payload of demoted segment `id` from its base on disk into freshly allocated
  // memory (not charged). DATA_LOSS when the base fails its check.
  absl::Status ReadPayload(uint32_t id);
  // Makes the payload of `id` resident, charged to host RAM (RESOURCE_EXHAUSTED when host
  // RAM has no room). `prefetch`: ahead of access.
  absl::Status LoadPayload(uint32_t id, bool prefetch);
  // The segment's payload is now resident / on disk: open-list and counter bookkeeping.
  void NoteResident(uint32_t id);
  void NoteDemoted(uint32_t id);
  void NoteAccess(uint32_t id, bool resident);

  // Writes `batch` if the store writes through; the error says what was not persisted.
  absl::Status WriteThrough(KvBatch& batch, absl::string_view what);
  // Patch writes: the disk bytes of a written record, charged to the segment.
  void ChargeDisk(Segment& segment, uint64_t bytes);
  bool InGuardWindow(const Segment& segment) const;
  // Rebuilds the segment's block of the score index from its payload.
  void RebuildIndex(Segment& segment) const;
  // Recovery: applies one decoded patch to `segment`.
  absl::Status ApplyPatch(Segment& segment, const DecodedPatch& patch, absl::string_view key);
  // Recovery: takes a fully rebuilt segment into the store.
  void AdoptRecovered(uint32_t id, std::unique_ptr<Segment> segment, bool dirty);

  const Geometry geometry_;
  const StoreContext ctx_;
  const std::string storage_name_;  // the session in segment keys
  TierManager* const tiers_;
  TierBudget* const host_;
  KvDb* const db_;
  const bool write_through_;
  const bool tracked_;  // the tier manager knows the segments (placement, demotion)
  const SegmentLayout layout_;
  std::vector<int32_t> scoring_index_of_layer_;  // [num_layers]; -1 when not a scoring layer
  uint32_t owner_ = 0;
  // Set by Drop: the session is gone, Offload refuses (a call that found the session
  // before the drop must not store rows nobody can reach).
  bool dropped_ = false;

  // Null entries are freed segments; their indices wait in free_segment_ids_ for reuse.
  std::vector<std::unique_ptr<Segment>> segments_;
  std::vector<uint32_t> free_segment_ids_;
  // Resident segments that are not full; new positions take slots from the back one.
  std::vector<uint32_t> open_segments_;
  absl::flat_hash_map<int64_t, SlotRef> slots_;  // position -> slot
  int64_t free_slots_ = 0;                       // free slots over the open segments
  int64_t live_segments_ = 0;
  int64_t resident_segments_ = 0;
  int64_t on_disk_ = 0;         // live segments whose payload is on disk only
  uint64_t charged_ = 0;        // bytes reserved from host_
  uint64_t disk_charged_ = 0;   // bytes reserved from the disk tier
  uint64_t quota_charged_ = 0;  // bytes charged to the tenant's quota
  uint64_t last_seq_ = 0;       // sequence number of the last change
  int64_t max_position_ = -1;
  RowCounts counts_;
};

absl::Status HostRowStore::CheckIndexOnlyChunk(const OffloadChunk& chunk) const {
  if (!chunk.values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "values: must be empty in an index-only session, got ", chunk.values.size(), " bytes"));
  }
  for (int32_t l = chunk.layer_begin; l < chunk.layer_end; ++l) {
    if (scoring_index_of_layer_[static_cast<size_t>(l)] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer_begin: layer ", l, " of [", chunk.layer_begin, ", ", chunk.layer_end,
          ") is not a scoring layer; an index-only session stores scoring layers only"));
    }
  }
  return absl::OkStatus();
}

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
          segment.layer_count()[it->second.slot], " of ", layout_.complete_layers, " arrived)"));
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
  segments_[id]->tier.page_key = PageKey(id);
  open_segments_.push_back(id);
  free_slots_ += layout_.rows;
  ++live_segments_;
  ++resident_segments_;
  host_->AddSegments(1);
  if (tracked_) tiers_->OnCreated(PageKey(id), layout_.total_bytes);
  return id;
}

HostRowStore::SlotRef HostRowStore::AcquireSlot(int64_t position,
                                                std::vector<std::unique_ptr<Segment>>& fresh,
                                                size_t& next_fresh) {
  // Holes in open segments are filled before a fresh segment is opened.
  if (open_segments_.empty()) InstallSegment(std::move(fresh[next_fresh++]));
  const uint32_t id = open_segments_.back();
  Segment& segment = *segments_[id];
  const int32_t slot = segment.AcquireSlot(position);
  if (segment.full()) open_segments_.pop_back();
  --free_slots_;
  return {id, slot};
}

void HostRowStore::NoteResident(uint32_t id) {
  Segment& segment = *segments_[id];
  if (!segment.full()) {
    open_segments_.push_back(id);
    free_slots_ += layout_.rows - segment.live();
  }
  --on_disk_;
  ++resident_segments_;
  host_->AddSegments(1);
  if (tiers_ != nullptr) tiers_->disk().AddSegments(-1);
}

void HostRowStore::NoteDemoted(uint32_t id) {
  Segment& segment = *segments_[id];
  if (auto it = std::find(open_segments_.begin(), open_segments_.end(), id);
      it != open_segments_.end()) {
    open_segments_.erase(it);
    free_slots_ -= layout_.rows - segment.live();
  }
  ++on_disk_;
  --resident_segments_;
  host_->AddSegments(-1);
  if (tiers_ != nullptr) tiers_->disk().AddSegments(1);
}

void HostRowStore::NoteAccess(uint32_t id, bool resident) {
  if (!tracked_) return;
  const int64_t first = static_cast<int64_t>(id) * layout_.rows;
  tiers_->OnAccess(PageKey(id), layout_.total_bytes, resident, first, first + layout_.rows);
}

uint64_t HostRowStore::FreeSegment(uint32_t id, KvBatch* batch) {
  Segment& segment = *segments_[id];
  if (auto it = std::find(open_segments_.begin(), open_segments_.end(), id);
      it != open_segments_.end()) {
    open_segments_.erase(it);
    free_slots_ -= layout_.rows - segment.live();
  }
  const uint64_t freed = segment.allocated_bytes();
  if (segment.resident()) {
    --resident_segments_;
    host_->AddSegments(-1);
  } else {
    --on_disk_;
    if (tiers_ != nullptr) tiers_->disk().AddSegments(-1);
  }
  if (db_ != nullptr && (segment.tier.disk_bytes > 0 || segment.tier.has_base)) {
    const std::string prefix = SegmentPrefix(ctx_.tenant, storage_name_, id);
    batch->DeleteRange(prefix, PrefixEnd(prefix));
  }
  if (tiers_ != nullptr) {
    tiers_->disk().Free(segment.tier.disk_bytes);
    disk_charged_ -= segment.tier.disk_bytes;
    tiers_->RefundTenant(ctx_.tenant, layout_.total_bytes);
    quota_charged_ -= layout_.total_bytes;
    if (tracked_) tiers_->OnFreed(PageKey(id));
  }
  host_->Free(freed);
  charged_ -= freed;
  segments_[id].reset();
  free_segment_ids_.push_back(id);
  --live_segments_;
  return freed;
}

absl::Status HostRowStore::WriteThrough(KvBatch& batch, absl::string_view what) {
  if (!write_through_ || batch.empty()) return absl::OkStatus();
  absl::Status s = db_->Write(batch);
  if (s.ok()) return s;
  return absl::UnavailableError(
      absl::StrCat(what, " is applied in memory but not durable: ", s.message()));
}

void HostRowStore::ChargeDisk(Segment& segment, uint64_t bytes) {
  segment.tier.disk_bytes += bytes;
  disk_charged_ += bytes;
}

bool HostRowStore::InGuardWindow(const Segment& segment) const {
  const int64_t* positions = segment.positions();
  for (int32_t s = 0; s < segment.high_water(); ++s) {
    if (positions[s] >= 0 && positions[s] > max_position_ - tiers_->options().guard_rows) {
      return true;
    }
  }
  return false;
}

absl::Status HostRowStore::ReadPayload(uint32_t id) {
  Segment& segment = *segments_[id];
  std::string bytes;
  const std::string key = SegmentBaseKey(ctx_.tenant, storage_name_, id);
  absl::Status s = db_->Get(key, &bytes);
  if (absl::IsNotFound(s)) s = absl::DataLossError(absl::StrCat("record ", key, ": missing"));
  if (!s.ok()) {
    if (absl::IsDataLoss(s)) tiers_->stats().data_loss.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  if (!segment.AllocatePayload()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("host allocation of ", layout_.payload_bytes, " bytes failed"));
  }
  absl::StatusOr<uint64_t> version = DecodeSegmentBase(bytes, key, false, &segment);
  if (!version.ok()) {
    segment.DropPayload();
    tiers_->stats().data_loss.fetch_add(1, std::memory_order_relaxed);
    return version.status();
  }
  return absl::OkStatus();
}

absl::Status HostRowStore::LoadPayload(uint32_t id, bool prefetch) {
  if (absl::Status s = host_->Reserve(layout_.payload_bytes); !s.ok()) return s;
  if (absl::Status s = ReadPayload(id); !s.ok()) {
    host_->Free(layout_.payload_bytes);
    return s;
  }
  charged_ += layout_.payload_bytes;
  NoteResident(id);
  tiers_->OnLoaded(PageKey(id), layout_.total_bytes, prefetch);
  return absl::OkStatus();
}

absl::StatusOr<OffloadResult> HostRowStore::Offload(const OffloadChunk& chunk) {
  // Validate everything before changing anything: a chunk is stored whole or not at all.
  if (dropped_) {
    return absl::NotFoundError(
        absl::StrCat("session_id: session '", ctx_.session_id, "' was released or expired"));
  }
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
  if (geometry_.index_only) {
    if (absl::Status s = CheckIndexOnlyChunk(chunk); !s.ok()) return s;
  } else if (absl::Status s = CheckBytes("values", chunk.values.size(), expected, layers, n, lrb);
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

  // Payloads of stored rows that are on disk come back before they are overwritten.
  absl::flat_hash_set<uint32_t> touched_demoted;
  for (size_t i = 0; i < n; ++i) {
    auto it = slots_.find(chunk.positions[i]);
    if (it != slots_.end() && !segments_[it->second.segment]->resident()) {
      touched_demoted.insert(it->second.segment);
    }
  }
  for (const uint32_t id : touched_demoted) {
    NoteAccess(id, false);
    if (absl::Status s = LoadPayload(id, false); !s.ok()) return s;
  }

  // Charge and allocate the segments the new rows need, still without changing anything.
  const int64_t missing = std::max<int64_t>(0, new_rows - free_slots_);
  const int64_t new_segments = (missing + layout_.rows - 1) / layout_.rows;
  if (live_segments_ + new_segments > static_cast<int64_t>(kMaxSegments)) {
    return absl::ResourceExhaustedError(absl::StrCat("positions: session '", ctx_.session_id,
                                                     "' would exceed ", kMaxSegments, " segments"));
  }
  const uint64_t charge = static_cast<uint64_t>(new_segments) * layout_.total_bytes;
  // What the patches will take on disk, at most: reserved up front so that a full disk
  // tier refuses the chunk before anything changes.
  const uint64_t disk_estimate = write_through_ ? 2 * expected + n * 16 + (n + 1) * 64 : 0;
  std::vector<std::unique_ptr<Segment>> fresh;
  if (new_segments > 0 && tiers_ != nullptr) {
    if (absl::Status s = tiers_->ChargeTenant(ctx_.tenant, charge); !s.ok()) return s;
  }
  auto refund = [&](bool host) {
    if (new_segments > 0 && tiers_ != nullptr) tiers_->RefundTenant(ctx_.tenant, charge);
    if (host) host_->Free(charge);
  };
  if (new_segments > 0) {
    if (absl::Status s = host_->Reserve(charge); !s.ok()) {
      refund(false);
      return s;
    }
  }
  if (disk_estimate > 0) {
    if (absl::Status s = tiers_->disk().Reserve(disk_estimate); !s.ok()) {
      refund(new_segments > 0);
      return s;  // counted in capacity_rejections by the service, once per refused chunk
    }
  }
  if (new_segments > 0) {
    fresh.reserve(static_cast<size_t>(new_segments));
    for (int64_t k = 0; k < new_segments; ++k) {
      std::unique_ptr<Segment> segment = Segment::Allocate(layout_);
      if (segment == nullptr) {
        refund(true);
        if (disk_estimate > 0) tiers_->disk().Free(disk_estimate);
        return absl::ResourceExhaustedError(absl::StrCat(
            "tier ", host_->name(), ": host allocation of ", layout_.total_bytes, " bytes failed"));
      }
      fresh.push_back(std::move(segment));
    }
    charged_ += charge;
    if (tiers_ != nullptr) quota_charged_ += charge;
    segments_.reserve(segments_.size() + static_cast<size_t>(new_segments));
  }
  slots_.reserve(slots_.size() + static_cast<size_t>(new_rows));

  // Scoring layers inside the chunk's range, as (layer, index of the scoring layer).
  std::vector<std::pair<int32_t, int32_t>> scoring;
  for (int32_t l = chunk.layer_begin; l < chunk.layer_end; ++l) {
    const int32_t si = scoring_index_of_layer_[static_cast<size_t>(l)];
    if (si >= 0) scoring.emplace_back(l, si);
  }

  // The rows of the chunk by segment, for the patches: (segment, [(row, chunk index)]).
  std::vector<std::pair<uint32_t, std::vector<std::pair<PatchRow, size_t>>>> by_segment;
  absl::flat_hash_map<uint32_t, size_t> group_of;

  OffloadResult result;
  result.rows_written = static_cast<int64_t>(n);
  result.new_rows = new_rows;
  result.bytes = geometry_.index_only ? expected : 2 * expected;
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
    max_position_ = std::max(max_position_, p);
    Segment& segment = *segments_[ref.segment];
    const int32_t slot = ref.slot;

    for (int32_t l = chunk.layer_begin; l < chunk.layer_end && !geometry_.index_only; ++l) {
      const size_t src = (static_cast<size_t>(l - chunk.layer_begin) * n + i) * lrb;
      std::memcpy(segment.keys(slot, l), chunk.keys.data() + src, lrb);
      std::memcpy(segment.values(slot, l), chunk.values.data() + src, lrb);
    }
    for (const auto& [l, si] : scoring) {
      IndexRowKeys(geometry_, layout_, segment, static_cast<size_t>(si), slot,
                   chunk.keys.data() + (static_cast<size_t>(l - chunk.layer_begin) * n + i) * lrb);
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
    auto [group, added] = group_of.try_emplace(ref.segment, by_segment.size());
    if (added) by_segment.emplace_back(ref.segment, std::vector<std::pair<PatchRow, size_t>>());
    by_segment[group->second].second.push_back(
        {PatchRow{slot, p, chunk.importance.empty() ? 0.f : chunk.importance[i]}, i});
  }

  // One patch per segment touched, each with its own sequence number.
  KvBatch batch;
  uint64_t written = 0;
  std::vector<PatchRow> patch_rows;
  for (auto& [id, entries] : by_segment) {
    Segment& segment = *segments_[id];
    segment.tier.payload_version = ++last_seq_;
    if (!touched_demoted.contains(id)) NoteAccess(id, true);  // else counted at the load
    if (!write_through_) continue;
    patch_rows.clear();
    for (const auto& [row, i] : entries) patch_rows.push_back(row);
    const std::string patch = EncodeOffloadPatch(
        last_seq_, chunk.layer_begin, chunk.layer_end, patch_rows, !chunk.importance.empty(), lrb,
        [&](size_t l, size_t r, std::byte* k, std::byte* v) {
          const size_t src = (l * n + entries[r].second) * lrb;
          std::memcpy(k, chunk.keys.data() + src, lrb);
          std::memcpy(v, chunk.values.data() + src, lrb);
        });
    batch.Put(SegmentPatchKey(ctx_.tenant, storage_name_, id, last_seq_), patch);
    ChargeDisk(segment, patch.size());
    written += patch.size();
  }
  if (disk_estimate > 0) {
    // Trade the estimate for what the patches really take.
    tiers_->disk().Free(disk_estimate);
    tiers_->disk().ForceReserve(written);
  }
  if (absl::Status s = WriteThrough(batch, "offload"); !s.ok()) return s;
  return result;
}

ScoreIndexView HostRowStore::View() const {
  ScoreIndexView view;
  view.block_capacity = layout_.rows;
  view.blocks.reserve(static_cast<size_t>(live_segments_));
  std::vector<int32_t> block_of_segment(segments_.size(), -1);
  for (size_t id = 0; id < segments_.size(); ++id) {
    const auto& segment = segments_[id];
    if (segment == nullptr) continue;
    block_of_segment[id] = static_cast<int32_t>(view.blocks.size());
    ScoreIndexView::Block& block = view.blocks.emplace_back();
    block.keys = segment->index();
    block.sketch_codes = segment->sketch_codes();
    block.sketch_scales = segment->sketch_scales();
    block.rows = segment->high_water();
    block.candidate = segment->candidate();
    block.positions = segment->positions();
    block.importance = segment->importance();
  }
  view.slot_of = [this, block_of = std::move(block_of_segment),
                  cap = int64_t{layout_.rows}](int64_t position) -> int64_t {
    const auto it = slots_.find(position);
    if (it == slots_.end() || block_of[it->second.segment] < 0) return -1;
    return block_of[it->second.segment] * cap + it->second.slot;
  };
  return view;
}

absl::Status HostRowStore::MarkPromoted(absl::Span<const int64_t> positions) {
  std::vector<SlotRef> refs;
  if (absl::Status s = Resolve(positions, &refs); !s.ok()) return s;
  absl::flat_hash_map<uint32_t, std::vector<PatchRow>> changed;
  for (size_t i = 0; i < refs.size(); ++i) {
    const SlotRef& ref = refs[i];
    Segment& segment = *segments_[ref.segment];
    if (segment.promoted()[ref.slot]) continue;  // listed twice
    segment.promoted()[ref.slot] = 1;
    segment.candidate()[ref.slot] = 0;
    ++counts_.promoted;
    --counts_.candidate;
    if (write_through_) changed[ref.segment].push_back({ref.slot, positions[i]});
  }
  KvBatch batch;
  for (auto& [id, rows] : changed) {
    const std::string patch = EncodeSlotsPatch(PatchKind::kPromote, ++last_seq_, rows);
    batch.Put(SegmentPatchKey(ctx_.tenant, storage_name_, id, last_seq_), patch);
    ChargeDisk(*segments_[id], patch.size());
    tiers_->disk().ForceReserve(patch.size());
  }
  return WriteThrough(batch, "promotion");
}

absl::Status HostRowStore::Gather(absl::Span<const int64_t> positions, int32_t layer_begin,
                                  int32_t layer_end, absl::Span<std::byte> keys,
                                  absl::Span<std::byte> values) {
  if (geometry_.index_only) {
    return absl::FailedPreconditionError(absl::StrCat(
        "session '", ctx_.session_id, "' is index-only: it stores no payload to return"));
  }
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

  // Payloads on disk: loaded and kept when host RAM has room (a promotion), else read for
  // this call only (read-through) and dropped below.
  absl::flat_hash_set<uint32_t> seen;
  std::vector<uint32_t> transient;
  auto drop_transient = [&] {
    for (const uint32_t id : transient) segments_[id]->DropPayload();
  };
  for (const SlotRef& ref : refs) {
    if (!seen.insert(ref.segment).second) continue;
    const bool resident = segments_[ref.segment]->resident();
    NoteAccess(ref.segment, resident);
    if (resident) continue;
    absl::Status s = LoadPayload(ref.segment, false);
    if (absl::IsResourceExhausted(s)) {
      s = ReadPayload(ref.segment);
      if (s.ok()) {
        transient.push_back(ref.segment);
        tiers_->stats().read_through.fetch_add(1, std::memory_order_relaxed);
        tiers_->stats().read_through_bytes.fetch_add(layout_.payload_bytes,
                                                     std::memory_order_relaxed);
      }
    }
    if (!s.ok()) {
      drop_transient();
      return s;
    }
  }
  for (int32_t l = layer_begin; l < layer_end; ++l) {
    for (size_t i = 0; i < n; ++i) {
      const Segment& segment = *segments_[refs[i].segment];
      const size_t dst = (static_cast<size_t>(l - layer_begin) * n + i) * lrb;
      std::memcpy(keys.data() + dst, segment.keys(refs[i].slot, l), lrb);
      std::memcpy(values.data() + dst, segment.values(refs[i].slot, l), lrb);
    }
  }
  drop_transient();
  return absl::OkStatus();
}

ReleaseResult HostRowStore::Release(absl::Span<const int64_t> positions) {
  ReleaseResult result;
  absl::flat_hash_map<uint32_t, std::vector<PatchRow>> changed;
  absl::flat_hash_set<uint32_t> emptied;
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
    if (segment.resident()) {
      ++free_slots_;
      if (was_full) open_segments_.push_back(ref.segment);
    }
    if (write_through_) changed[ref.segment].push_back({ref.slot, p});
    // An empty segment goes back to the tiers, unless a demotion copy of it is in flight
    // (FinishDemotion frees it then).
    if (segment.live() == 0 && !segment.tier.demoting) emptied.insert(ref.segment);
  }
  KvBatch batch;
  for (const uint32_t id : emptied) result.bytes_freed += FreeSegment(id, &batch);
  for (auto& [id, rows] : changed) {
    if (emptied.contains(id)) continue;
    const std::string patch = EncodeSlotsPatch(PatchKind::kRelease, ++last_seq_, rows);
    batch.Put(SegmentPatchKey(ctx_.tenant, storage_name_, id, last_seq_), patch);
    ChargeDisk(*segments_[id], patch.size());
    tiers_->disk().ForceReserve(patch.size());
  }
  if (db_ != nullptr && !batch.empty()) {
    // Deleting freed segments matters in every durability mode: a demoted base must not
    // outlive its rows.
    result.persisted = db_->Write(batch);
  }
  return result;
}

absl::Status HostRowStore::PersistSession(absl::string_view record) {
  if (!write_through_) return absl::OkStatus();
  KvBatch batch;
  batch.Put(SessionRecordKey(ctx_.tenant, ctx_.session_id), record);
  return WriteThrough(batch, "session");
}

absl::Status HostRowStore::Drop() {
  dropped_ = true;
  KvBatch batch;
  for (uint32_t id = 0; id < segments_.size(); ++id) {
    if (segments_[id] != nullptr) FreeSegment(id, &batch);
  }
  // No position is stored any more: a call that found the session before the drop (a
  // payload still streaming, a Promote, a Release) gets NOT_FOUND, never a freed segment.
  slots_.clear();
  if (db_ == nullptr) return absl::OkStatus();
  KvBatch whole;
  const std::string prefix = SessionPrefix(ctx_.tenant, storage_name_);
  whole.DeleteRange(prefix, PrefixEnd(prefix));
  whole.Delete(SessionRecordKey(ctx_.tenant, ctx_.session_id));
  return db_->Write(whole);
}

absl::StatusOr<DemotionPlan> HostRowStore::PrepareDemotion(uint32_t id) {
  if (geometry_.index_only) {
    return absl::FailedPreconditionError("an index-only session has no payload to demote");
  }
  if (db_ == nullptr) return absl::FailedPreconditionError("no disk tier");
  if (id >= segments_.size() || segments_[id] == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("segment ", id, " does not exist"));
  }
  Segment& segment = *segments_[id];
  if (!segment.resident() || segment.tier.demoting) {
    return absl::FailedPreconditionError(absl::StrCat("segment ", id, " is not resident"));
  }
  DemotionPlan plan;
  plan.segment = id;
  plan.payload_version = segment.tier.payload_version;
  plan.db = db_;
  const bool on_disk =
      segment.tier.has_base && segment.tier.base_payload_version == segment.tier.payload_version;
  if (!on_disk) {
    // The base replaces every record of the segment up to now; patches written while the
    // copy is in flight have later sequence numbers and stay.
    const quant::Format format =
        InGuardWindow(segment) ? quant::Format::kRaw : tiers_->options().cold_format;
    const std::string base = EncodeSegmentBase(segment, last_seq_, format);
    if (absl::Status s = tiers_->disk().Reserve(base.size()); !s.ok()) return s;
    plan.base_bytes = base.size();
    plan.patch_bytes = segment.tier.disk_bytes;
    plan.batch.Put(SegmentBaseKey(ctx_.tenant, storage_name_, id), base);
    plan.batch.DeleteRange(SegmentPatchKey(ctx_.tenant, storage_name_, id, 0),
                           SegmentPatchKey(ctx_.tenant, storage_name_, id, last_seq_ + 1));
  }
  segment.tier.demoting = true;
  return plan;
}

uint64_t HostRowStore::FinishDemotion(DemotionPlan& plan, const absl::Status& written) {
  if (segments_[plan.segment] == nullptr) {
    // The session was dropped while the copy was written: delete what the copy wrote.
    if (plan.base_bytes > 0) tiers_->disk().Free(plan.base_bytes);
    KvBatch batch;
    const std::string prefix = SegmentPrefix(ctx_.tenant, storage_name_, plan.segment);
    batch.DeleteRange(prefix, PrefixEnd(prefix));
    (void)db_->Write(batch);
    return 0;
  }
  Segment& segment = *segments_[plan.segment];
  segment.tier.demoting = false;
  if (plan.base_bytes > 0) {
    if (written.ok()) {
      segment.tier.has_base = true;
      segment.tier.base_payload_version = plan.payload_version;
      // The base replaced the records counted in patch_bytes.
      tiers_->disk().Free(plan.patch_bytes);
      disk_charged_ -= plan.patch_bytes;
      segment.tier.disk_bytes -= plan.patch_bytes;
      ChargeDisk(segment, plan.base_bytes);
    } else {
      tiers_->disk().Free(plan.base_bytes);
      tiers_->stats().demote_failures.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (segment.live() == 0) {
    // Emptied while the copy was written: free it now, records included.
    KvBatch batch;
    const uint64_t freed = FreeSegment(plan.segment, &batch);
    (void)db_->Write(batch);
    return freed;
  }
  if (!written.ok() || segment.tier.payload_version != plan.payload_version) return 0;
  segment.DropPayload();
  host_->Free(layout_.payload_bytes);
  charged_ -= layout_.payload_bytes;
  NoteDemoted(plan.segment);
  tiers_->OnDemoted(PageKey(plan.segment), layout_.total_bytes);
  return layout_.payload_bytes;
}

absl::Status HostRowStore::Prefetch(uint32_t id) {
  if (id >= segments_.size() || segments_[id] == nullptr || segments_[id]->resident()) {
    return absl::OkStatus();
  }
  if (!tiers_->FitsUnderHighWatermark(layout_.payload_bytes)) return absl::OkStatus();
  return LoadPayload(id, true);
}

absl::StatusOr<StageResult> HostRowStore::Stage() {
  StageResult result;
  for (uint32_t id = 0; id < segments_.size(); ++id) {
    if (segments_[id] == nullptr) continue;
    if (segments_[id]->resident()) {
      ++result.segments_resident;
      continue;
    }
    if (!tiers_->FitsUnderHighWatermark(layout_.payload_bytes)) {
      ++result.segments_left;
      continue;
    }
    absl::Status s = LoadPayload(id, true);
    if (absl::IsResourceExhausted(s)) {
      ++result.segments_left;
      continue;
    }
    if (!s.ok()) return s;
    ++result.segments_loaded;
    result.bytes_loaded += layout_.payload_bytes;
  }
  return result;
}

void HostRowStore::RebuildIndex(Segment& segment) const {
  for (size_t si = 0; si < geometry_.scoring_layers.size(); ++si) {
    const int32_t l = geometry_.scoring_layers[si];
    for (int32_t slot = 0; slot < segment.high_water(); ++slot) {
      if (segment.positions()[slot] < 0) continue;
      const uint64_t word = segment.layer_mask()[static_cast<size_t>(slot) * layout_.mask_words +
                                                 static_cast<size_t>(l / 64)];
      if ((word & (uint64_t{1} << (l % 64))) == 0) continue;
      IndexRowKeys(geometry_, layout_, segment, si, slot, segment.keys(slot, l));
    }
  }
}

absl::Status HostRowStore::ApplyPatch(Segment& segment, const DecodedPatch& patch,
                                      absl::string_view key) {
  const size_t lrb = layout_.layer_row_bytes;
  const size_t count = patch.rows.size();
  if (patch.kind == PatchKind::kOffload && patch.layer_end > geometry_.num_layers) {
    return absl::DataLossError(absl::StrCat("record ", key, ": layer range out of geometry"));
  }
  for (size_t r = 0; r < count; ++r) {
    const PatchRow& row = patch.rows[r];
    if (row.slot < 0 || row.slot >= layout_.rows || row.position < 0) {
      return absl::DataLossError(absl::StrCat("record ", key, ": bad slot or position"));
    }
    const int64_t held = segment.positions()[row.slot];
    if (patch.kind != PatchKind::kOffload) {
      // A free slot: the offload of this row failed to reach the disk (its client got the
      // error) while the row stayed in RAM and was later released or promoted. Nothing of
      // it was acknowledged, so there is nothing to undo.
      if (held == -1) continue;
      if (held != row.position) {
        return absl::DataLossError(absl::StrCat("record ", key, ": slot ", row.slot,
                                                " does not hold position ", row.position));
      }
      if (patch.kind == PatchKind::kRelease) {
        segment.ClearSlot(row.slot);
      } else {
        segment.promoted()[row.slot] = 1;
      }
      continue;
    }
    if (held == -1) {
      segment.RestoreSlot(row.slot, row.position);
    } else if (held != row.position) {
      return absl::DataLossError(
          absl::StrCat("record ", key, ": slot ", row.slot, " holds another position"));
    }
    for (int32_t l = patch.layer_begin; l < patch.layer_end; ++l) {
      const size_t src = (static_cast<size_t>(l - patch.layer_begin) * count + r) * lrb;
      std::memcpy(segment.keys(row.slot, l), patch.keys.data() + src, lrb);
      std::memcpy(segment.values(row.slot, l), patch.values.data() + src, lrb);
    }
    if (patch.has_importance) segment.importance()[row.slot] = row.importance;
    segment.RecordLayers(row.slot, patch.layer_begin, patch.layer_end);
    segment.promoted()[row.slot] = 0;
  }
  return absl::OkStatus();
}

void HostRowStore::AdoptRecovered(uint32_t id, std::unique_ptr<Segment> segment, bool dirty) {
  Segment& seg = *segment;
  for (int32_t slot = 0; slot < seg.high_water(); ++slot) {
    if (seg.positions()[slot] < 0) continue;
    // Two slots claiming one position cannot come from acknowledged changes; keep the
    // first and drop the other.
    if (slots_.contains(seg.positions()[slot])) seg.ClearSlot(slot);
  }
  seg.RebuildFreeList();
  if (seg.live() == 0) {
    KvBatch batch;
    const std::string prefix = SegmentPrefix(ctx_.tenant, storage_name_, id);
    batch.DeleteRange(prefix, PrefixEnd(prefix));
    (void)db_->Write(batch);
    disk_charged_ -= seg.tier.disk_bytes;
    return;
  }
  RebuildIndex(seg);
  for (int32_t slot = 0; slot < seg.high_water(); ++slot) {
    const int64_t p = seg.positions()[slot];
    if (p < 0) continue;
    const bool complete = seg.complete(slot);
    seg.candidate()[slot] = complete && seg.promoted()[slot] == 0 ? 1 : 0;
    slots_.emplace(p, SlotRef{id, slot});
    ++counts_.stored;
    counts_.complete += complete ? 1 : 0;
    counts_.candidate += seg.candidate()[slot];
    counts_.promoted += complete && seg.promoted()[slot] != 0 ? 1 : 0;
    if (!complete) seg.promoted()[slot] = 0;
    max_position_ = std::max(max_position_, p);
  }
  seg.tier.page_key = PageKey(id);
  seg.tier.payload_version = ++last_seq_;
  if (!dirty && seg.tier.has_base) seg.tier.base_payload_version = seg.tier.payload_version;
  if (segments_.size() <= id) segments_.resize(id + 1);
  segments_[id] = std::move(segment);
  ++live_segments_;
  tiers_->ForceChargeTenant(ctx_.tenant, layout_.total_bytes);
  quota_charged_ += layout_.total_bytes;
  host_->ForceReserve(layout_.head_bytes);
  charged_ += layout_.head_bytes;

  bool resident = tiers_->FitsUnderHighWatermark(layout_.payload_bytes) &&
                  host_->Reserve(layout_.payload_bytes).ok();
  if (!resident && (dirty || !seg.tier.has_base)) {
    // The payload must go to disk as a base before host RAM lets go of it.
    absl::StatusOr<DemotionPlan> plan = PrepareDemotion(id);
    if (plan.ok()) {
      absl::Status written = plan->Write();
      seg.tier.demoting = false;
      if (written.ok()) {
        seg.tier.has_base = true;
        seg.tier.base_payload_version = seg.tier.payload_version;
        disk_charged_ -= plan->patch_bytes;
        seg.tier.disk_bytes -= plan->patch_bytes;
        ChargeDisk(seg, plan->base_bytes);
        tiers_->disk().Free(plan->base_bytes);  // charged in bulk after recovery
      } else {
        tiers_->disk().Free(plan->base_bytes);
      }
    }
    if (!seg.tier.has_base || seg.tier.base_payload_version != seg.tier.payload_version) {
      // Could not write it: keep it in host RAM over the watermark rather than lose it.
      host_->ForceReserve(layout_.payload_bytes);
      resident = true;
    }
  }
  if (resident) {
    charged_ += layout_.payload_bytes;
    ++resident_segments_;
    host_->AddSegments(1);
    if (!seg.full()) {
      open_segments_.push_back(id);
      free_slots_ += layout_.rows - seg.live();
    }
    tiers_->OnCreated(PageKey(id), layout_.total_bytes);
  } else {
    seg.DropPayload();
    ++on_disk_;
    tiers_->disk().AddSegments(1);
    tiers_->OnCreatedDemoted(PageKey(id), layout_.total_bytes);
  }
}

absl::Status HostRowStore::RecoverFromDb(int64_t* data_loss) {
  const std::string prefix = SessionPrefix(ctx_.tenant, storage_name_);
  std::unique_ptr<Segment> current;
  uint32_t current_id = 0;
  uint64_t base_version = 0;
  bool dirty = false;
  bool broken = false;
  absl::Status failure;
  std::vector<uint32_t> broken_ids;
  std::vector<std::string> bad_keys;  // records whose key cannot be ours
  auto finish = [&] {
    if (current == nullptr) return;
    if (broken) {
      broken_ids.push_back(current_id);
      disk_charged_ -= current->tier.disk_bytes;
    } else {
      AdoptRecovered(current_id, std::move(current), dirty);
    }
    current.reset();
  };
  absl::Status scan = db_->Scan(prefix, [&](absl::string_view key, absl::string_view value) {
    absl::string_view rest = key.substr(prefix.size());
    uint32_t id = 0;
    if (!absl::ConsumePrefix(&rest, "g/") || rest.size() < 10 ||
        !absl::SimpleHexAtoi(rest.substr(0, 8), &id) || rest[8] != '/') {
      return true;  // the session record, read by the caller
    }
    rest.remove_prefix(9);
    if (id >= kMaxSegments) {
      // Keys are not covered by the CRC: a damaged one must not size the segment table.
      bad_keys.emplace_back(key);
      ++*data_loss;
      tiers_->stats().data_loss.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (current == nullptr || id != current_id) {
      finish();
      current = Segment::Allocate(layout_);
      if (current == nullptr) {
        failure = absl::ResourceExhaustedError("host allocation failed during recovery");
        return false;
      }
      // Layers that never arrived stay zero: they are encoded with the segment later, and
      // heap garbage must neither reach the disk nor set a quantization group's scale.
      std::memset(current->payload(), 0, layout_.payload_bytes);
      current_id = id;
      base_version = 0;
      dirty = false;
      broken = false;
    }
    if (broken) return true;
    ChargeDisk(*current, value.size());
    absl::Status s;
    if (rest == "b") {
      absl::StatusOr<uint64_t> version = DecodeSegmentBase(value, key, true, current.get());
      if (version.ok()) {
        base_version = *version;
        current->tier.has_base = true;
        last_seq_ = std::max(last_seq_, base_version);
      } else {
        s = version.status();
      }
    } else {
      absl::StatusOr<DecodedPatch> patch = DecodePatch(value, key, layout_.layer_row_bytes);
      if (!patch.ok()) {
        s = patch.status();
      } else if (patch->seq > base_version) {
        s = ApplyPatch(*current, *patch, key);
        dirty = true;
        last_seq_ = std::max(last_seq_, patch->seq);
      }
    }
    if (!s.ok()) {
      broken = true;
      ++*data_loss;
      tiers_->stats().data_loss.fetch_add(1, std::memory_order_relaxed);
    }
    return true;
  });
  finish();
  if (!scan.ok()) return scan;
  if (!failure.ok()) return failure;
  // Segments that failed their checks: their rows are lost; their records go, so that a
  // reused segment id never mixes with them.
  KvBatch batch;
  for (const uint32_t id : broken_ids) {
    const std::string seg = SegmentPrefix(ctx_.tenant, storage_name_, id);
    batch.DeleteRange(seg, PrefixEnd(seg));
  }
  for (const std::string& key : bad_keys) batch.Delete(key);
  if (absl::Status s = db_->Write(batch); !s.ok()) return s;
  for (uint32_t id = 0; id < segments_.size(); ++id) {
    if (segments_[id] == nullptr) free_segment_ids_.push_back(id);
  }
  tiers_->disk().ForceReserve(disk_charged_);
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<RowStore> RowStore::Create(const Geometry& geometry, StoreContext context) {
  // The scorer streams blocks of a multiple of 16 slots; round anything else up.
  context.segment_rows = std::max<int32_t>(16, (context.segment_rows + 15) / 16 * 16);
  Geometry g = geometry;
  if (g.scoring_layers.empty()) {  // not normalized: empty means every layer
    for (int32_t l = 0; l < g.num_layers; ++l) g.scoring_layers.push_back(l);
  }
  return std::make_unique<HostRowStore>(g, std::move(context));
}

absl::StatusOr<std::unique_ptr<RowStore>> RowStore::Recover(const Geometry& geometry,
                                                            StoreContext context,
                                                            int64_t* data_loss) {
  if (context.tiers == nullptr || context.tiers->db() == nullptr) {
    return absl::FailedPreconditionError("recovery needs a tier manager with a database");
  }
  std::unique_ptr<RowStore> store = Create(geometry, std::move(context));
  if (absl::Status s = static_cast<HostRowStore*>(store.get())->RecoverFromDb(data_loss); !s.ok()) {
    return s;
  }
  return store;
}

scorer::KeyType ScorerKeyType(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return scorer::KeyType::kFloat16;
    case DType::kBFloat16:
      return scorer::KeyType::kBFloat16;
    default:
      return scorer::KeyType::kFloat32;
  }
}

}  // namespace kvtier::storage
