#include "storage/quant/codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "storage/quant/float16.h"
#include "storage/quant/fp8.h"

namespace kvtier::storage::quant {
namespace {

static_assert(std::endian::native == std::endian::little,
              "encoded blocks are little-endian; a big-endian host needs byte swaps here");

// Blocks are processed in tiles of at most kTile channels of one row, so every scratch array
// lives on the stack (a few KiB) whatever the shape, and each inner loop is a plain loop
// over contiguous floats that the compiler vectorizes. Even, so that key tiles start on an
// int4 byte boundary.
constexpr int kTile = 256;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kFloatMax = std::numeric_limits<float>::max();

bool HasScale(Format format) { return format != Format::kRaw; }
bool HasMin(Format format) { return format == Format::kInt8 || format == Format::kInt4; }
// Largest integer code: codes are 0..levels.
float Levels(Format format) { return format == Format::kInt8 ? 255.0f : 15.0f; }

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// storage::DTypeSize without linking kvtier_storage (which depends on this library).
size_t ElementBytes(storage::DType dtype) {
  switch (dtype) {
    case storage::DType::kFloat16:
    case storage::DType::kBFloat16:
      return 2;
    case storage::DType::kFloat32:
      return 4;
    case storage::DType::kUnspecified:
      break;
  }
  return 0;
}

// Converts elements [c0, c0 + n) of one row of `dtype` to float32 (exact).
void LoadFloats(storage::DType dtype, const std::byte* row, int64_t c0, int n, float* x) {
  const size_t count = static_cast<size_t>(n);
  uint16_t bits[kTile];
  switch (dtype) {
    case storage::DType::kFloat16:
      std::memcpy(bits, row + 2 * c0, 2 * count);
      for (int i = 0; i < n; ++i) x[i] = HalfToFloat(bits[i]);
      return;
    case storage::DType::kBFloat16:
      std::memcpy(bits, row + 2 * c0, 2 * count);
      for (int i = 0; i < n; ++i) x[i] = BFloat16ToFloat(bits[i]);
      return;
    case storage::DType::kFloat32:
      std::memcpy(x, row + 4 * c0, 4 * count);
      return;
    case storage::DType::kUnspecified:
      return;
  }
}

// Rounds n float32 values to `dtype` (nearest even) into elements [c0, c0 + n) of one row.
void StoreFloats(storage::DType dtype, const float* x, int n, std::byte* row, int64_t c0) {
  const size_t count = static_cast<size_t>(n);
  uint16_t bits[kTile];
  switch (dtype) {
    case storage::DType::kFloat16:
      for (int i = 0; i < n; ++i) bits[i] = FloatToHalf(x[i]);
      std::memcpy(row + 2 * c0, bits, 2 * count);
      return;
    case storage::DType::kBFloat16:
      for (int i = 0; i < n; ++i) bits[i] = FloatToBFloat16(x[i]);
      std::memcpy(row + 2 * c0, bits, 2 * count);
      return;
    case storage::DType::kFloat32:
      std::memcpy(row + 4 * c0, x, 4 * count);
      return;
    case storage::DType::kUnspecified:
      return;
  }
}

// Running statistics of one group, element-wise over a tile: for int formats lo/hi (min and
// max over finite values), for fp8 the finite absmax in hi. NaN and +-inf are skipped (the
// comparisons with them are false or they fail the finite test), so the parameters computed
// from them are always finite.
void ResetStats(int n, float* lo, float* hi) {
  std::fill(lo, lo + n, kInf);
  std::fill(hi, hi + n, -kInf);
}

void AccumulateRange(const float* x, int n, float* lo, float* hi) {
  for (int i = 0; i < n; ++i) {
    const bool finite = std::fabs(x[i]) <= kFloatMax;
    const float for_lo = finite ? x[i] : kInf;
    const float for_hi = finite ? x[i] : -kInf;
    lo[i] = for_lo < lo[i] ? for_lo : lo[i];
    hi[i] = for_hi > hi[i] ? for_hi : hi[i];
  }
}

void AccumulateAbsMax(const float* x, int n, float* hi) {
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    const float finite = a <= kFloatMax ? a : 0.0f;
    hi[i] = finite > hi[i] ? finite : hi[i];
  }
}

// Scale (and min) of a group from its statistics. int: asymmetric, codes 0..levels span
// [lo, hi]; hi - lo is taken in double because it can exceed FLT_MAX for float32 blocks. A
// group without finite values gets scale 0, min 0. fp8: scale = absmax / 448, so the
// group's largest magnitude maps to E4M3's largest finite value.
void GroupParams(Format format, float lo, float hi, float* scale, float* minimum) {
  if (format == Format::kFp8E4M3) {
    *scale = hi > 0.0f ? hi / kE4M3Max : 0.0f;
    *minimum = 0.0f;
    return;
  }
  const bool any = lo <= hi;
  const double range = static_cast<double>(hi) - static_cast<double>(lo);
  *scale = any ? static_cast<float>(range / static_cast<double>(Levels(format))) : 0.0f;
  *minimum = any ? lo : 0.0f;
}

// Codes of n elements. int: round((x - min) / scale) to nearest even, clamped to
// [0, levels]; NaN and -inf give 0, +inf gives levels; scale 0 (all-equal group) gives 0.
// Adding 1.5 * 2^23 makes the FPU round to an integer (exact for 0 <= q < 2^22).
void QuantizeInt(const float* x, const float* scale, const float* minimum, float levels, int n,
                 uint8_t* codes) {
  for (int i = 0; i < n; ++i) {
    const float s = scale[i] > 0.0f ? scale[i] : 1.0f;
    float q = (x[i] - minimum[i]) / s;
    q = q > 0.0f ? q : 0.0f;
    q = q < levels ? q : levels;
    codes[i] = static_cast<uint8_t>(static_cast<int32_t>((q + 0x1.8p23f) - 0x1.8p23f));
  }
}

// E4M3 codes of x / scale (saturating; NaN stays NaN); scale 0 (all-zero group) gives 0.
void QuantizeFp8(const float* x, const float* scale, int n, uint8_t* codes) {
  for (int i = 0; i < n; ++i) {
    const float s = scale[i] > 0.0f ? scale[i] : 1.0f;
    codes[i] = FloatToE4M3(x[i] / s);
  }
}

void DequantizeInt(const uint8_t* codes, const float* scale, const float* minimum, int n,
                   float* x) {
  for (int i = 0; i < n; ++i) x[i] = minimum[i] + static_cast<float>(codes[i]) * scale[i];
}

void DequantizeFp8(const uint8_t* codes, const float* scale, int n, float* x) {
  for (int i = 0; i < n; ++i) x[i] = E4M3ToFloat(codes[i]) * scale[i];
}

// Writes the codes of channels [c0, c0 + n) into one row's code bytes. Tiles of a row are
// written left to right, so for int4 a tile starting on an odd channel finds the low nibble
// of its first byte already written, and a tile ending on an even channel leaves the high
// nibble 0 for the next tile (or as padding).
void PackCodes(Format format, const uint8_t* codes, int64_t c0, int n, std::byte* row_codes) {
  auto* out = reinterpret_cast<uint8_t*>(row_codes);
  if (format != Format::kInt4) {
    std::memcpy(out + c0, codes, static_cast<size_t>(n));
    return;
  }
  int i = 0;
  if (c0 % 2 == 1 && n > 0) {
    out[c0 / 2] = static_cast<uint8_t>((out[c0 / 2] & 0x0fu) | (codes[0] << 4));
    i = 1;
  }
  for (; i + 1 < n; i += 2) {
    out[(c0 + i) / 2] = static_cast<uint8_t>(codes[i] | (codes[i + 1] << 4));
  }
  if (i < n) out[(c0 + i) / 2] = codes[i];
}

void UnpackCodes(Format format, const std::byte* row_codes, int64_t c0, int n, uint8_t* codes) {
  const auto* in = reinterpret_cast<const uint8_t*>(row_codes);
  if (format != Format::kInt4) {
    std::memcpy(codes, in + c0, static_cast<size_t>(n));
    return;
  }
  for (int i = 0; i < n; ++i) {
    const int64_t c = c0 + i;
    codes[i] = static_cast<uint8_t>((in[c / 2] >> (4 * (c % 2))) & 0x0fu);
  }
}

// Where the three sections of an encoded block start (Byte: std::byte when encoding, const
// std::byte when decoding).
template <typename Byte>
struct Sections {
  Byte* scales;
  Byte* mins;
  Byte* codes;
  size_t row_code_bytes;
};

template <typename Byte>
Sections<Byte> SectionsOf(Format format, storage::DType dtype, Byte* block, int64_t groups,
                          int64_t channels) {
  const size_t meta = static_cast<size_t>(groups) * sizeof(float);
  Sections<Byte> s;
  s.scales = block;
  s.mins = block + (HasScale(format) ? meta : 0);
  s.codes = s.mins + (HasMin(format) ? meta : 0);
  s.row_code_bytes = RowCodeBytes(format, dtype, channels);
  return s;
}

void QuantizeTile(Format format, const float* x, const float* scale, const float* minimum, int n,
                  uint8_t* codes) {
  if (format == Format::kFp8E4M3) {
    QuantizeFp8(x, scale, n, codes);
  } else {
    QuantizeInt(x, scale, minimum, Levels(format), n, codes);
  }
}

void DequantizeTile(Format format, const uint8_t* codes, const float* scale, const float* minimum,
                    int n, float* x) {
  if (format == Format::kFp8E4M3) {
    DequantizeFp8(codes, scale, n, x);
  } else {
    DequantizeInt(codes, scale, minimum, n, x);
  }
}

void Accumulate(Format format, const float* x, int n, float* lo, float* hi) {
  if (format == Format::kFp8E4M3) {
    AccumulateAbsMax(x, n, hi);
  } else {
    AccumulateRange(x, n, lo, hi);
  }
}

// Keys: for each group of rows and each tile of channels, pass 1 gathers every channel's
// statistics over the group's rows, pass 2 codes the rows.
void EncodeKeys(Format format, storage::DType dtype, const std::byte* src, size_t src_stride,
                int64_t rows, int64_t channels, int32_t group, const Sections<std::byte>& s) {
  float x[kTile], lo[kTile], hi[kTile], scale[kTile], minimum[kTile];
  uint8_t codes[kTile];
  for (int64_t r0 = 0; r0 < rows; r0 += group) {
    const int64_t r1 = std::min<int64_t>(rows, r0 + group);
    for (int64_t c0 = 0; c0 < channels; c0 += kTile) {
      const int n = static_cast<int>(std::min<int64_t>(kTile, channels - c0));
      ResetStats(n, lo, hi);
      for (int64_t r = r0; r < r1; ++r) {
        LoadFloats(dtype, src + static_cast<size_t>(r) * src_stride, c0, n, x);
        Accumulate(format, x, n, lo, hi);
      }
      for (int i = 0; i < n; ++i) GroupParams(format, lo[i], hi[i], &scale[i], &minimum[i]);
      const size_t first_group = static_cast<size_t>((r0 / group) * channels + c0);
      std::memcpy(s.scales + 4 * first_group, scale, 4 * static_cast<size_t>(n));
      if (HasMin(format))
        std::memcpy(s.mins + 4 * first_group, minimum, 4 * static_cast<size_t>(n));
      for (int64_t r = r0; r < r1; ++r) {
        LoadFloats(dtype, src + static_cast<size_t>(r) * src_stride, c0, n, x);
        QuantizeTile(format, x, scale, minimum, n, codes);
        PackCodes(format, codes, c0, n, s.codes + static_cast<size_t>(r) * s.row_code_bytes);
      }
    }
  }
}

// Values: for each row and each group of channels, pass 1 gathers the group's statistics
// (tile by tile when the group is wider than a tile), pass 2 codes it.
void EncodeValues(Format format, storage::DType dtype, const std::byte* src, size_t src_stride,
                  int64_t rows, int64_t channels, int32_t group, const Sections<std::byte>& s) {
  float x[kTile], lo[kTile], hi[kTile], scale[kTile], minimum[kTile];
  uint8_t codes[kTile];
  const int64_t groups_per_row = CeilDiv(channels, group);
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* row = src + static_cast<size_t>(r) * src_stride;
    std::byte* row_codes = s.codes + static_cast<size_t>(r) * s.row_code_bytes;
    for (int64_t g = 0; g < groups_per_row; ++g) {
      const int64_t c_begin = g * group;
      const int64_t c_end = std::min<int64_t>(channels, c_begin + group);
      const int width = static_cast<int>(std::min<int64_t>(kTile, c_end - c_begin));
      ResetStats(width, lo, hi);
      for (int64_t c0 = c_begin; c0 < c_end; c0 += kTile) {
        const int n = static_cast<int>(std::min<int64_t>(kTile, c_end - c0));
        LoadFloats(dtype, row, c0, n, x);
        Accumulate(format, x, n, lo, hi);
      }
      const float group_lo = *std::min_element(lo, lo + width);
      const float group_hi = *std::max_element(hi, hi + width);
      const int64_t index = r * groups_per_row + g;
      float group_scale, group_min;
      GroupParams(format, group_lo, group_hi, &group_scale, &group_min);
      std::memcpy(s.scales + 4 * index, &group_scale, 4);
      if (HasMin(format)) std::memcpy(s.mins + 4 * index, &group_min, 4);
      std::fill(scale, scale + width, group_scale);
      std::fill(minimum, minimum + width, group_min);
      for (int64_t c0 = c_begin; c0 < c_end; c0 += kTile) {
        const int n = static_cast<int>(std::min<int64_t>(kTile, c_end - c0));
        LoadFloats(dtype, row, c0, n, x);
        QuantizeTile(format, x, scale, minimum, n, codes);
        PackCodes(format, codes, c0, n, row_codes);
      }
    }
  }
}

