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

// Tables; each may only be called when IsaSupported(isa) holds.
const KernelTable& PortableKernels();
const KernelTable& Avx2Kernels();
const KernelTable& Avx512Kernels();
const KernelTable& KernelsFor(Isa isa);

// Scalar fp16 / bf16 decoding shared by the portable table and ConvertToFloat32.
void ConvertToFloat32Portable(KeyType type, const void* src, int64_t count, float* dst);

}  // namespace kvtier::scorer::internal

#endif  // KVTIER_GPU_INTERNAL_CPU_KERNELS_H_
