#include "storage/quant/codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/quant/float16.h"
#include "storage/quant/fp8.h"

namespace kvtier::storage::quant {
namespace {

using storage::DType;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr Format kQuantized[] = {Format::kFp8E4M3, Format::kInt8, Format::kInt4};
constexpr Axis kAxes[] = {Axis::kKeys, Axis::kValues};
constexpr DType kDTypes[] = {DType::kFloat16, DType::kBFloat16, DType::kFloat32};

std::string Name(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat32:
      return "fp32";
    case DType::kUnspecified:
      break;
  }
  return "?";
}

// storage::DTypeSize without linking kvtier_storage.
int ElementSize(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

std::string Name(Axis axis) { return axis == Axis::kKeys ? "keys" : "values"; }

// A rows x channels matrix of `dtype` elements, row r at r * stride bytes; the bytes between
// rows hold a 0xab pattern that must survive.
struct Block {
  Block(DType dtype, int64_t rows, int64_t channels, size_t padding = 0)
      : dtype(dtype),
        rows(rows),
        channels(channels),
        stride(static_cast<size_t>(channels * ElementSize(dtype)) + padding),
        bytes(stride * static_cast<size_t>(rows), std::byte{0xab}) {}

  std::byte* row(int64_t r) { return bytes.data() + static_cast<size_t>(r) * stride; }
  const std::byte* row(int64_t r) const { return bytes.data() + static_cast<size_t>(r) * stride; }

  float Get(int64_t r, int64_t c) const {
    const std::byte* p = row(r) + c * ElementSize(dtype);
    uint16_t bits;
    float f;
    switch (dtype) {
      case DType::kFloat16:
        std::memcpy(&bits, p, 2);
        return HalfToFloat(bits);
      case DType::kBFloat16:
        std::memcpy(&bits, p, 2);
        return BFloat16ToFloat(bits);
      default:
        std::memcpy(&f, p, 4);
        return f;
    }
  }
  // Stores `value` rounded to the dtype.
  void Set(int64_t r, int64_t c, float value) {
    std::byte* p = row(r) + c * ElementSize(dtype);
    uint16_t bits;
    switch (dtype) {
      case DType::kFloat16:
        bits = FloatToHalf(value);
        std::memcpy(p, &bits, 2);
        return;
      case DType::kBFloat16:
        bits = FloatToBFloat16(value);
        std::memcpy(p, &bits, 2);
        return;
      default:
        std::memcpy(p, &value, 4);
        return;
    }
  }
  bool PaddingIntact() const {
    const size_t row_bytes = static_cast<size_t>(channels * ElementSize(dtype));
    for (int64_t r = 0; r < rows; ++r) {
      for (size_t b = row_bytes; b < stride; ++b) {
        if (row(r)[b] != std::byte{0xab}) return false;
      }
    }
    return true;
  }

  DType dtype;
  int64_t rows;
  int64_t channels;
  size_t stride;
  std::vector<std::byte> bytes;
};

// KV-like data: each channel has its own offset and spread, a few channels are outliers
// (KIVI's observation about keys), so groups differ.
Block RandomBlock(DType dtype, int64_t rows, int64_t channels, uint64_t seed, size_t padding) {
  Block block(dtype, rows, channels, padding);
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> offset(static_cast<size_t>(channels)), spread(offset.size());
  for (size_t c = 0; c < offset.size(); ++c) {
    offset[c] = normal(gen);
    spread[c] = (c % 7 == 3 ? 20.0f : 1.0f) * std::exp(normal(gen));
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < channels; ++c) {
      const size_t i = static_cast<size_t>(c);
      block.Set(r, c, offset[i] + spread[i] * normal(gen));
    }
  }
  return block;
}

std::vector<std::byte> EncodeBlock(Format format, Axis axis, const Block& block, int32_t group) {
  std::vector<std::byte> encoded(
      EncodedSize(format, axis, block.dtype, block.rows, block.channels, group));
  Encode(format, axis, block.dtype, block.bytes.data(), block.stride, block.rows, block.channels,
         group, encoded.data());
  return encoded;
}

Block DecodeBlock(Format format, Axis axis, const std::vector<std::byte>& encoded, DType dtype,
                  int64_t rows, int64_t channels, int32_t group, size_t padding) {
  Block out(dtype, rows, channels, padding);
  const absl::Status status = Decode(format, axis, dtype, encoded.data(), encoded.size(), rows,
                                     channels, group, out.bytes.data(), out.stride);
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

// Half an ulp of `dtype` at magnitude |v| (what rounding the float32 reconstruction to the
// dtype may add), with a floor for subnormals.
double DTypeHalfUlp(DType dtype, double v) {
  const double a = std::fabs(v);
  switch (dtype) {
    case DType::kFloat16:
      return std::max(a * 0x1p-11, 0x1p-25);
    case DType::kBFloat16:
      return std::max(a * 0x1p-8, 0x1p-134);
    default:
      return a * 0x1p-24;
  }
}

// Range and absmax of one group of the input.
struct GroupStats {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  double absmax = 0;
};

// Checks every element of `out` against the error bound of its group:
//   int:  |x - y| <= scale / 2 (+ float32 rounding) + half an ulp of the dtype,
//         scale = (max - min) / levels of the group;
//   fp8:  |x - y| <= max(|x| * 2^-4, scale * 2^-10) (+ rounding) + half an ulp of the dtype,
//         scale = absmax / 448 (E4M3 has 3 mantissa bits: half an ulp is at most 2^-4 of the
//         value; below 2^-6 the subnormal step is 2^-9).
void ExpectWithinBounds(Format format, Axis axis, const Block& in, const Block& out,
                        int32_t group) {
  const int64_t groups_per_row = (in.channels + group - 1) / group;
  auto group_of = [&](int64_t r, int64_t c) {
    return axis == Axis::kKeys ? (r / group) * in.channels + c : r * groups_per_row + c / group;
  };
  std::vector<GroupStats> stats(
      static_cast<size_t>(NumGroups(format, axis, in.rows, in.channels, group)));
  for (int64_t r = 0; r < in.rows; ++r) {
    for (int64_t c = 0; c < in.channels; ++c) {
      GroupStats& s = stats[static_cast<size_t>(group_of(r, c))];
      const double x = in.Get(r, c);
      s.lo = std::min(s.lo, x);
      s.hi = std::max(s.hi, x);
      s.absmax = std::max(s.absmax, std::fabs(x));
    }
  }
  const double levels = format == Format::kInt8 ? 255 : 15;
  for (int64_t r = 0; r < in.rows; ++r) {
    for (int64_t c = 0; c < in.channels; ++c) {
      const GroupStats& s = stats[static_cast<size_t>(group_of(r, c))];
      const double x = in.Get(r, c);
      const double y = out.Get(r, c);
      ASSERT_TRUE(std::isfinite(y)) << r << "," << c;
      double bound;
      if (format == Format::kFp8E4M3) {
        const double scale = s.absmax / 448;
        bound = std::max(std::fabs(x) * 0x1p-4, scale * 0x1p-10) + s.absmax * 0x1p-20;
      } else {
        const double scale = (s.hi - s.lo) / levels;
        bound = scale / 2 + (std::fabs(s.lo) + std::fabs(s.hi)) * 0x1p-20;
      }
      bound += DTypeHalfUlp(in.dtype, y);
      ASSERT_LE(std::fabs(x - y), bound)
          << FormatName(format) << " " << Name(axis) << " " << Name(in.dtype) << " " << in.rows
          << "x" << in.channels << " group " << group << " at " << r << "," << c << ": x " << x
          << " y " << y;
    }
  }
}

TEST(CodecTest, ParseAndNameFormats) {
  for (Format f : {Format::kRaw, Format::kFp8E4M3, Format::kInt8, Format::kInt4}) {
    absl::StatusOr<Format> parsed = ParseFormat(FormatName(f));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, f);
  }
  absl::StatusOr<Format> bad = ParseFormat("int2");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* accepted : {"raw", "fp8", "int8", "int4", "int2"}) {
    EXPECT_NE(bad.status().message().find(accepted), absl::string_view::npos) << bad.status();
  }
  EXPECT_FALSE(ParseFormat("").ok());
  EXPECT_FALSE(ParseFormat("INT8").ok());
  EXPECT_EQ(FormatName(static_cast<Format>(9)), "unknown");
}