void DecodeKeys(Format format, storage::DType dtype, const Sections<const std::byte>& s,
                int64_t rows, int64_t channels, int32_t group, std::byte* dst, size_t dst_stride) {
  float x[kTile], scale[kTile], minimum[kTile];
  uint8_t codes[kTile];
  std::fill(minimum, minimum + kTile, 0.0f);
  for (int64_t r0 = 0; r0 < rows; r0 += group) {
    const int64_t r1 = std::min<int64_t>(rows, r0 + group);
    for (int64_t c0 = 0; c0 < channels; c0 += kTile) {
      const int n = static_cast<int>(std::min<int64_t>(kTile, channels - c0));
      const size_t first_group = static_cast<size_t>((r0 / group) * channels + c0);
      std::memcpy(scale, s.scales + 4 * first_group, 4 * static_cast<size_t>(n));
      if (HasMin(format))
        std::memcpy(minimum, s.mins + 4 * first_group, 4 * static_cast<size_t>(n));
      for (int64_t r = r0; r < r1; ++r) {
        UnpackCodes(format, s.codes + static_cast<size_t>(r) * s.row_code_bytes, c0, n, codes);
        DequantizeTile(format, codes, scale, minimum, n, x);
        StoreFloats(dtype, x, n, dst + static_cast<size_t>(r) * dst_stride, c0);
      }
    }
  }
}

