// Key sketches for the fast selection mode (docs/FAST_MODE.md): a compact int8 copy of each
// offloaded row's scoring-layer keys, kept in the score index beside the keys themselves.
//
// For one row, one scoring layer and one KV head (a vector k of head_dim elements):
//   scale = max_d |k_d| / 127   (0 when k is all zeros)
//   code_d = round(k_d / scale) + 128, an unsigned byte in [1, 255] ("offset binary")
// so that k_d ≈ scale * (code_d - 128). Codes are laid out for the first-pass kernels:
// [scoring layer][kv head][capacity / 16][head_dim / 4 rounded up][16][4]: four
// consecutive dimensions of one row are adjacent, 16 rows of one dimension group fill 64
// bytes, and the codes of a tile of 16 rows are contiguous, so the kernels stream them
// (dimensions past head_dim are code 128, value 0). Scales: [scoring layer][kv head]
// [capacity] float32.
#ifndef KVTIER_GPU_SKETCH_H_
#define KVTIER_GPU_SKETCH_H_

#include <cstddef>
#include <cstdint>

#include "gpu/scorer.h"

namespace kvtier::scorer {

// Dimension groups of 4 for `head_dim`.
inline int32_t SketchGroups(int32_t head_dim) { return (head_dim + 3) / 4; }

// Bytes of the codes of one block: layers * kv_heads * groups * capacity * 4.
inline size_t SketchCodeBytes(int32_t layers, int32_t kv_heads, int32_t head_dim,
                              int32_t capacity) {
  return static_cast<size_t>(layers) * static_cast<size_t>(kv_heads) *
         static_cast<size_t>(SketchGroups(head_dim)) * static_cast<size_t>(capacity) * 4;
}

// Floats of the scales of one block: layers * kv_heads * capacity.
inline size_t SketchScaleCount(int32_t layers, int32_t kv_heads, int32_t capacity) {
  return static_cast<size_t>(layers) * static_cast<size_t>(kv_heads) *
         static_cast<size_t>(capacity);
}

// Encodes the keys of one row and one scoring layer, `keys` = [kv_heads][head_dim] of
// `type` (little-endian, any alignment), into slot `slot` of that layer's part of a block:
// `codes` points at the layer's first code and `scales` at [kv head 0][slot 0]. `capacity`
// is a multiple of 16. Non-finite keys are never stored (Offload refuses them).
void EncodeSketchRow(KeyType type, const void* keys, int32_t kv_heads, int32_t head_dim,
                     int32_t capacity, int32_t slot, uint8_t* codes, float* scales);

}  // namespace kvtier::scorer

#endif  // KVTIER_GPU_SKETCH_H_