TEST(CodecTest, EncodedSizes) {
  // int4 keys, 33 rows x 5 channels, group 32: 2 row groups x 5 channels = 10 groups of
  // (scale, min) = 80 bytes, then 33 rows x 3 code bytes.
  EXPECT_EQ(EncodedSize(Format::kInt4, Axis::kKeys, DType::kFloat16, 33, 5, 32), 80u + 99u);
  // int4 values: 33 rows x 1 channel group = 33 groups.
  EXPECT_EQ(EncodedSize(Format::kInt4, Axis::kValues, DType::kFloat16, 33, 5, 32), 264u + 99u);
  EXPECT_EQ(EncodedSize(Format::kInt8, Axis::kValues, DType::kBFloat16, 2, 65, 32),
            2u * 3u * 8u + 130u);
  EXPECT_EQ(EncodedSize(Format::kFp8E4M3, Axis::kKeys, DType::kFloat32, 64, 128, 32),
            2u * 128u * 4u + 64u * 128u);
  EXPECT_EQ(EncodedSize(Format::kRaw, Axis::kKeys, DType::kFloat32, 3, 7, 32), 84u);
  EXPECT_EQ(EncodedSize(Format::kRaw, Axis::kValues, DType::kFloat16, 3, 7, 0), 42u);
  EXPECT_EQ(EncodedSize(Format::kInt8, Axis::kKeys, DType::kFloat16, 0, 7, 32), 0u);
  // Group 32, 256 rows x 512 channels (a segment's layer of a 4 x 128 head): bytes per
  // element including metadata, as docs/QUANTIZATION.md states.
  const double elements = 256.0 * 512.0;
  EXPECT_EQ(EncodedSize(Format::kFp8E4M3, Axis::kKeys, DType::kFloat16, 256, 512, 32) / elements,
            1.125);
  EXPECT_EQ(EncodedSize(Format::kInt8, Axis::kValues, DType::kFloat16, 256, 512, 32) / elements,
            1.25);
  EXPECT_EQ(EncodedSize(Format::kInt4, Axis::kKeys, DType::kFloat16, 256, 512, 32) / elements,
            0.75);
  // Invalid parameters.
  EXPECT_EQ(EncodedSize(Format::kInt8, Axis::kKeys, DType::kFloat16, 4, 4, 0), 0u);
  EXPECT_EQ(EncodedSize(Format::kInt8, Axis::kKeys, DType::kUnspecified, 4, 4, 32), 0u);
  EXPECT_EQ(EncodedSize(Format::kInt8, Axis::kKeys, DType::kFloat16, -1, 4, 32), 0u);
}

