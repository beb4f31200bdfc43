#include "storage/segment_codec.h"

#include <cstring>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/crc32c.h"

namespace kvtier::storage {
namespace {

// Records are little-endian, as every platform kvtier builds for (x86-64, aarch64).
constexpr uint32_t kSessionMagic = 0x5353564b;  // "KVSS"
constexpr uint32_t kBaseMagic = 0x4253564b;     // "KVSB"
constexpr uint32_t kPatchMagic = 0x5053564b;    // "KVSP"
constexpr uint8_t kFormatVersion = 2;

// Appends fixed-size fields and byte ranges to a string.
class Writer {
 public:
  explicit Writer(size_t reserve) { out_.reserve(reserve); }
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    Bytes(&v, sizeof(T));
  }
  void Bytes(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
  void String(absl::string_view s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  // Grows the output by `size` bytes and returns where they start.
  std::byte* Extend(size_t size) {
    const size_t at = out_.size();
    out_.resize(at + size);
    return reinterpret_cast<std::byte*>(out_.data() + at);
  }
  // Appends the CRC32C of everything written and returns the record.
  std::string Finish() && {
    Put<uint32_t>(ComputeCrc32c(
        absl::MakeConstSpan(reinterpret_cast<const std::byte*>(out_.data()), out_.size())));
    return std::move(out_);
  }

 private:
  std::string out_;
};

// Reads what Writer wrote; every read is bounds-checked and sets ok() false on overrun.
class Reader {
 public:
  explicit Reader(absl::string_view body) : data_(body) {}
  template <typename T>
  T Get() {
    T v{};
    const char* p = Take(sizeof(T));
    if (p != nullptr) std::memcpy(&v, p, sizeof(T));
    return v;
  }
  const char* Take(size_t size) {
    if (!ok_ || size > data_.size() - at_) {
      ok_ = false;
      return nullptr;
    }
    const char* p = data_.data() + at_;
    at_ += size;
    return p;
  }
  absl::string_view View(size_t size) {
    const char* p = Take(size);
    return p == nullptr ? absl::string_view() : absl::string_view(p, size);
  }
  std::string String() {
    const uint32_t size = Get<uint32_t>();
    return std::string(View(size));
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && at_ == data_.size(); }

 private:
  absl::string_view data_;
  size_t at_ = 0;
  bool ok_ = true;
};

absl::Status Loss(absl::string_view key, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("record ", key, ": ", what));
}

// Checks the trailing CRC32C and returns the body before it.
absl::StatusOr<absl::string_view> CheckedBody(absl::string_view bytes, absl::string_view key) {
  if (bytes.size() < sizeof(uint32_t)) return Loss(key, "truncated");
  const absl::string_view body = bytes.substr(0, bytes.size() - sizeof(uint32_t));
  uint32_t stored;
  std::memcpy(&stored, bytes.data() + body.size(), sizeof(stored));
  const uint32_t computed = ComputeCrc32c(
      absl::MakeConstSpan(reinterpret_cast<const std::byte*>(body.data()), body.size()));
  if (stored != computed) {
    return Loss(key,
                absl::StrCat("CRC32C mismatch (stored ", stored, ", computed ", computed, ")"));
  }
  return body;
}

// The K (or V) block of a segment's payload: rows [0, high_water), every layer.
struct PayloadBlock {
  int64_t rows = 0;
  int64_t channels = 0;  // num_layers * kv_heads * head_dim
  size_t offset = 0;     // of the block's first element inside a row
};

PayloadBlock BlockOf(const SegmentLayout& l, int32_t high_water, bool values) {
  PayloadBlock b;
  b.rows = high_water;
  b.channels =
      static_cast<int64_t>(static_cast<size_t>(l.num_layers) * l.layer_row_bytes / l.elem_bytes);
  b.offset = values ? static_cast<size_t>(l.num_layers) * l.layer_row_bytes : 0;
  return b;
}

DType DTypeOfSize(size_t elem_bytes) { return elem_bytes == 4 ? DType::kFloat32 : DType::kFloat16; }

}  // namespace

// ---- Session record ----

std::string EncodeSessionRecord(const SessionRecord& r) {
  Writer w(256);
  w.Put<uint32_t>(kSessionMagic);
  w.Put<uint8_t>(kFormatVersion);
  w.String(r.tenant);
  w.String(r.session_id);
  w.Put<int32_t>(r.geometry.num_layers);
  w.Put<int32_t>(r.geometry.num_q_heads);
  w.Put<int32_t>(r.geometry.num_kv_heads);
  w.Put<int32_t>(r.geometry.head_dim);
  w.Put<uint8_t>(static_cast<uint8_t>(r.geometry.dtype));
  w.Put<uint32_t>(static_cast<uint32_t>(r.geometry.scoring_layers.size()));
  for (const int32_t l : r.geometry.scoring_layers) w.Put<int32_t>(l);
  w.Put<int64_t>(r.ttl_seconds);
  w.Put<int32_t>(r.segment_rows);
  w.Put<uint8_t>(static_cast<uint8_t>(r.cold_format));
  w.Put<uint64_t>(r.incarnation);
  return std::move(w).Finish();
}

absl::StatusOr<SessionRecord> DecodeSessionRecord(absl::string_view bytes, absl::string_view key) {
  absl::StatusOr<absl::string_view> body = CheckedBody(bytes, key);
  if (!body.ok()) return body.status();
  Reader r(*body);
  if (r.Get<uint32_t>() != kSessionMagic || r.Get<uint8_t>() != kFormatVersion) {
    return Loss(key, "not a session record of format 2");
  }
  SessionRecord s;
  s.tenant = r.String();
  s.session_id = r.String();
  s.geometry.num_layers = r.Get<int32_t>();
  s.geometry.num_q_heads = r.Get<int32_t>();
  s.geometry.num_kv_heads = r.Get<int32_t>();
  s.geometry.head_dim = r.Get<int32_t>();
  s.geometry.dtype = static_cast<DType>(r.Get<uint8_t>());
  const uint32_t scoring = r.Get<uint32_t>();
  if (!r.ok() || scoring > static_cast<uint32_t>(kMaxLayers)) return Loss(key, "truncated");
  for (uint32_t i = 0; i < scoring; ++i) s.geometry.scoring_layers.push_back(r.Get<int32_t>());
  s.ttl_seconds = r.Get<int64_t>();
  s.segment_rows = r.Get<int32_t>();
  s.cold_format = static_cast<quant::Format>(r.Get<uint8_t>());
  s.incarnation = r.Get<uint64_t>();
  if (!r.done()) return Loss(key, "truncated or trailing bytes");
  if (absl::Status g = ValidateAndNormalizeGeometry(s.geometry); !g.ok()) {
    return Loss(key, g.message());
  }
  if (s.segment_rows <= 0 || s.segment_rows % 16 != 0 || s.ttl_seconds < 0) {
    return Loss(key, "bad segment_rows or ttl");
  }
  if (!quant::ParseFormat(quant::FormatName(s.cold_format)).ok()) {
    return Loss(key, "unknown cold format");
  }
  return s;
}

// ---- Base image ----

std::string EncodeSegmentBase(const Segment& segment, uint64_t version, quant::Format format) {
  const SegmentLayout& l = segment.layout();
  const int32_t hw = segment.high_water();
  const size_t n = static_cast<size_t>(hw);
  const DType dtype = DTypeOfSize(l.elem_bytes);
  const int32_t group = quant::kDefaultGroup;
  const PayloadBlock k = BlockOf(l, hw, false);
  const PayloadBlock v = BlockOf(l, hw, true);
  const size_t k_bytes =
      quant::EncodedSize(format, quant::Axis::kKeys, dtype, k.rows, k.channels, group);
  const size_t v_bytes =
      quant::EncodedSize(format, quant::Axis::kValues, dtype, v.rows, v.channels, group);

  Writer w(64 + n * (8 + 4 + 2 + 8 * static_cast<size_t>(l.mask_words) + 1) + k_bytes + v_bytes);
  w.Put<uint32_t>(kBaseMagic);
  w.Put<uint8_t>(kFormatVersion);
  w.Put<uint8_t>(static_cast<uint8_t>(format));
  w.Put<uint8_t>(static_cast<uint8_t>(l.elem_bytes));
  w.Put<uint64_t>(version);
  w.Put<int32_t>(l.rows);
  w.Put<int32_t>(hw);
  w.Put<int32_t>(l.num_layers);
  w.Put<uint64_t>(l.layer_row_bytes);
  w.Put<int32_t>(group);
  w.Bytes(segment.positions(), n * sizeof(int64_t));
  w.Bytes(segment.importance(), n * sizeof(float));
  w.Bytes(segment.layer_count(), n * sizeof(uint16_t));
  w.Bytes(segment.layer_mask(), n * static_cast<size_t>(l.mask_words) * sizeof(uint64_t));
  w.Bytes(segment.promoted(), n);
  for (const PayloadBlock* b : {&k, &v}) {
    const quant::Axis axis = b == &k ? quant::Axis::kKeys : quant::Axis::kValues;
    const size_t bytes = b == &k ? k_bytes : v_bytes;
    w.Put<uint64_t>(bytes);
    quant::Encode(format, axis, dtype, segment.payload() + b->offset, l.row_bytes, b->rows,
                  b->channels, group, w.Extend(bytes));
  }
  return std::move(w).Finish();
}

absl::StatusOr<uint64_t> DecodeSegmentBase(absl::string_view bytes, absl::string_view key,
                                           bool restore_slots, Segment* segment) {
  absl::StatusOr<absl::string_view> body = CheckedBody(bytes, key);
  if (!body.ok()) return body.status();
  const SegmentLayout& l = segment->layout();
  Reader r(*body);
  if (r.Get<uint32_t>() != kBaseMagic || r.Get<uint8_t>() != kFormatVersion) {
    return Loss(key, "not a segment base of format 2");
  }
  const auto format = static_cast<quant::Format>(r.Get<uint8_t>());
  const uint8_t elem = r.Get<uint8_t>();
  const uint64_t version = r.Get<uint64_t>();
  const int32_t rows = r.Get<int32_t>();
  const int32_t hw = r.Get<int32_t>();
  const int32_t layers = r.Get<int32_t>();
  const uint64_t lrb = r.Get<uint64_t>();
  const int32_t group = r.Get<int32_t>();
  if (!r.ok() || elem != l.elem_bytes || rows != l.rows || layers != l.num_layers ||
      lrb != l.layer_row_bytes || hw < 0 || hw > rows || group <= 0 ||
      !quant::ParseFormat(quant::FormatName(format)).ok()) {
    return Loss(key, "header does not match the session's geometry");
  }
  const size_t n = static_cast<size_t>(hw);
  const absl::string_view positions = r.View(n * sizeof(int64_t));
  const absl::string_view importance = r.View(n * sizeof(float));
  const absl::string_view layer_count = r.View(n * sizeof(uint16_t));
  const absl::string_view layer_mask =
      r.View(n * static_cast<size_t>(l.mask_words) * sizeof(uint64_t));
  const absl::string_view promoted = r.View(n);
  const DType dtype = DTypeOfSize(l.elem_bytes);
  absl::string_view blocks[2];
  for (absl::string_view& block : blocks) block = r.View(r.Get<uint64_t>());
  if (!r.done()) return Loss(key, "truncated or trailing bytes");

  for (int b = 0; b < 2; ++b) {
    const PayloadBlock block = BlockOf(l, hw, b == 1);
    absl::Status s = quant::Decode(format, b == 0 ? quant::Axis::kKeys : quant::Axis::kValues,
                                   dtype, reinterpret_cast<const std::byte*>(blocks[b].data()),
                                   blocks[b].size(), block.rows, block.channels, group,
                                   segment->payload() + block.offset, l.row_bytes);
    if (!s.ok()) return Loss(key, s.message());
  }
  if (restore_slots) {
    std::memcpy(segment->positions(), positions.data(), positions.size());
    std::memcpy(segment->importance(), importance.data(), importance.size());
    std::memcpy(segment->layer_count(), layer_count.data(), layer_count.size());
    std::memcpy(segment->layer_mask(), layer_mask.data(), layer_mask.size());
    std::memcpy(segment->promoted(), promoted.data(), promoted.size());
    segment->set_high_water(hw);
    for (int32_t s = 0; s < hw; ++s) {
      const bool used = segment->positions()[s] >= 0;
      if (!used || segment->layer_count()[s] > l.num_layers) {
        if (used) return Loss(key, "slot with more layers than the geometry");
        segment->ClearSlot(s);
        continue;
      }
      segment->candidate()[s] = segment->complete(s) && segment->promoted()[s] == 0 ? 1 : 0;
    }
    segment->RebuildFreeList();
  }
  return version;
}

// ---- Patches ----

namespace {

Writer PatchHeader(PatchKind kind, uint64_t seq, int32_t layer_begin, int32_t layer_end,
                   size_t rows, bool has_importance, size_t layer_row_bytes, size_t reserve) {
  Writer w(48 + rows * 16 + reserve);
  w.Put<uint32_t>(kPatchMagic);
  w.Put<uint8_t>(kFormatVersion);
  w.Put<uint8_t>(static_cast<uint8_t>(kind));
  w.Put<uint64_t>(seq);
  w.Put<int32_t>(layer_begin);
  w.Put<int32_t>(layer_end);
  w.Put<uint32_t>(static_cast<uint32_t>(rows));
  w.Put<uint8_t>(has_importance ? 1 : 0);
  w.Put<uint64_t>(layer_row_bytes);
  return w;
}

}  // namespace

std::string EncodeOffloadPatch(
    uint64_t seq, int32_t layer_begin, int32_t layer_end, absl::Span<const PatchRow> rows,
    bool has_importance, size_t layer_row_bytes,
    absl::FunctionRef<void(size_t layer, size_t row, std::byte* keys, std::byte* values)> fill) {
  const size_t layers = static_cast<size_t>(layer_end - layer_begin);
  const size_t block = layers * rows.size() * layer_row_bytes;
  Writer w = PatchHeader(PatchKind::kOffload, seq, layer_begin, layer_end, rows.size(),
                         has_importance, layer_row_bytes, 2 * block);
  for (const PatchRow& row : rows) {
    w.Put<int32_t>(row.slot);
    w.Put<int64_t>(row.position);
  }
  if (has_importance) {
    for (const PatchRow& row : rows) w.Put<float>(row.importance);
  }
  std::byte* keys = w.Extend(block);
  std::byte* values = w.Extend(block);
  for (size_t l = 0; l < layers; ++l) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const size_t at = (l * rows.size() + i) * layer_row_bytes;
      fill(l, i, keys + at, values + at);
    }
  }
  return std::move(w).Finish();
}

