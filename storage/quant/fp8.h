// OCP FP8 E4M3FN ("fp8 e4m3", as on H100 and in the OCP 8-bit floating point spec v1.0)
// <-> float32.
//
// Bits S.EEEE.MMM, exponent bias 7. E = 1..15: (-1)^S * 2^(E-7) * (1 + M/8); E = 0:
// (-1)^S * 2^-6 * M/8 (subnormals, smallest 2^-9). S.1111.111 (0x7f, 0xff) is NaN; there is
// no infinity, so S.1111.110 = +-448 is the largest finite value.
#ifndef KVTIER_STORAGE_QUANT_FP8_H_
#define KVTIER_STORAGE_QUANT_FP8_H_

#include <bit>
#include <cstdint>

namespace kvtier::storage::quant {

inline constexpr float kE4M3Max = 448.0f;
inline constexpr uint8_t kE4M3NaN = 0x7f;

// float32 value of the E4M3 code `c` (NaN for 0x7f and 0xff). Exact.
inline float E4M3ToFloat(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t exponent = (c >> 3) & 0xfu;
  const uint32_t mantissa = c & 0x7u;
  // Normal: rebias 7 -> 127 and move the 3 mantissa bits to the top of float32's 23.
  const uint32_t normal = ((exponent + 120u) << 23) | (mantissa << 20);
  // Subnormal: M * 2^-9, exact in float32.
  const uint32_t subnormal = std::bit_cast<uint32_t>(static_cast<float>(mantissa) * 0x1p-9f);
  uint32_t magnitude = exponent == 0 ? subnormal : normal;
  magnitude = (c & 0x7fu) == 0x7fu ? 0x7fc00000u : magnitude;
  return std::bit_cast<float>(magnitude | sign);
}

// E4M3 code of `f`, rounded to nearest even and saturating: finite values beyond +-448 and
// infinities become +-448 (0x7e, 0xfe); NaN becomes NaN (0x7f, or 0xff when negative).
inline uint8_t FloatToE4M3(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 24) & 0x80u;
  // Saturate first: |f| in (448, inf] becomes 448, so rounding below can never reach 0x7f.
  // The comparison is false for NaN, which keeps its bits and is handled last.
  const float a = std::bit_cast<float>(x & 0x7fffffffu);
  const float clamped = a > kE4M3Max ? kE4M3Max : a;
  const uint32_t bits = std::bit_cast<uint32_t>(clamped);
  // |f| >= 2^-6 (normal E4M3): round the 20 dropped mantissa bits to nearest even, then
  // rebias 127 -> 7. (bits >> 20) is exponent:3 mantissa bits, so a carry is correct.
  const uint32_t normal = ((bits + 0x7ffffu + ((bits >> 20) & 1u)) >> 20) - (120u << 3);
  // |f| < 2^-6: the code is |f| / 2^-9 rounded to nearest even, in 0..8 (8 = 0x08 = 2^-6,
  // the smallest normal, which is right). Adding 1.5 * 2^23 makes the FPU round to an
  // integer with ties to even (exact for 0 <= t < 2^22).
  // Only small values take this path (NaN must not reach the float -> int conversion).
  const bool is_subnormal = bits < 0x3c800000u;  // 2^-6
  const float t = (is_subnormal ? clamped : 0.0f) * 512.0f;
  const uint32_t subnormal =
      static_cast<uint32_t>(static_cast<int32_t>((t + 0x1.8p23f) - 0x1.8p23f));
  uint32_t code = is_subnormal ? subnormal : normal;
  code = a != a ? kE4M3NaN : code;
  return static_cast<uint8_t>(code | sign);
}

}  // namespace kvtier::storage::quant

#endif  // KVTIER_STORAGE_QUANT_FP8_H_