TEST(CodecTest, RoundTripsWithinBoundsOnOddShapes) {
  struct Shape {
    int64_t rows, channels;
  };
  const Shape shapes[] = {{1, 1},   {1, 37},   {33, 1},   {7, 5},  {32, 32},
                          {33, 33}, {100, 67}, {40, 300}, {3, 513}};
  uint64_t seed = 1;
  for (Format format : kQuantized) {
    for (Axis axis : kAxes) {
      for (DType dtype : kDTypes) {
        for (const Shape& shape : shapes) {
          for (int32_t group : {1, 5, 32, 300}) {
            SCOPED_TRACE(absl::StrCat(FormatName(format), " ", Name(axis), " ", Name(dtype), " ",
                                      shape.rows, "x", shape.channels, " group ", group));
            ++seed;
            const Block in = RandomBlock(dtype, shape.rows, shape.channels, seed, seed % 3 * 2);
            const std::vector<std::byte> encoded = EncodeBlock(format, axis, in, group);
            const Block out = DecodeBlock(format, axis, encoded, dtype, shape.rows, shape.channels,
                                          group, seed % 2 * 6);
            EXPECT_TRUE(out.PaddingIntact());
            ExpectWithinBounds(format, axis, in, out, group);
            if (HasFatalFailure()) return;
            // Encoding is deterministic.
            EXPECT_EQ(EncodeBlock(format, axis, in, group), encoded);
          }
        }
      }
    }
  }
}

