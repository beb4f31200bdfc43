#include "storage/geometry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvtier::storage {
namespace {

absl::Status CheckRange(const char* field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometry.", field, ": ", value, " is out of range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

int DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat32:
      return 4;
    case DType::kUnspecified:
      break;
  }
  return 0;
}

size_t Geometry::LayerRowBytes() const {
  return static_cast<size_t>(num_kv_heads) * static_cast<size_t>(head_dim) *
         static_cast<size_t>(DTypeSize(dtype));
}

absl::Status ValidateAndNormalizeGeometry(Geometry& g) {
  if (absl::Status s = CheckRange("num_layers", g.num_layers, 1, kMaxLayers); !s.ok()) return s;
  if (absl::Status s = CheckRange("num_q_heads", g.num_q_heads, 1, kMaxHeads); !s.ok()) return s;
  if (absl::Status s = CheckRange("num_kv_heads", g.num_kv_heads, 1, kMaxHeads); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("head_dim", g.head_dim, 1, kMaxHeadDim); !s.ok()) return s;
  const int64_t kv_width = static_cast<int64_t>(g.num_kv_heads) * g.head_dim;
  if (kv_width > kMaxKvHeadsTimesHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("geometry.head_dim: num_kv_heads * head_dim = ",
                                                   kv_width, " exceeds ", kMaxKvHeadsTimesHeadDim));
  }
  if (g.num_q_heads % g.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("geometry.num_q_heads: ", g.num_q_heads,
                                                   " is not a multiple of num_kv_heads ",
                                                   g.num_kv_heads));
  }
  if (DTypeSize(g.dtype) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("geometry.dtype: must be specified (got ", static_cast<int>(g.dtype), ")"));
  }

  // Validate scoring_layers on a copy so that `g` stays untouched on error.
  std::vector<int32_t> layers = g.scoring_layers;
  std::vector<bool> seen(static_cast<size_t>(g.num_layers), false);
  for (size_t i = 0; i < layers.size(); ++i) {
    const int32_t l = layers[i];
    if (l < 0 || l >= g.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat("geometry.scoring_layers[", i, "]: ", l,
                                                     " is out of range [0, ", g.num_layers, ")"));
    }
    if (seen[static_cast<size_t>(l)]) {
      return absl::InvalidArgumentError(
          absl::StrCat("geometry.scoring_layers[", i, "]: layer ", l, " is repeated"));
    }
    seen[static_cast<size_t>(l)] = true;
  }
  if (layers.empty()) {
    layers.resize(static_cast<size_t>(g.num_layers));
    for (int32_t l = 0; l < g.num_layers; ++l) layers[static_cast<size_t>(l)] = l;
  } else {
    std::sort(layers.begin(), layers.end());
  }
  g.scoring_layers = std::move(layers);
  return absl::OkStatus();
}

}  // namespace kvtier::storage
