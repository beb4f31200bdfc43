// Portable scalar kernels (no intrinsics). Also home of the scalar fp16/bf16 decoding and of
// the run-time ISA detection.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "gpu/internal/cpu_kernels.h"

namespace kvtier::scorer::internal {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    std::memcpy(&bits, &magnitude, sizeof(bits));
    bits |= sign;
  } else if (exponent == 0x1f) {
    // Inf or NaN; NaNs come out quiet, as vcvtph2ps makes them.
    bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0u);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

float BFloat16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

constexpr int kLanes = 16;

void DotTile(const float* queries, int nq, int dim, const float* keys, int64_t key_stride,
             int rows16, const float* bias, float scale, float* out, int64_t out_stride) {
  // Per lane: one multiply and one add per d in ascending order (no FMA on this level).
  float acc[kLanes];
  for (int i = 0; i < nq; ++i) {
    const float* q = queries + static_cast<int64_t>(i) * dim;
    float* o = out + i * out_stride;
    for (int r0 = 0; r0 < rows16; r0 += kLanes) {
      std::fill(acc, acc + kLanes, 0.0f);
      for (int d = 0; d < dim; ++d) {
        const float qd = q[d];
        const float* k = keys + d * key_stride + r0;
        for (int j = 0; j < kLanes; ++j) acc[j] += qd * k[j];
      }
      for (int j = 0; j < kLanes; ++j) o[r0 + j] = bias[r0 + j] == 0.0f ? acc[j] * scale : kNegInf;
    }
  }
}

void LseFold(const float* s, int n, double* max, double* sum) {
  float block_max = kNegInf;
  for (int r = 0; r < n; ++r) block_max = std::max(block_max, s[r]);
  if (block_max == kNegInf) return;
  if (block_max > *max) {
    *sum *= std::exp(*max - static_cast<double>(block_max));
    *max = block_max;
  }
  const float m = static_cast<float>(*max);
  double total = 0.0;
  for (int r = 0; r < n; ++r) total += static_cast<double>(std::exp(s[r] - m));
  *sum += total;
}

void MaxShifted(const float* s, int n, float lse, float* rowmax) {
  for (int r = 0; r < n; ++r) rowmax[r] = std::max(rowmax[r], s[r] - lse);
}

void Convert(KeyType type, const void* src, int64_t count, float* dst) {
  ConvertToFloat32Portable(type, src, count, dst);
}

}  // namespace

void ConvertToFloat32Portable(KeyType type, const void* src, int64_t count, float* dst) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (type) {
    case KeyType::kFloat32:
      std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
      return;
    case KeyType::kFloat16:
      for (int64_t i = 0; i < count; ++i) dst[i] = HalfToFloat(LoadU16(bytes + 2 * i));
      return;
    case KeyType::kBFloat16:
      for (int64_t i = 0; i < count; ++i) dst[i] = BFloat16ToFloat(LoadU16(bytes + 2 * i));
      return;
  }
}

void SketchMaxPortable(const uint8_t* codes, int groups, int rows16, const SketchProbes& probes,
                       const float* row_scale, float* out) {
  for (int r = 0; r < rows16; ++r) {
    float best = out[r];
    for (int m = 0; m < kSketchProbes; ++m) {
      const int8_t* p = probes.codes + static_cast<int64_t>(m) * groups * 4;
      int32_t dot = 0;
      for (int g = 0; g < groups; ++g) {
        const uint8_t* k = codes + ((r / 16) * groups + g) * 64 + (r % 16) * 4;
        for (int j = 0; j < 4; ++j) dot += static_cast<int32_t>(k[j]) * p[g * 4 + j];
      }
      const float z =
          static_cast<float>(dot - probes.code_sums[m]) * probes.scale[m] * row_scale[r] +
          probes.bias[m];
      best = std::max(best, z);
    }
    out[r] = best;
  }
}

const KernelTable& PortableKernels() {
  static constexpr KernelTable kTable = {Isa::kPortable, &Convert, &DotTile, &LseFold, &MaxShifted};
  return kTable;
}

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return "portable";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

bool IsaSupported(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }
  return false;
}

Isa BestIsa() {
  if (IsaSupported(Isa::kAvx512)) return Isa::kAvx512;
  if (IsaSupported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kPortable;
}

bool Avx512VnniSupported() {
  return IsaSupported(Isa::kAvx512) && __builtin_cpu_supports("avx512vnni");
}

SketchMaxFn SketchKernelFor(Isa isa) {
  if (isa == Isa::kAvx512 && Avx512VnniSupported()) return &SketchMaxAvx512Vnni;
  if (isa != Isa::kPortable) return &SketchMaxAvx2;  // AVX-512 CPUs have AVX2
  return &SketchMaxPortable;
}

const KernelTable& KernelsFor(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return Avx512Kernels();
    case Isa::kAvx2:
      return Avx2Kernels();
    case Isa::kPortable:
      break;
  }
  return PortableKernels();
}

}  // namespace kvtier::scorer::internal
