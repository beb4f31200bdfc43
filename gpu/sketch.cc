// EncodeSketchRow (gpu/sketch.h).
#include "gpu/sketch.h"

#include <algorithm>
#include <cmath>

#include "gpu/internal/cpu_kernels.h"

namespace kvtier::scorer {

void EncodeSketchRow(KeyType type, const void* keys, int32_t kv_heads, int32_t head_dim,
                     int32_t capacity, int32_t slot, uint8_t* codes, float* scales) {
  const int32_t groups = SketchGroups(head_dim);
  const size_t head_codes = static_cast<size_t>(groups) * static_cast<size_t>(capacity) * 4;
  const auto* src = static_cast<const uint8_t*>(keys);
  const size_t elem = static_cast<size_t>(KeyTypeSize(type));
  float row[1024];  // head_dim <= 1024 (validated with the geometry)
  for (int32_t g = 0; g < kv_heads; ++g) {
    internal::ConvertToFloat32Portable(type, src + static_cast<size_t>(g) * head_dim * elem,
                                       head_dim, row);
    float peak = 0.0f;
    for (int32_t d = 0; d < head_dim; ++d) peak = std::max(peak, std::fabs(row[d]));
    const float scale = peak / 127.0f;
    const float inv = peak > 0.0f ? 127.0f / peak : 0.0f;
    scales[static_cast<size_t>(g) * capacity + slot] = scale;
    uint8_t* head = codes + g * head_codes;
    for (int32_t d = 0; d < groups * 4; ++d) {
      const int code = d < head_dim
                           ? static_cast<int>(std::lrint(std::clamp(row[d] * inv, -127.0f, 127.0f)))
                           : 0;
      head[((static_cast<size_t>(slot / 16) * groups + d / 4) * 16 + slot % 16) * 4 + d % 4] =
          static_cast<uint8_t>(code + 128);
    }
  }
}

}  // namespace kvtier::scorer