TEST(CodecTest, RawIsBitExact) {
  std::mt19937_64 gen(7);
  for (DType dtype : kDTypes) {
    for (Axis axis : kAxes) {
      // Any bits at all, NaN payloads and subnormals included.
      Block in(dtype, 9, 13, 3);
      for (int64_t r = 0; r < in.rows; ++r) {
        for (size_t b = 0; b < static_cast<size_t>(13 * ElementSize(dtype)); ++b) {
          in.row(r)[b] = static_cast<std::byte>(gen());
        }
      }
      const std::vector<std::byte> encoded = EncodeBlock(Format::kRaw, axis, in, kDefaultGroup);
      ASSERT_EQ(encoded.size(), 9u * 13u * static_cast<size_t>(ElementSize(dtype)));
      const Block out = DecodeBlock(Format::kRaw, axis, encoded, dtype, 9, 13, kDefaultGroup, 3);
      for (int64_t r = 0; r < in.rows; ++r) {
        EXPECT_EQ(std::memcmp(in.row(r), out.row(r), 13 * static_cast<size_t>(ElementSize(dtype))),
                  0);
      }
      EXPECT_TRUE(out.PaddingIntact());
    }
  }
}

TEST(CodecTest, ExactByteLayout) {
  // int4 values, one row [2, 9.5, 17] float32: min 2, scale 1, codes 0, 7.5 -> 8 (ties to
  // even), 15; bytes: scale, min, then 0x80 (code 0 low, 8 high), 0x0f (15, high nibble 0).
  Block values(DType::kFloat32, 1, 3);
  values.Set(0, 0, 2.0f);
  values.Set(0, 1, 9.5f);
  values.Set(0, 2, 17.0f);
  std::vector<std::byte> encoded = EncodeBlock(Format::kInt4, Axis::kValues, values, 32);
  ASSERT_EQ(encoded.size(), 10u);
  float scale, minimum;
  std::memcpy(&scale, encoded.data(), 4);
  std::memcpy(&minimum, encoded.data() + 4, 4);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(minimum, 2.0f);
  EXPECT_EQ(encoded[8], std::byte{0x80});
  EXPECT_EQ(encoded[9], std::byte{0x0f});

  // int8 keys, 3 rows x 2 channels, group 2: groups (row group, channel) in order
  // (0,0) (0,1) (1,0) (1,1); then codes row by row.
  Block keys(DType::kFloat32, 3, 2);
  const float data[3][2] = {{0, 10}, {255, 10}, {-1, 5}};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 2; ++c) keys.Set(r, c, data[r][c]);
  }
  encoded = EncodeBlock(Format::kInt8, Axis::kKeys, keys, 2);
  ASSERT_EQ(encoded.size(), 4u * 8u + 6u);
  float scales[4], mins[4];
  std::memcpy(scales, encoded.data(), 16);
  std::memcpy(mins, encoded.data() + 16, 16);
  EXPECT_EQ(scales[0], 1.0f);  // channel 0, rows 0-1: [0, 255]
  EXPECT_EQ(scales[1], 0.0f);  // channel 1, rows 0-1: all 10
  EXPECT_EQ(scales[2], 0.0f);  // channel 0, row 2
  EXPECT_EQ(scales[3], 0.0f);  // channel 1, row 2
  EXPECT_EQ(mins[0], 0.0f);
  EXPECT_EQ(mins[1], 10.0f);
  EXPECT_EQ(mins[2], -1.0f);
  EXPECT_EQ(mins[3], 5.0f);
  const uint8_t codes[6] = {0, 0, 255, 0, 0, 0};
  EXPECT_EQ(std::memcmp(encoded.data() + 32, codes, 6), 0);

  // fp8 values, one row [896, -1]: scale 896 / 448 = 2, codes E4M3(448) = 0x7e and
  // E4M3(-0.5) = 0xb0.
  Block fp8(DType::kFloat32, 1, 2);
  fp8.Set(0, 0, 896.0f);
  fp8.Set(0, 1, -1.0f);
  encoded = EncodeBlock(Format::kFp8E4M3, Axis::kValues, fp8, 32);
  ASSERT_EQ(encoded.size(), 6u);
  std::memcpy(&scale, encoded.data(), 4);
  EXPECT_EQ(scale, 2.0f);
  EXPECT_EQ(encoded[4], std::byte{0x7e});
  EXPECT_EQ(encoded[5], std::byte{0xb0});
}

