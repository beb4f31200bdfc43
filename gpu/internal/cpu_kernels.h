// CPU scoring kernels: pure compute on raw pointers, one table per instruction set. The
// launcher (cpu_scorer.cc) checks shapes and picks a table; nothing here validates input.
// Internal to gpu/: not part of the scorer's public contract.
#ifndef KVTIER_GPU_INTERNAL_CPU_KERNELS_H_
#define KVTIER_GPU_INTERNAL_CPU_KERNELS_H_

#include <cstdint>

#include "gpu/scorer.h"

namespace kvtier::scorer::internal {

// Instruction-set levels of the CPU kernels, lowest first.
enum class Isa { kPortable, kAvx2, kAvx512 };

// "portable", "avx2", "avx512".
const char* IsaName(Isa isa);

// True when this CPU can run the kernels of `isa` (kAvx2 needs AVX2+FMA+F16C, kAvx512 needs
// AVX-512F/BW).
bool IsaSupported(Isa isa);

// The highest supported level.
Isa BestIsa();

struct KernelTable {
  Isa isa;

  // Converts `count` little-endian elements of `type` at `src` to float32 at `dst`.
  void (*convert)(KeyType type, const void* src, int64_t count, float* dst);

  // out[i * out_stride + r] = (q_i . k_r) * scale for query i in [0, nq) and row r in
  // [0, rows16), where q_i = queries[i * dim, (i + 1) * dim) and element d of row r is
  // keys[d * key_stride + r]. Rows whose bias[r] != 0 get -infinity instead. rows16 is a
  // multiple of 16. Each dot product is summed over d in ascending order with one fused
  // multiply-add per step, whatever the row's lane, so identical rows give identical bits.
  void (*dot_tile)(const float* queries, int nq, int dim, const float* keys, int64_t key_stride,
                   int rows16, const float* bias, float scale, float* out, int64_t out_stride);

  // Folds s[0, n) into an online log-sum-exp held as (*max, *sum), lse = max + log(sum);
  // -infinity entries do not contribute. n is a multiple of 16. *sum is accumulated in
  // double.
  void (*lse_fold)(const float* s, int n, double* max, double* sum);

  // rowmax[r] = max(rowmax[r], s[r] - lse) in float32 for r in [0, n); n is a multiple of
  // 16. (float32 keeps pass 2 at 16 lanes; the rounding of lse, about 1e-6 relative to the
  // final score, is far below the 1e-5 gaps the golden cases guarantee.)
  void (*max_shifted)(const float* s, int n, float lse, float* rowmax);
};

// Probes per (scoring layer, kv head) in the fast mode's first pass (docs/FAST_MODE.md).
inline constexpr int kSketchProbes = 4;
// Probe codes are int8 in [-kSketchProbeMax, kSketchProbeMax], so that two products of a
// key code (<= 255) and a probe code fit a signed 16-bit sum (AVX2's vpmaddubsw).
inline constexpr int kSketchProbeMax = 63;

// The first pass over one (scoring layer, kv head) of one block of sketches (gpu/sketch.h):
// for r in [0, rows16) and m in [0, kSketchProbes),
//   dot = sum_d codes[r / 16][d / 4][r % 16][d % 4] * probes[m][d]      (int32, exact)
//   z_m = float(dot - 128 * sum_d probes[m][d]) * probe_scale[m] * row_scale[r] + bias[m]
//   out[r] = max(out[r], max_m z_m)
// with the two multiplies and the add rounded separately, so every table gives the same
// bits. probes: [kSketchProbes][groups * 4]; codes: [capacity / 16][groups][16][4]; rows16
// a multiple of 16.
struct SketchProbes {
  const int8_t* codes;       // [kSketchProbes][groups * 4]
  const int32_t* code_sums;  // [kSketchProbes]: 128 * sum of the probe's codes
  const float* scale;        // [kSketchProbes]
  const float* bias;         // [kSketchProbes]
};
using SketchMaxFn = void (*)(const uint8_t* codes, int groups, int rows16,
                             const SketchProbes& probes, const float* row_scale, float* out);
void SketchMaxPortable(const uint8_t* codes, int groups, int rows16, const SketchProbes& probes,
                       const float* row_scale, float* out);
void SketchMaxAvx2(const uint8_t* codes, int groups, int rows16, const SketchProbes& probes,
                   const float* row_scale, float* out);
// AVX-512 VNNI (vpdpbusd); only when Avx512VnniSupported().
void SketchMaxAvx512Vnni(const uint8_t* codes, int groups, int rows16, const SketchProbes& probes,
                         const float* row_scale, float* out);
bool Avx512VnniSupported();
// The fastest first-pass kernel allowed at `isa`.
SketchMaxFn SketchKernelFor(Isa isa);

// Tables; each may only be called when IsaSupported(isa) holds.
const KernelTable& PortableKernels();
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();
const KernelTable& KernelsFor(Isa isa);

// Scalar fp16 / bf16 decoding shared by the portable table and ConvertToFloat32.
void ConvertToFloat32Portable(KeyType type, const void* src, int64_t count, float* dst);

}  // namespace kvtier::scorer::internal

#endif  // KVTIER_GPU_INTERNAL_CPU_KERNELS_H_