void DecodeValues(Format format, storage::DType dtype, const Sections<const std::byte>& s,
                  int64_t rows, int64_t channels, int32_t group, std::byte* dst,
                  size_t dst_stride) {
  float x[kTile], scale[kTile], minimum[kTile];
  uint8_t codes[kTile];
  const int64_t groups_per_row = CeilDiv(channels, group);
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* row_codes = s.codes + static_cast<size_t>(r) * s.row_code_bytes;
    std::byte* row = dst + static_cast<size_t>(r) * dst_stride;
    for (int64_t g = 0; g < groups_per_row; ++g) {
      const int64_t c_begin = g * group;
      const int64_t c_end = std::min<int64_t>(channels, c_begin + group);
      const int width = static_cast<int>(std::min<int64_t>(kTile, c_end - c_begin));
      // One group spans `width` or more channels of the row: broadcast its parameters.
      const int64_t index = r * groups_per_row + g;
      float value;
      std::memcpy(&value, s.scales + 4 * index, 4);
      std::fill(scale, scale + width, value);
      value = 0.0f;
      if (HasMin(format)) std::memcpy(&value, s.mins + 4 * index, 4);
      std::fill(minimum, minimum + width, value);
      for (int64_t c0 = c_begin; c0 < c_end; c0 += kTile) {
        const int n = static_cast<int>(std::min<int64_t>(kTile, c_end - c0));
        UnpackCodes(format, row_codes, c0, n, codes);
        DequantizeTile(format, codes, scale, minimum, n, x);
        StoreFloats(dtype, x, n, row, c0);
      }
    }
  }
}

