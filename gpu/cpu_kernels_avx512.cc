// AVX-512F/BW kernels. This file is compiled with -mavx512f -mavx512bw -mfma -mf16c and
// only reached after IsaSupported(Isa::kAvx512).
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "gpu/internal/cpu_kernels.h"

namespace kvtier::scorer::internal {
namespace {

// Register blocking of dot_tile: kTileQ queries x 32 rows = 16 zmm accumulators; two key
// vectors are loaded per d and each query element is broadcast from memory into the FMA.
constexpr int kTileQ = 8;

template <int NQ, int NV>
inline void DotMicro(const float* q, int dim, const float* keys, int64_t key_stride,
                     const __mmask16* keep, float scale, float* out, int64_t out_stride) {
  __m512 acc[NQ][NV];
#pragma GCC unroll 8
  for (int i = 0; i < NQ; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  for (int d = 0; d < dim; ++d) {
    const float* k = keys + d * key_stride;
    __m512 kv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) kv[v] = _mm512_loadu_ps(k + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < NQ; ++i) {
      const __m512 qb = _mm512_set1_ps(q[i * dim + d]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(qb, kv[v], acc[i][v]);
    }
  }
  const __m512 vscale = _mm512_set1_ps(scale);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
#pragma GCC unroll 8
  for (int i = 0; i < NQ; ++i) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      const __m512 s = _mm512_mask_mov_ps(neg_inf, keep[v], _mm512_mul_ps(acc[i][v], vscale));
      _mm512_storeu_ps(out + i * out_stride + 16 * v, s);
    }
  }
}

template <int NQ>
void DotRows(const float* q, int dim, const float* keys, int64_t key_stride, int rows16,
             const float* bias, float scale, float* out, int64_t out_stride) {
  const __m512 zero = _mm512_setzero_ps();
  int r = 0;
  for (; r + 32 <= rows16; r += 32) {
    const __mmask16 keep[2] = {
        _mm512_cmp_ps_mask(_mm512_loadu_ps(bias + r), zero, _CMP_EQ_OQ),
        _mm512_cmp_ps_mask(_mm512_loadu_ps(bias + r + 16), zero, _CMP_EQ_OQ)};
    DotMicro<NQ, 2>(q, dim, keys + r, key_stride, keep, scale, out + r, out_stride);
  }
  if (r < rows16) {
    const __mmask16 keep[1] = {_mm512_cmp_ps_mask(_mm512_loadu_ps(bias + r), zero, _CMP_EQ_OQ)};
    DotMicro<NQ, 1>(q, dim, keys + r, key_stride, keep, scale, out + r, out_stride);
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
    case 5:
      DotRows<5>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
    case 6:
      DotRows<6>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
    default:
      DotRows<7>(q, dim, keys, key_stride, rows16, bias, scale, o, out_stride);
      break;
  }
}

// exp(x) for x <= 0 in float32 (Cephes expf polynomial, about 1 ulp); x below -87.3,
// including -infinity, gives 0.
inline __m512 ExpNonPositive(__m512 x) {
  const __m512 lowest = _mm512_set1_ps(-87.3f);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lowest, _CMP_LT_OQ);
  x = _mm512_max_ps(x, lowest);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), _mm512_scalef_ps(y, n));
}

void LseFold(const float* s, int n, double* max, double* sum) {
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < n; r += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + r));
  const float block_max = _mm512_reduce_max_ps(vmax);
  if (block_max == -std::numeric_limits<float>::infinity()) return;
  if (block_max > *max) {
    *sum *= std::exp(*max - static_cast<double>(block_max));
    *max = block_max;
  }
  const __m512 m = _mm512_set1_ps(static_cast<float>(*max));
  __m512d lo = _mm512_setzero_pd();
  __m512d hi = _mm512_setzero_pd();
  for (int r = 0; r < n; r += 16) {
    const __m512 e = ExpNonPositive(_mm512_sub_ps(_mm512_loadu_ps(s + r), m));
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    hi = _mm512_add_pd(
        hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  *sum += _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

void MaxShifted(const float* s, int n, float lse, float* rowmax) {
  const __m512 shift = _mm512_set1_ps(lse);
  for (int r = 0; r < n; r += 16) {
    const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(s + r), shift);
    _mm512_storeu_ps(rowmax + r, _mm512_max_ps(_mm512_loadu_ps(rowmax + r), v));
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
      for (; i + 16 <= count; i += 16) {
        _mm512_storeu_ps(
            dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i))));
      }
      break;
    case KeyType::kBFloat16:
      for (; i + 16 <= count; i += 16) {
        const __m512i wide =
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
      }
      break;
  }
  ConvertToFloat32Portable(type, in + i, count - i, dst + i);
}

}  // namespace

const KernelTable& Avx512Kernels() {
  static constexpr KernelTable kTable = {Isa::kAvx512, &Convert, &DotTile, &LseFold, &MaxShifted};
  return kTable;
}

}  // namespace kvtier::scorer::internal