TEST(CodecTest, AllEqualGroupsAreExact) {
  for (Format format : kQuantized) {
    for (Axis axis : kAxes) {
      for (DType dtype : kDTypes) {
        for (float value : {0.0f, -0.0f, 3.5f, -65504.0f, 1e-7f}) {
          Block in(dtype, 35, 41);
          for (int64_t r = 0; r < in.rows; ++r) {
            for (int64_t c = 0; c < in.channels; ++c) in.Set(r, c, value);
          }
          const std::vector<std::byte> encoded = EncodeBlock(format, axis, in, 32);
          const Block out = DecodeBlock(format, axis, encoded, dtype, 35, 41, 32, 0);
          for (int64_t r = 0; r < in.rows; ++r) {
            for (int64_t c = 0; c < in.channels; ++c) {
              const float y = out.Get(r, c);
              ASSERT_FALSE(std::isnan(y));
              if (format == Format::kFp8E4M3) {
                // absmax / 448 * 448 may be off by an ulp of float32 before the dtype rounding.
                ASSERT_NEAR(y, in.Get(r, c), std::fabs(in.Get(r, c)) * 1e-6)
                    << FormatName(format) << " " << value;
              } else {
                ASSERT_EQ(y, in.Get(r, c)) << FormatName(format) << " " << value;
              }
            }
          }
        }
      }
    }
  }
}

TEST(CodecTest, NonFiniteInputsAreDefined) {
  // One values row of 8 channels, group 8: NaN, +inf, -inf among finite values in [-1, 3].
  const float row[8] = {-1.0f, kNaN, 3.0f, kInf, 0.5f, -kInf, 2.0f, 1.0f};
  for (DType dtype : kDTypes) {
    for (Axis axis : kAxes) {
      Block in(dtype, 1, 8);
      for (int c = 0; c < 8; ++c) in.Set(0, c, row[c]);
      // Keys groups run over rows: with one row every element is its own group, so use
      // group 8 for values and look at keys separately below.
      if (axis == Axis::kKeys) continue;
      for (Format format : kQuantized) {
        SCOPED_TRACE(absl::StrCat(FormatName(format), " ", Name(dtype)));
        const std::vector<std::byte> encoded = EncodeBlock(format, axis, in, 8);
        float scale;
        std::memcpy(&scale, encoded.data(), 4);
        EXPECT_TRUE(std::isfinite(scale));
        const Block out = DecodeBlock(format, axis, encoded, dtype, 1, 8, 8, 0);
        if (format == Format::kFp8E4M3) {
          EXPECT_TRUE(std::isnan(out.Get(0, 1)));
          EXPECT_FLOAT_EQ(out.Get(0, 3), 3.0f);   // +inf -> +absmax
          EXPECT_FLOAT_EQ(out.Get(0, 5), -3.0f);  // -inf -> -absmax
        } else {
          EXPECT_EQ(out.Get(0, 1), -1.0f);         // NaN -> min
          EXPECT_NEAR(out.Get(0, 3), 3.0f, 1e-5);  // +inf -> max
          EXPECT_EQ(out.Get(0, 5), -1.0f);         // -inf -> min
        }
        for (int c : {0, 2, 4, 6, 7}) {
          EXPECT_NEAR(out.Get(0, c), row[c], 4.0 / 15 / 2 + 0.02) << c;
        }
      }
    }
  }
  // A keys group made only of non-finite values: scale 0, min 0, decodes to finite 0
  // (or NaN for a NaN under fp8).
  Block in(DType::kFloat16, 2, 3);
  for (int r = 0; r < 2; ++r) {
    in.Set(r, 0, kNaN);
    in.Set(r, 1, kInf);
    in.Set(r, 2, -kInf);
  }
  for (Format format : kQuantized) {
    const std::vector<std::byte> encoded = EncodeBlock(format, Axis::kKeys, in, 32);
    const Block out = DecodeBlock(format, Axis::kKeys, encoded, DType::kFloat16, 2, 3, 32, 0);
    for (int r = 0; r < 2; ++r) {
      if (format != Format::kFp8E4M3) {
        EXPECT_EQ(out.Get(r, 0), 0.0f);
      }
      EXPECT_EQ(out.Get(r, 1), 0.0f);
      EXPECT_EQ(out.Get(r, 2), 0.0f);
    }
  }
}

