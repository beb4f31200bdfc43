// The on-disk encoding of segments and sessions (docs/STORAGE.md, "Segment format").
//
// A segment lives on disk as a base image plus patches. The base holds the segment's slots
// (positions, importance, arrived layers, promoted flags) and its payload, raw or in a
// quantized cold format, at a version: the sequence number of the last change it
// includes. Each acknowledged change after it (an offload, a release, a promotion) is one
// patch keyed by its own sequence number. Replaying the patches newer than the base onto
// the base gives the segment as it was acknowledged. Every record ends with the CRC32C of
// everything before it; a record that fails its check is DATA_LOSS, never served.
#ifndef KVTIER_STORAGE_SEGMENT_CODEC_H_
#define KVTIER_STORAGE_SEGMENT_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/geometry.h"
#include "storage/quant/codec.h"
#include "storage/segment.h"

namespace kvtier::storage {

// ---- Session record ----

struct SessionRecord {
  std::string tenant;
  std::string session_id;
  Geometry geometry;  // normalized
  int64_t ttl_seconds = 0;
  int32_t segment_rows = 0;
  quant::Format cold_format = quant::Format::kRaw;
  uint64_t incarnation = 0;  // StoreContext::incarnation
};

std::string EncodeSessionRecord(const SessionRecord& record);
// DATA_LOSS (naming `key`) when the record is truncated, fails its CRC or holds an invalid
// geometry.
absl::StatusOr<SessionRecord> DecodeSessionRecord(absl::string_view bytes, absl::string_view key);

// ---- Base image ----

// Encodes slots [0, high_water) of `segment` (payload resident) at `version`. The payload
// is stored in `format` (kRaw: bit-exact), quantized in groups of quant::kDefaultGroup.
std::string EncodeSegmentBase(const Segment& segment, uint64_t version, quant::Format format);

// Decodes a base into `segment` (same layout, payload allocated). With `restore_slots`, the
// slot metadata is restored too (recovery); otherwise only the payload is (loading a demoted
// segment whose metadata stayed in host RAM). Returns the base's version. DATA_LOSS naming
// `key` on a CRC mismatch, truncation or a layout that does not match.
absl::StatusOr<uint64_t> DecodeSegmentBase(absl::string_view bytes, absl::string_view key,
                                           bool restore_slots, Segment* segment);

// ---- Patches ----

enum class PatchKind : uint8_t { kOffload = 1, kRelease = 2, kPromote = 3 };

// One row of a patch: the slot it changed and the row's position.
struct PatchRow {
  int32_t slot = 0;
  int64_t position = 0;
  float importance = 0.f;  // offload patches with importance only
};

// Encodes an offload patch of layers [layer_begin, layer_end) of `rows`. `fill(l, r, k, v)`
// copies layer_row_bytes of K and of V of layer layer_begin + l of rows[r] to k and v.
std::string EncodeOffloadPatch(
    uint64_t seq, int32_t layer_begin, int32_t layer_end, absl::Span<const PatchRow> rows,
    bool has_importance, size_t layer_row_bytes,
    absl::FunctionRef<void(size_t layer, size_t row, std::byte* keys, std::byte* values)> fill);

// Encodes a release or promote patch of `rows` (slots and positions only).
std::string EncodeSlotsPatch(PatchKind kind, uint64_t seq, absl::Span<const PatchRow> rows);

// A decoded patch. keys/values point into the bytes passed to DecodePatch.
struct DecodedPatch {
  PatchKind kind = PatchKind::kOffload;
  uint64_t seq = 0;
  int32_t layer_begin = 0;
  int32_t layer_end = 0;
  bool has_importance = false;
  std::vector<PatchRow> rows;
  // kOffload: [layer][row][kv][d] each, layer_row_bytes per (layer, row).
  absl::string_view keys;
  absl::string_view values;
};

// DATA_LOSS naming `key` when the patch is truncated, fails its CRC, has a bad header or
// a layer_row_bytes other than `layer_row_bytes`.
absl::StatusOr<DecodedPatch> DecodePatch(absl::string_view bytes, absl::string_view key,
                                         size_t layer_row_bytes);

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_SEGMENT_CODEC_H_