std::string EncodeSlotsPatch(PatchKind kind, uint64_t seq, absl::Span<const PatchRow> rows) {
  Writer w = PatchHeader(kind, seq, 0, 0, rows.size(), false, 0, 0);
  for (const PatchRow& row : rows) {
    w.Put<int32_t>(row.slot);
    w.Put<int64_t>(row.position);
  }
  return std::move(w).Finish();
}

absl::StatusOr<DecodedPatch> DecodePatch(absl::string_view bytes, absl::string_view key,
                                         size_t layer_row_bytes) {
  absl::StatusOr<absl::string_view> body = CheckedBody(bytes, key);
  if (!body.ok()) return body.status();
  Reader r(*body);
  if (r.Get<uint32_t>() != kPatchMagic || r.Get<uint8_t>() != kFormatVersion) {
    return Loss(key, "not a patch of format 2");
  }
  DecodedPatch p;
  const uint8_t kind = r.Get<uint8_t>();
  p.seq = r.Get<uint64_t>();
  p.layer_begin = r.Get<int32_t>();
  p.layer_end = r.Get<int32_t>();
  const uint32_t count = r.Get<uint32_t>();
  p.has_importance = r.Get<uint8_t>() != 0;
  const uint64_t lrb = r.Get<uint64_t>();
  if (!r.ok() || kind < 1 || kind > 3 || p.layer_end > kMaxLayers) {
    return Loss(key, "bad patch header");
  }
  p.kind = static_cast<PatchKind>(kind);
  if (count > body->size() / 12) return Loss(key, "truncated");
  p.rows.resize(count);
  for (PatchRow& row : p.rows) {
    row.slot = r.Get<int32_t>();
    row.position = r.Get<int64_t>();
  }
  if (p.kind == PatchKind::kOffload) {
    if (lrb != layer_row_bytes || p.layer_begin < 0 || p.layer_end <= p.layer_begin) {
      return Loss(key, "offload patch does not match the session's geometry");
    }
    if (p.has_importance) {
      for (PatchRow& row : p.rows) row.importance = r.Get<float>();
    }
    const size_t block = static_cast<size_t>(p.layer_end - p.layer_begin) * count * lrb;
    p.keys = r.View(block);
    p.values = r.View(block);
  }
  if (!r.done()) return Loss(key, "truncated or trailing bytes");
  return p;
}

}  // namespace kvtier::storage
