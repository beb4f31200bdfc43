#include "storage/quant/float16.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace kvtier::storage::quant {
namespace {

// Reference decoders written from the format definitions (double arithmetic, no bit tricks).
double ReferenceHalf(uint16_t h) {
  const int sign = h >> 15;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  double magnitude;
  if (exponent == 0x1f) {
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  } else {
    magnitude = std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  }
  return sign ? -magnitude : magnitude;
}

double ReferenceBFloat16(uint16_t b) {
  const int sign = b >> 15;
  const int exponent = (b >> 7) & 0xff;
  const int mantissa = b & 0x7f;
  double magnitude;
  if (exponent == 0xff) {
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), -133);
  } else {
    magnitude = std::ldexp(1.0 + mantissa / 128.0, exponent - 127);
  }
  return sign ? -magnitude : magnitude;
}

// Value of a code for the rounding tests: infinity counts as the next power of two, which is
// where IEEE puts the overflow threshold (the midpoint to the largest finite value).
double RoundingValue(double value, double overflow) {
  return std::isinf(value) ? std::copysign(overflow, value) : value;
}

bool IsNaN16(uint16_t bits, int exponent_bits) {
  const int mantissa_bits = 15 - exponent_bits;
  const uint32_t exponent_mask = ((1u << exponent_bits) - 1) << mantissa_bits;
  return (bits & exponent_mask) == exponent_mask && (bits & ((1u << mantissa_bits) - 1)) != 0;
}

TEST(Float16Test, DecodesAllHalvesExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float got = HalfToFloat(bits);
    const double want = ReferenceHalf(bits);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << std::hex << h;
      ASSERT_EQ(std::signbit(got), (h & 0x8000) != 0) << std::hex << h;  // -0 stays -0
    }
  }
}

TEST(Float16Test, RoundTripsAllHalves) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const uint16_t back = FloatToHalf(HalfToFloat(bits));
    if (IsNaN16(bits, 5)) {
      // NaN stays NaN with the same sign and payload, quieted.
      ASSERT_EQ(back, bits | 0x200u) << std::hex << h;
    } else {
      ASSERT_EQ(back, bits) << std::hex << h;
    }
  }
}

// Every midpoint between two neighbouring finite halves (exact in float32: 12 significant
// bits) must round to the one with an even mantissa, and the floats just beside it to the
// nearer one. Neighbours include 65504 and infinity (midpoint 65520 overflows, as in IEEE).
TEST(Float16Test, RoundsToNearestEven) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    for (const uint32_t sign : {0u, 0x8000u}) {
      const uint16_t lo = static_cast<uint16_t>(h | sign);
      const uint16_t hi = static_cast<uint16_t>((h + 1) | sign);
      const double mid =
          (ReferenceHalf(lo) + RoundingValue(ReferenceHalf(hi), std::ldexp(1.0, 16))) / 2;
      const float midf = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(midf), mid);
      const uint16_t even = (lo & 1u) == 0 ? lo : hi;
      ASSERT_EQ(FloatToHalf(midf), even) << std::hex << lo;
      const float toward_lo = std::nextafter(midf, static_cast<float>(ReferenceHalf(lo)));
      const float toward_hi = std::nextafter(midf, sign ? -std::numeric_limits<float>::infinity()
                                                        : std::numeric_limits<float>::infinity());
      ASSERT_EQ(FloatToHalf(toward_lo), lo) << std::hex << lo;
      ASSERT_EQ(FloatToHalf(toward_hi), hi) << std::hex << lo;
    }
  }
}

TEST(Float16Test, SpecialValues) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToHalf(kInf), 0x7c00);
  EXPECT_EQ(FloatToHalf(-kInf), 0xfc00);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(FloatToHalf(-65504.0f), 0xfbff);
  EXPECT_EQ(FloatToHalf(1e-30f), 0x0000);
  EXPECT_EQ(FloatToHalf(-1e-30f), 0x8000);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_TRUE(IsNaN16(FloatToHalf(std::numeric_limits<float>::quiet_NaN()), 5));
  EXPECT_TRUE(IsNaN16(FloatToHalf(-std::numeric_limits<float>::quiet_NaN()), 5));
  EXPECT_TRUE(IsNaN16(FloatToHalf(std::bit_cast<float>(0x7f800001u)), 5));  // tiny payload
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)));
}

TEST(BFloat16Test, DecodesAllBFloat16Exactly) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    const float got = BFloat16ToFloat(bits);
    const double want = ReferenceBFloat16(bits);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << b;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << std::hex << b;
      ASSERT_EQ(std::signbit(got), (b & 0x8000) != 0) << std::hex << b;
    }
  }
}

TEST(BFloat16Test, RoundTripsAllBFloat16) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    const uint16_t back = FloatToBFloat16(BFloat16ToFloat(bits));
    ASSERT_EQ(back, IsNaN16(bits, 8) ? (bits | 0x40u) : bits) << std::hex << b;
  }
}

TEST(BFloat16Test, RoundsToNearestEven) {
  for (uint32_t b = 0; b < 0x7f80; ++b) {
    for (const uint32_t sign : {0u, 0x8000u}) {
      const uint16_t lo = static_cast<uint16_t>(b | sign);
      const uint16_t hi = static_cast<uint16_t>((b + 1) | sign);
      const double mid =
          (ReferenceBFloat16(lo) + RoundingValue(ReferenceBFloat16(hi), std::ldexp(1.0, 128))) / 2;
      const float midf = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(midf), mid);
      const uint16_t even = (lo & 1u) == 0 ? lo : hi;
      ASSERT_EQ(FloatToBFloat16(midf), even) << std::hex << lo;
      const float toward_lo = std::nextafter(midf, static_cast<float>(ReferenceBFloat16(lo)));
      const float toward_hi = std::nextafter(midf, sign ? -std::numeric_limits<float>::infinity()
                                                        : std::numeric_limits<float>::infinity());
      ASSERT_EQ(FloatToBFloat16(toward_lo), lo) << std::hex << lo;
      ASSERT_EQ(FloatToBFloat16(toward_hi), hi) << std::hex << lo;
    }
  }
}

TEST(BFloat16Test, SpecialValues) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToBFloat16(kInf), 0x7f80);
  EXPECT_EQ(FloatToBFloat16(-kInf), 0xff80);
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);
  EXPECT_TRUE(IsNaN16(FloatToBFloat16(std::numeric_limits<float>::quiet_NaN()), 8));
  // A signalling NaN whose payload lives only in the low 16 bits must not become infinity.
  EXPECT_TRUE(IsNaN16(FloatToBFloat16(std::bit_cast<float>(0x7f800001u)), 8));
  EXPECT_TRUE(IsNaN16(FloatToBFloat16(std::bit_cast<float>(0xffffffffu)), 8));
}

}  // namespace
}  // namespace kvtier::storage::quant
