#include "storage/quant/fp8.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace kvtier::storage::quant {
namespace {

// E4M3FN value of a code, written from the OCP FP8 spec's table (double arithmetic).
double ReferenceE4M3(uint8_t c) {
  const int sign = c >> 7;
  const int exponent = (c >> 3) & 0xf;
  const int mantissa = c & 0x7;
  double magnitude;
  if (exponent == 0xf && mantissa == 0x7) {
    magnitude = std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(mantissa / 8.0, -6);
  } else {
    magnitude = std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  }
  return sign ? -magnitude : magnitude;
}

TEST(Fp8Test, DecodesAll256Codes) {
  for (int c = 0; c < 256; ++c) {
    const uint8_t code = static_cast<uint8_t>(c);
    const float got = E4M3ToFloat(code);
    const double want = ReferenceE4M3(code);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << c;
      EXPECT_EQ(std::signbit(got), c >= 0x80) << c;
    }
  }
  // Anchors from the OCP spec.
  EXPECT_EQ(E4M3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0xfe), -448.0f);
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(E4M3ToFloat(0x08), 0x1p-6f);    // smallest normal
  EXPECT_EQ(E4M3ToFloat(0x07), 0x1.cp-7f);  // largest subnormal, 7/8 * 2^-6
  EXPECT_EQ(E4M3ToFloat(0x01), 0x1p-9f);    // smallest subnormal
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xff)));
  EXPECT_EQ(E4M3ToFloat(0x78), 256.0f);  // S.1111.000 is a number in E4M3FN, not infinity
  // Positive finite codes are strictly increasing.
  for (int c = 1; c <= 0x7e; ++c) {
    EXPECT_LT(E4M3ToFloat(static_cast<uint8_t>(c - 1)), E4M3ToFloat(static_cast<uint8_t>(c)));
  }
}

TEST(Fp8Test, EncodesEveryCodeBackToItself) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(static_cast<uint8_t>(c))), c) << c;
  }
}

// Midpoints between neighbouring codes go to the even code (mantissa bit 0 clear); the floats
// just beside them go to the nearer code.
TEST(Fp8Test, RoundsToNearestEven) {
  for (int c = 0; c < 0x7e; ++c) {
    for (const int sign : {0, 0x80}) {
      const uint8_t lo = static_cast<uint8_t>(c | sign);
      const uint8_t hi = static_cast<uint8_t>((c + 1) | sign);
      const float mid = static_cast<float>((ReferenceE4M3(lo) + ReferenceE4M3(hi)) / 2);
      const uint8_t even = (lo & 1) == 0 ? lo : hi;
      EXPECT_EQ(FloatToE4M3(mid), even) << "between " << c << " and " << c + 1;
      const float away =
          sign ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
      EXPECT_EQ(FloatToE4M3(std::nextafter(mid, 0.0f)), lo) << c;
      EXPECT_EQ(FloatToE4M3(std::nextafter(mid, away)), hi) << c;
    }
  }
  // Below half the smallest subnormal: zero; exactly half: ties to even (zero).
  EXPECT_EQ(FloatToE4M3(0x1p-10f), 0x00);
  EXPECT_EQ(FloatToE4M3(0x1.000002p-10f), 0x01);
  EXPECT_EQ(FloatToE4M3(0x1p-30f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0x1p-30f), 0x80);
  EXPECT_EQ(FloatToE4M3(std::numeric_limits<float>::denorm_min()), 0x00);
  // 1.5 * 2^-9 is halfway between codes 1 and 2: even is 2.
  EXPECT_EQ(FloatToE4M3(0x1.8p-9f), 0x02);
}

TEST(Fp8Test, Saturates) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToE4M3(448.0f), 0x7e);
  EXPECT_EQ(FloatToE4M3(449.0f), 0x7e);
  EXPECT_EQ(FloatToE4M3(464.0f), 0x7e);  // would round to 480 (not a value): saturates
  EXPECT_EQ(FloatToE4M3(1000.0f), 0x7e);
  EXPECT_EQ(FloatToE4M3(std::numeric_limits<float>::max()), 0x7e);
  EXPECT_EQ(FloatToE4M3(kInf), 0x7e);
  EXPECT_EQ(FloatToE4M3(-449.0f), 0xfe);
  EXPECT_EQ(FloatToE4M3(-kInf), 0xfe);
}

TEST(Fp8Test, NaNAndZero) {
  EXPECT_EQ(FloatToE4M3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
  EXPECT_EQ(FloatToE4M3(-std::numeric_limits<float>::quiet_NaN()), 0xff);
  EXPECT_EQ(FloatToE4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
}

// Every float32 in [-500, 500] on a fine grid lands on the nearest code (ties: even).
TEST(Fp8Test, MatchesBruteForceNearest) {
  for (int i = -500 * 64; i <= 500 * 64; ++i) {
    const float x = static_cast<float>(i) / 64.0f;
    const uint8_t got = FloatToE4M3(x);
    double best_error = std::numeric_limits<double>::infinity();
    for (int c = 0; c < 256; ++c) {
      if ((c & 0x7f) == 0x7f) continue;
      const double error = std::fabs(ReferenceE4M3(static_cast<uint8_t>(c)) - x);
      best_error = std::min(best_error, error);
    }
    const double x_clamped = std::max(-448.0, std::min(448.0, static_cast<double>(x)));
    ASSERT_LE(std::fabs(ReferenceE4M3(got) - x_clamped), std::fabs(x) > 448 ? 0.0 : best_error)
        << x;
  }
}

}  // namespace
}  // namespace kvtier::storage::quant