TEST(CodecTest, ExtremeFloat32RangesStayFinite) {
  // hi - lo overflows float32; subnormal groups.
  const float max = std::numeric_limits<float>::max();
  const float tiny = std::numeric_limits<float>::denorm_min();
  Block in(DType::kFloat32, 4, 2);
  const float data[4][2] = {{-max, 1e-40f}, {max, tiny}, {0.0f, -1e-40f}, {1.0f, 0.0f}};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 2; ++c) in.Set(r, c, data[r][c]);
  }
  for (Format format : kQuantized) {
    const std::vector<std::byte> encoded = EncodeBlock(format, Axis::kKeys, in, 32);
    const Block out = DecodeBlock(format, Axis::kKeys, encoded, DType::kFloat32, 4, 2, 32, 0);
    for (int r = 0; r < 4; ++r) {
      EXPECT_FALSE(std::isnan(out.Get(r, 0))) << FormatName(format);
      EXPECT_NEAR(out.Get(r, 1), data[r][1], 1e-40) << FormatName(format);
    }
    // The int min is stored exactly. (Reconstructions near +-FLT_MAX may round to +-inf:
    // min + code * scale can exceed FLT_MAX by an ulp.)
    if (format != Format::kFp8E4M3) {
      EXPECT_EQ(out.Get(0, 0), -max) << FormatName(format);
    }
  }
}

TEST(CodecTest, Int4OddChannelsPadWithZeroNibble) {
  // Rows [0, 1, 15]: min 0, scale 1, codes 0, 1, 15 -> bytes 0x10, 0x0f.
  Block in(DType::kFloat16, 2, 3);
  for (int r = 0; r < 2; ++r) {
    in.Set(r, 0, 0.0f);
    in.Set(r, 1, 1.0f);
    in.Set(r, 2, 15.0f);
  }
  const std::vector<std::byte> encoded = EncodeBlock(Format::kInt4, Axis::kValues, in, 32);
  const size_t codes = 2 * 8;  // 2 groups of (scale, min)
  ASSERT_EQ(encoded.size(), codes + 4);
  EXPECT_EQ(encoded[codes + 0], std::byte{0x10});
  EXPECT_EQ(encoded[codes + 1], std::byte{0x0f});
  EXPECT_EQ(encoded[codes + 2], std::byte{0x10});
  EXPECT_EQ(encoded[codes + 3], std::byte{0x0f});
}

