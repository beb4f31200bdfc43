// Session geometry: the shape of every row of a session (DESIGN.md §3).
#ifndef KVTIER_STORAGE_GEOMETRY_H_
#define KVTIER_STORAGE_GEOMETRY_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace kvtier::storage {

enum class DType { kUnspecified, kFloat16, kBFloat16, kFloat32 };

// Bytes per element; 0 for kUnspecified.
int DTypeSize(DType dtype);

// Limits enforced by ValidateGeometry.
inline constexpr int32_t kMaxLayers = 1024;
inline constexpr int32_t kMaxHeads = 1024;
inline constexpr int32_t kMaxHeadDim = 1024;
inline constexpr int64_t kMaxKvHeadsTimesHeadDim = 131072;

struct Geometry {
  int32_t num_layers = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  DType dtype = DType::kUnspecified;
  // Sorted, unique, in [0, num_layers). Empty before Normalize() means all layers.
  std::vector<int32_t> scoring_layers;
  // Only the keys of the scoring layers are kept (the score index): no payload, no values,
  // nothing persisted (docs/API.md, "Index-only sessions").
  bool index_only = false;

  // Bytes of K (or of V) for one row and one layer: num_kv_heads * head_dim * elem.
  size_t LayerRowBytes() const;
  // Bytes of K and V for one row and every layer; 0 when index_only (no payload).
  size_t RowBytes() const {
    return index_only ? 0 : 2 * LayerRowBytes() * static_cast<size_t>(num_layers);
  }
  // Layers a row needs to be complete: the scoring layers when index_only, else all.
  int32_t CompleteLayers() const {
    return index_only ? static_cast<int32_t>(scoring_layers.size()) : num_layers;
  }
};

// Checks `g` and fills scoring_layers (sorted; all layers when empty). On error returns
// INVALID_ARGUMENT whose message starts with the field path, e.g.
// "geometry.num_q_heads: 30 is not a multiple of num_kv_heads 4", and leaves `g` unchanged.
absl::Status ValidateAndNormalizeGeometry(Geometry& g);

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_GEOMETRY_H_
