// KeyTypeSize and ConvertToFloat32 (gpu/scorer.h).
#include "gpu/internal/cpu_kernels.h"
#include "gpu/scorer.h"

namespace kvtier::scorer {

int KeyTypeSize(KeyType type) {
  switch (type) {
    case KeyType::kFloat32:
      return 4;
    case KeyType::kFloat16:
    case KeyType::kBFloat16:
      return 2;
  }
  return 0;
}

void ConvertToFloat32(KeyType type, const void* src, int64_t count, float* dst) {
  if (count <= 0) return;
  internal::KernelsFor(internal::BestIsa()).convert(type, src, count, dst);
}

}  // namespace kvtier::scorer