// DATA_LOSS unless every stored scale is finite and >= 0 and every min is finite.
absl::Status CheckParams(Format format, const Sections<const std::byte>& s, int64_t groups) {
  for (int64_t g = 0; g < groups; ++g) {
    float scale;
    std::memcpy(&scale, s.scales + 4 * g, 4);
    if (!(scale >= 0.0f && scale <= kFloatMax)) {
      return absl::DataLossError(absl::StrCat("quantized block: scale of group ", g, " is ", scale,
                                              " (not finite or negative)"));
    }
  }
  if (!HasMin(format)) return absl::OkStatus();
  for (int64_t g = 0; g < groups; ++g) {
    float minimum;
    std::memcpy(&minimum, s.mins + 4 * g, 4);
    if (!(std::fabs(minimum) <= kFloatMax)) {
      return absl::DataLossError(
          absl::StrCat("quantized block: min of group ", g, " is ", minimum, " (not finite)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view name) {
  if (name == "raw") return Format::kRaw;
  if (name == "fp8") return Format::kFp8E4M3;
  if (name == "int8") return Format::kInt8;
  if (name == "int4") return Format::kInt4;
  return absl::InvalidArgumentError(absl::StrCat(
      "quantization format: \"", name, "\" is not one of \"raw\", \"fp8\", \"int8\", \"int4\""));
}

absl::string_view FormatName(Format format) {
  switch (format) {
    case Format::kRaw:
      return "raw";
    case Format::kFp8E4M3:
      return "fp8";
    case Format::kInt8:
      return "int8";
    case Format::kInt4:
      return "int4";
  }
  return "unknown";
}

absl::Status ValidateBlock(Format format, Axis axis, storage::DType dtype, int64_t rows,
                           int64_t channels, int32_t group) {
  if (FormatName(format) == "unknown") {
    return absl::InvalidArgumentError(
        absl::StrCat("format: unknown value ", static_cast<int>(format)));
  }
  if (axis != Axis::kKeys && axis != Axis::kValues) {
    return absl::InvalidArgumentError(absl::StrCat("axis: unknown value ", static_cast<int>(axis)));
  }
  if (dtype != storage::DType::kFloat16 && dtype != storage::DType::kBFloat16 &&
      dtype != storage::DType::kFloat32) {
    return absl::InvalidArgumentError("dtype: must be float16, bfloat16 or float32");
  }
  if (rows < 0) return absl::InvalidArgumentError(absl::StrCat("rows: ", rows, " is negative"));
  if (channels < 0) {
    return absl::InvalidArgumentError(absl::StrCat("channels: ", channels, " is negative"));
  }
  if (format != Format::kRaw && group < 1) {
    return absl::InvalidArgumentError(absl::StrCat("group: ", group, " is not positive"));
  }
  return absl::OkStatus();
}

int64_t NumGroups(Format format, Axis axis, int64_t rows, int64_t channels, int32_t group) {
  if (!HasScale(format) || group < 1 || rows < 0 || channels < 0) return 0;
  return axis == Axis::kKeys ? CeilDiv(rows, group) * channels : rows * CeilDiv(channels, group);
}

size_t RowCodeBytes(Format format, storage::DType dtype, int64_t channels) {
  if (channels < 0) return 0;
  const size_t c = static_cast<size_t>(channels);
  switch (format) {
    case Format::kRaw:
      return c * ElementBytes(dtype);
    case Format::kFp8E4M3:
    case Format::kInt8:
      return c;
    case Format::kInt4:
      return (c + 1) / 2;
  }
  return 0;
}

size_t EncodedSize(Format format, Axis axis, storage::DType dtype, int64_t rows, int64_t channels,
                   int32_t group) {
  if (!ValidateBlock(format, axis, dtype, rows, channels, group).ok()) return 0;
  const size_t meta_per_group = HasMin(format) ? 8 : HasScale(format) ? 4 : 0;
  return static_cast<size_t>(NumGroups(format, axis, rows, channels, group)) * meta_per_group +
         static_cast<size_t>(rows) * RowCodeBytes(format, dtype, channels);
}

void Encode(Format format, Axis axis, storage::DType dtype, const std::byte* src, size_t src_stride,
            int64_t rows, int64_t channels, int32_t group, std::byte* dst) {
  if (!ValidateBlock(format, axis, dtype, rows, channels, group).ok()) return;
  const int64_t groups = NumGroups(format, axis, rows, channels, group);
  const Sections<std::byte> s = SectionsOf(format, dtype, dst, groups, channels);
  if (format == Format::kRaw) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(s.codes + static_cast<size_t>(r) * s.row_code_bytes,
                  src + static_cast<size_t>(r) * src_stride, s.row_code_bytes);
    }
  } else if (axis == Axis::kKeys) {
    EncodeKeys(format, dtype, src, src_stride, rows, channels, group, s);
  } else {
    EncodeValues(format, dtype, src, src_stride, rows, channels, group, s);
  }
}

absl::Status Decode(Format format, Axis axis, storage::DType dtype, const std::byte* src,
                    size_t src_size, int64_t rows, int64_t channels, int32_t group, std::byte* dst,
                    size_t dst_stride) {
  if (absl::Status status = ValidateBlock(format, axis, dtype, rows, channels, group);
      !status.ok()) {
    return status;
  }
  const size_t expected = EncodedSize(format, axis, dtype, rows, channels, group);
  if (src_size != expected) {
    return absl::DataLossError(absl::StrCat("quantized block: ", src_size, " bytes, expected ",
                                            expected, " for ", FormatName(format), " ", rows, " x ",
                                            channels, " group ", group));
  }
  const int64_t groups = NumGroups(format, axis, rows, channels, group);
  const Sections<const std::byte> s = SectionsOf(format, dtype, src, groups, channels);
  if (absl::Status status = CheckParams(format, s, groups); !status.ok()) return status;
  if (format == Format::kRaw) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(dst + static_cast<size_t>(r) * dst_stride,
                  s.codes + static_cast<size_t>(r) * s.row_code_bytes, s.row_code_bytes);
    }
  } else if (axis == Axis::kKeys) {
    DecodeKeys(format, dtype, s, rows, channels, group, dst, dst_stride);
  } else {
    DecodeValues(format, dtype, s, rows, channels, group, dst, dst_stride);
  }
  return absl::OkStatus();
}

}  // namespace kvtier::storage::quant
