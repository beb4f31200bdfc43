// IEEE binary16 (fp16) and bfloat16 <-> float32 conversions for the quantized cold formats.
//
// Each function is a few integer operations with selects instead of branches, inline so that
// the loops in codec.cc inline and vectorize them. Narrowing rounds to nearest, ties to even,
// as IEEE 754 and the GPUs do; a value too large for the narrow type becomes infinity (the
// IEEE overflow rule: fp16 from 65520 up, bf16 from 0x1.ffp127 up). Infinities stay
// infinities; a NaN stays a NaN (quieted, with the top bits of its payload kept).
#ifndef KVTIER_STORAGE_QUANT_FLOAT16_H_
#define KVTIER_STORAGE_QUANT_FLOAT16_H_

#include <bit>
#include <cstdint>

namespace kvtier::storage::quant {

// float32 value of the fp16 with bits `h`. Exact (every fp16 is a float32).
inline float HalfToFloat(uint16_t h) {
  // Move exponent and mantissa into float32 position and rebias 15 -> 127. Infinity/NaN
  // (exponent 31) need another 112 on the exponent; zero and subnormals (exponent 0) are
  // m * 2^-24, computed exactly as (2^-14 + m * 2^-24) - 2^-14 in float32.
  const uint32_t bits = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t exponent = bits & (0x7c00u << 13);
  const uint32_t normal = bits + ((127u - 15u) << 23);
  const uint32_t special = normal + ((128u - 16u) << 23);
  const float subnormal =
      std::bit_cast<float>(normal + (1u << 23)) - std::bit_cast<float>(113u << 23);
  uint32_t magnitude = exponent == (0x7c00u << 13) ? special : normal;
  magnitude = exponent == 0 ? std::bit_cast<uint32_t>(subnormal) : magnitude;
  return std::bit_cast<float>(magnitude | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

// fp16 bits of `f`, rounded to nearest even; overflow gives infinity.
inline uint16_t FloatToHalf(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  // NaN keeps its top 9 payload bits and is quieted; |f| >= 65536 (2^16) is infinity.
  const uint32_t special =
      a > 0x7f800000u ? (0x7e00u | ((a >> 13) & 0x3ffu)) : 0x7c00u;  // NaN : infinity
  // |f| < 2^-14 (fp16 subnormal or zero): adding 0.5f lines the fp16 subnormal step 2^-24 up
  // with the float32 ulp of 0.5 (2^-24), so the FPU does the round-to-nearest-even for us.
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(a) + 0.5f) - std::bit_cast<uint32_t>(0.5f);
  // Normal: rebias 127 -> 15 and round the 13 dropped mantissa bits to nearest even; a carry
  // into the exponent is correct (it may reach 0x7c00, infinity, from 65520 up).
  const uint32_t normal = (a + ((15u - 127u) << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
  uint32_t h = a >= 0x47800000u ? special : normal;
  h = a < 0x38800000u ? subnormal : h;
  return static_cast<uint16_t>(h | sign);
}

// float32 value of the bfloat16 with bits `b`. Exact (bf16 is the top half of a float32).
inline float BFloat16ToFloat(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

// bfloat16 bits of `f`, rounded to nearest even; overflow gives infinity.
inline uint16_t FloatToBFloat16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  const uint32_t nan = (x >> 16) | 0x40u;  // quiet bit set, payload top bits kept
  return static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

}  // namespace kvtier::storage::quant

#endif  // KVTIER_STORAGE_QUANT_FLOAT16_H_
