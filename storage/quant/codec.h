// Quantized "cold" encodings of KV blocks (KIVI-style; docs/QUANTIZATION.md).
//
// A block is `rows` rows x `channels` elements of the session dtype: for example the keys of
// one layer of a segment, rows = token positions, channels = num_kv_heads * head_dim. Keys
// are quantized per channel (each channel's scale spans `group` consecutive rows), values per
// token (each row's scale spans `group` consecutive channels), as KIVI (Liu et al., 2024)
// found works best: key outliers sit in fixed channels, value errors should stay per token.
//
// The encoding carries no header: format, axis, dtype, shape and group travel in the segment
// header (DESIGN.md §3) and must be passed again to Decode. Layout of an encoded block
// (little-endian, contiguous, no padding; G = number of groups, see EncodedSize):
//   float32 scale[G]                       every format but kRaw
//   float32 min[G]                         kInt8 and kInt4 only
//   codes: rows x RowCodeBytes bytes       row r at r * RowCodeBytes, channel order
// Keys: group index = (r / group) * channels + c. Values: group index = r * ceil(channels /
// group) + c / group. Codes: kInt8 one unsigned byte per element, x = min + code * scale;
// kInt4 two per byte (even channel in the low nibble; with odd channels the high nibble of
// a row's last byte is 0), x = min + code * scale; kFp8E4M3 one E4M3 code per element, x =
// E4M3ToFloat(code) * scale; kRaw the elements as they are, scale and min absent.
//
// Non-finite inputs (the server rejects NaN/inf keys; values are not checked): scales and
// mins are computed over the finite elements of a group (scale 0, min 0 when there are
// none), so they are always finite. int8/int4 then store +inf as the group's top code, -inf
// and NaN as code 0 (the group's min). fp8 stores +-inf as +-448 (the group's absmax) and
// NaN as NaN. kRaw keeps everything bit for bit.
//
// All functions are thread-safe (no state); Encode and Decode allocate nothing.
#ifndef KVTIER_STORAGE_QUANT_CODEC_H_
#define KVTIER_STORAGE_QUANT_CODEC_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/geometry.h"

namespace kvtier::storage::quant {

enum class Format : uint8_t { kRaw = 0, kFp8E4M3 = 1, kInt8 = 2, kInt4 = 3 };

// "raw", "fp8", "int8", "int4" -> the format; INVALID_ARGUMENT naming the accepted values
// otherwise.
absl::StatusOr<Format> ParseFormat(absl::string_view name);

// The name ParseFormat accepts ("raw", "fp8", "int8", "int4"); "unknown" for other values.
absl::string_view FormatName(Format format);

// Which way a block's groups run: keys per channel (groups of rows), values per token
// (groups of channels).
enum class Axis : uint8_t { kKeys, kValues };

// Group size (rows for keys, channels for values) that KIVI uses and we default to.
inline constexpr int32_t kDefaultGroup = 32;

// OK when Encode/Decode accept these parameters: a known format, dtype kFloat16,
// kBFloat16 or kFloat32, rows >= 0, channels >= 0, group >= 1 (group is ignored for kRaw).
// INVALID_ARGUMENT naming the parameter otherwise.
absl::Status ValidateBlock(Format format, Axis axis, storage::DType dtype, int64_t rows,
                           int64_t channels, int32_t group);

// Number of (scale, min) groups of a block: ceil(rows / group) * channels for keys,
// rows * ceil(channels / group) for values; 0 for kRaw or invalid parameters.
int64_t NumGroups(Format format, Axis axis, int64_t rows, int64_t channels, int32_t group);

// Bytes of one row's codes: channels * DTypeSize for kRaw, channels for kFp8E4M3 and kInt8,
// ceil(channels / 2) for kInt4; 0 for invalid parameters.
size_t RowCodeBytes(Format format, storage::DType dtype, int64_t channels);

// Bytes of an encoded block: NumGroups * (4 for kFp8E4M3, 8 for kInt8/kInt4) plus rows *
// RowCodeBytes. 0 when ValidateBlock fails (and for an empty block).
size_t EncodedSize(Format format, Axis axis, storage::DType dtype, int64_t rows, int64_t channels,
                   int32_t group);

// Encodes the block whose row r starts at src + r * src_stride (src_stride >= channels *
// DTypeSize(dtype); no alignment needed) into dst, which must hold EncodedSize bytes and
// must not overlap src. Precondition: ValidateBlock is OK (otherwise nothing is written).
void Encode(Format format, Axis axis, storage::DType dtype, const std::byte* src, size_t src_stride,
            int64_t rows, int64_t channels, int32_t group, std::byte* dst);

// Decodes a block made by Encode with the same parameters into elements of `dtype`, row r at
// dst + r * dst_stride (dst_stride >= channels * DTypeSize(dtype); bytes between rows are
// not touched). kRaw gives the encoded elements back bit for bit; the other formats round
// the float32 reconstruction to `dtype` (nearest even). INVALID_ARGUMENT when ValidateBlock
// fails; DATA_LOSS when src_size != EncodedSize, or a stored scale or min is not finite, or
// a scale is negative. On error dst is not touched.
absl::Status Decode(Format format, Axis axis, storage::DType dtype, const std::byte* src,
                    size_t src_size, int64_t rows, int64_t channels, int32_t group, std::byte* dst,
                    size_t dst_stride);

}  // namespace kvtier::storage::quant

#endif  // KVTIER_STORAGE_QUANT_CODEC_H_
