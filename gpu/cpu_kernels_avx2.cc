// AVX2 + FMA + F16C kernels. This file is compiled with -mavx2 -mfma -mf16c and only
// reached after IsaSupported(Isa::kAvx2).
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "gpu/internal/cpu_kernels.h"

namespace kvtier::scorer::internal {
namespace {

// Register blocking of dot_tile: kTileQ queries x 16 rows = 12 ymm accumulators, two key
// vectors and one broadcast (16 ymm registers in all).
constexpr int kTileQ = 6;

template <int NQ>
void DotRows(const float* q, int dim, const float* keys, int64_t key_stride, int rows16,
             const float* bias, float scale, float* out, int64_t out_stride) {
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 zero = _mm256_setzero_ps();
  for (int r = 0; r < rows16; r += 16) {
    __m256 acc[NQ][2];
#pragma GCC unroll 6
    for (int i = 0; i < NQ; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int d = 0; d < dim; ++d) {
      const float* k = keys + d * key_stride + r;
      const __m256 k0 = _mm256_loadu_ps(k);
      const __m256 k1 = _mm256_loadu_ps(k + 8);
#pragma GCC unroll 6
      for (int i = 0; i < NQ; ++i) {
        const __m256 qb = _mm256_broadcast_ss(q + i * dim + d);
        acc[i][0] = _mm256_fmadd_ps(qb, k0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(qb, k1, acc[i][1]);
      }
    }
    const __m256 keep0 = _mm256_cmp_ps(_mm256_loadu_ps(bias + r), zero, _CMP_EQ_OQ);
    const __m256 keep1 = _mm256_cmp_ps(_mm256_loadu_ps(bias + r + 8), zero, _CMP_EQ_OQ);
#pragma GCC unroll 6
    for (int i = 0; i < NQ; ++i) {
      float* o = out + i * out_stride + r;
      _mm256_storeu_ps(o, _mm256_blendv_ps(neg_inf, _mm256_mul_ps(acc[i][0], vscale), keep0));
      _mm256_storeu_ps(o + 8, _mm256_blendv_ps(neg_inf, _mm256_mul_ps(acc[i][1], vscale), keep1));
    }
  }
}

void DotTile(const float* queries, int nq, int dim, const float* keys, int64_t key_stride,
             int rows16, const float* bias, float scale, float* out, int64_t out_stride) {
  int i = 0;
  for (; i + kTileQ <= nq; i += kTileQ) {
    DotRows<kTileQ>(queries + static_cast<int64_t>(i) * dim, dim, keys, key_stride, rows16, bias,
                    scale, out + i * out_stride, out_stride);
  }
  const float* q = queries + static_cast<int64_t>(i) * dim;
  float* o = out + i * out_stride;
  switch (nq - i) {
    case 0:
      break;
    case 1:
      DotRows<1>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
    case 2:
      DotRows<2>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
    case 3:
      DotRows<3>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
    case 4:
      DotRows<4>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
    default:
      DotRows<5>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
  }
}

// exp(x) for x <= 0 in float32 (Cephes expf polynomial); x below -87.3, including
// -infinity, gives 0.
inline __m256 ExpNonPositive(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.3f);
  const __m256 keep = _mm256_cmp_ps(x, lowest, _CMP_GE_OQ);
  x = _mm256_max_ps(x, lowest);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
  // 2^n for n in [-126, 0] through the exponent field.
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep);
}

void LseFold(const float* s, int n, double* max, double* sum) {
  __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < n; r += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + r));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float block_max = lanes[0];
  for (int j = 1; j < 8; ++j) block_max = lanes[j] > block_max ? lanes[j] : block_max;
  if (block_max == -std::numeric_limits<float>::infinity()) return;
  if (block_max > *max) {
    *sum *= std::exp(*max - static_cast<double>(block_max));
    *max = block_max;
  }
  const __m256 m = _mm256_set1_ps(static_cast<float>(*max));
  __m256d lo = _mm256_setzero_pd();
  __m256d hi = _mm256_setzero_pd();
  for (int r = 0; r < n; r += 8) {
    const __m256 e = ExpNonPositive(_mm256_sub_ps(_mm256_loadu_ps(s + r), m));
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double parts[4];
  _mm256_store_pd(parts, _mm256_add_pd(lo, hi));
  *sum += (parts[0] + parts[1]) + (parts[2] + parts[3]);
}

void MaxShifted(const float* s, int n, float lse, float* rowmax) {
  const __m256 shift = _mm256_set1_ps(lse);
  for (int r = 0; r < n; r += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(s + r), shift);
    _mm256_storeu_ps(rowmax + r, _mm256_max_ps(_mm256_loadu_ps(rowmax + r), v));
  }
}

void Convert(KeyType type, const void* src, int64_t count, float* dst) {
  const auto* in = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  switch (type) {
    case KeyType::kFloat32:
      std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
      return;
    case KeyType::kFloat16:
      for (; i + 8 <= count; i += 8) {
        _mm256_storeu_ps(
            dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
      }
      break;
    case KeyType::kBFloat16:
      for (; i + 8 <= count; i += 8) {
        const __m256i wide =
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
      }
      break;
  }
  ConvertToFloat32Portable(type, in + i, count - i, dst + i);
}

}  // namespace

void SketchMaxAvx2(const uint8_t* codes, int groups, int rows16, const SketchProbes& probes,
                   const float* row_scale, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int r = 0; r < rows16; r += 8) {
    __m256i acc[kSketchProbes];
#pragma GCC unroll 8
    for (int m = 0; m < kSketchProbes; ++m) acc[m] = _mm256_setzero_si256();
    for (int g = 0; g < groups; ++g) {
      // 8 rows x 4 dimensions; vpmaddubsw cannot saturate with probes in [-63, 63].
      const __m256i k = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(codes + ((r / 16) * groups + g) * 64 + (r % 16) * 4));
#pragma GCC unroll 8
      for (int m = 0; m < kSketchProbes; ++m) {
        int32_t word;
        std::memcpy(&word, probes.codes + (static_cast<int64_t>(m) * groups + g) * 4, 4);
        const __m256i pairs = _mm256_maddubs_epi16(k, _mm256_set1_epi32(word));
        acc[m] = _mm256_add_epi32(acc[m], _mm256_madd_epi16(pairs, ones));
      }
    }
    const __m256 rs = _mm256_loadu_ps(row_scale + r);
    __m256 best = _mm256_loadu_ps(out + r);
#pragma GCC unroll 8
    for (int m = 0; m < kSketchProbes; ++m) {
      const __m256 dot =
          _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[m], _mm256_set1_epi32(probes.code_sums[m])));
      const __m256 z =
          _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(dot, _mm256_set1_ps(probes.scale[m])), rs),
                        _mm256_set1_ps(probes.bias[m]));
      best = _mm256_max_ps(best, z);
    }
    _mm256_storeu_ps(out + r, best);
  }
}

const KernelTable& Avx2Kernels() {
  static constexpr KernelTable kTable = {Isa::kAvx2, &Convert, &DotTile, &LseFold, &MaxShifted};
  return kTable;
}

}  // namespace kvtier::scorer::internal
