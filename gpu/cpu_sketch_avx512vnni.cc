// The fast mode's first-pass kernel with AVX-512 VNNI (vpdpbusd: 64 byte products summed
// into 16 int32 lanes per instruction). Compiled with -mavx512f -mavx512bw -mavx512vnni and
// only reached after Avx512VnniSupported().
#include <immintrin.h>

#include <cstring>

#include "gpu/internal/cpu_kernels.h"

namespace kvtier::scorer::internal {

namespace {

// acc += dot products of byte quadruples; inline assembly because GCC 12 copies the
// accumulator around every vpdpbusd intrinsic.
inline __m512i Dpbusd(__m512i acc, __m512i keys, __m512i probe) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(keys), "v"(probe));
  return acc;
}

// Rows [r, r + 16 * NV) of one block: NV vectors of 16 rows share each probe broadcast.
template <int NV>
inline void Rows(const uint8_t* codes, int groups, int r, const SketchProbes& probes,
                 const float* row_scale, float* out) {
  __m512i acc[NV][kSketchProbes];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 8
    for (int m = 0; m < kSketchProbes; ++m) acc[v][m] = _mm512_setzero_si512();
  }
  for (int g = 0; g < groups; ++g) {
    __m512i k[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      k[v] = _mm512_loadu_si512(codes + ((r / 16 + v) * groups + g) * 64);
#pragma GCC unroll 8
    for (int m = 0; m < kSketchProbes; ++m) {
      int32_t word;
      std::memcpy(&word, probes.codes + (static_cast<int64_t>(m) * groups + g) * 4, 4);
      const __m512i p = _mm512_set1_epi32(word);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[v][m] = Dpbusd(acc[v][m], k[v], p);
    }
  }
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const __m512 rs = _mm512_loadu_ps(row_scale + r + 16 * v);
    __m512 best = _mm512_loadu_ps(out + r + 16 * v);
#pragma GCC unroll 8
    for (int m = 0; m < kSketchProbes; ++m) {
      const __m512 dot =
          _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[v][m], _mm512_set1_epi32(probes.code_sums[m])));
      const __m512 z =
          _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(dot, _mm512_set1_ps(probes.scale[m])), rs),
                        _mm512_set1_ps(probes.bias[m]));
      best = _mm512_max_ps(best, z);
    }
    _mm512_storeu_ps(out + r + 16 * v, best);
  }
}

}  // namespace

void SketchMaxAvx512Vnni(const uint8_t* codes, int groups, int rows16, const SketchProbes& probes,
                         const float* row_scale, float* out) {
  int r = 0;
  for (; r + 32 <= rows16; r += 32) Rows<2>(codes, groups, r, probes, row_scale, out);
  if (r < rows16) Rows<1>(codes, groups, r, probes, row_scale, out);
}

}  // namespace kvtier::scorer::internal