TEST(CodecTest, DecodeRejectsWrongSizesWithDataLoss) {
  const Block in = RandomBlock(DType::kFloat16, 40, 24, 3, 0);
  for (Format format : {Format::kRaw, Format::kFp8E4M3, Format::kInt8, Format::kInt4}) {
    for (Axis axis : kAxes) {
      std::vector<std::byte> encoded = EncodeBlock(format, axis, in, 32);
      const size_t good = encoded.size();
      encoded.resize(good + 1);
      Block out(DType::kFloat16, 40, 24);
      const std::vector<std::byte> before = out.bytes;
      for (size_t size : {good - 1, good + 1, size_t{0}}) {
        const absl::Status status = Decode(format, axis, DType::kFloat16, encoded.data(), size, 40,
                                           24, 32, out.bytes.data(), out.stride);
        EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << FormatName(format) << status;
      }
      // The same bytes decoded as another shape or format are also caught by size.
      if (format != Format::kRaw) {
        const absl::Status status = Decode(format, axis, DType::kFloat16, encoded.data(), good, 40,
                                           25, 32, out.bytes.data(), out.stride);
        EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
      }
      EXPECT_EQ(out.bytes, before);
    }
  }
}

TEST(CodecTest, DecodeRejectsCorruptParametersWithDataLoss) {
  const Block in = RandomBlock(DType::kBFloat16, 40, 24, 4, 0);
  for (Format format : kQuantized) {
    for (Axis axis : kAxes) {
      const std::vector<std::byte> good = EncodeBlock(format, axis, in, 32);
      const int64_t groups = NumGroups(format, axis, 40, 24, 32);
      struct Corruption {
        int64_t offset;
        float value;
      };
      std::vector<Corruption> corruptions = {
          {0, kNaN}, {groups - 1, kInf}, {groups / 2, -kInf}, {1, -1.0f}};
      if (format != Format::kFp8E4M3) {
        corruptions.push_back({groups, kNaN});           // first min
        corruptions.push_back({2 * groups - 1, -kInf});  // last min
      }
      for (const Corruption& corruption : corruptions) {
        std::vector<std::byte> bad = good;
        std::memcpy(bad.data() + 4 * corruption.offset, &corruption.value, 4);
        Block out(DType::kBFloat16, 40, 24);
        const std::vector<std::byte> before = out.bytes;
        const absl::Status status = Decode(format, axis, DType::kBFloat16, bad.data(), bad.size(),
                                           40, 24, 32, out.bytes.data(), out.stride);
        EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss)
            << FormatName(format) << " float " << corruption.offset << " " << status;
        EXPECT_EQ(out.bytes, before);
      }
      // A negative min is fine (it is the group's minimum value).
      std::vector<std::byte> ok = good;
      if (format != Format::kFp8E4M3) {
        const float negative = -3.0f;
        std::memcpy(ok.data() + 4 * groups, &negative, 4);
      }
      Block out(DType::kBFloat16, 40, 24);
      EXPECT_TRUE(Decode(format, axis, DType::kBFloat16, ok.data(), ok.size(), 40, 24, 32,
                         out.bytes.data(), out.stride)
                      .ok());
    }
  }
}

TEST(CodecTest, DecodeRejectsBadParametersWithInvalidArgument) {
  std::byte buffer[64] = {};
  std::byte dst[64];
  EXPECT_EQ(Decode(Format::kInt8, Axis::kKeys, DType::kFloat16, buffer, 0, 2, 2, 0, dst, 4).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Decode(Format::kInt8, Axis::kKeys, DType::kUnspecified, buffer, 0, 2, 2, 32, dst, 4).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Decode(Format::kInt8, Axis::kKeys, DType::kFloat16, buffer, 0, -2, 2, 32, dst, 4).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Decode(static_cast<Format>(7), Axis::kKeys, DType::kFloat16, buffer, 0, 2, 2, 32, dst, 4)
          .code(),
      absl::StatusCode::kInvalidArgument);
  const absl::Status status =
      ValidateBlock(Format::kInt4, Axis::kValues, DType::kFloat16, 1, 1, -3);
  EXPECT_NE(status.message().find("group"), absl::string_view::npos) << status;
  // An empty block is valid and has no bytes.
  EXPECT_TRUE(
      Decode(Format::kInt8, Axis::kKeys, DType::kFloat16, nullptr, 0, 0, 8, 32, dst, 16).ok());
}

}  // namespace
}  // namespace kvtier::storage::quant
