// Probes of the fast mode's first pass (docs/FAST_MODE.md): the signal's query vectors of
// one (scoring layer, kv head), group * T of them, summarized by kSketchProbes cluster
// means, quantized to int8 for the sketch kernels. Internal to gpu/.
#ifndef KVTIER_GPU_INTERNAL_PROBES_H_
#define KVTIER_GPU_INTERNAL_PROBES_H_

#include <cstdint>
#include <vector>

#include "gpu/internal/cpu_kernels.h"
#include "gpu/scorer.h"

namespace kvtier::scorer::internal {

// Probes of every (scoring layer, kv head) item, item = layer * num_kv_heads + kv_head.
class ProbeSet {
 public:
  // Sizes the buffers for `request` (allocates only when they grow).
  void Reset(const ScoreRequest& request);
  // Builds the probes of one item; items may be built concurrently after Reset.
  void Build(const ScoreRequest& request, int item);
  SketchProbes For(int item) const;
  int groups() const { return groups_; }

 private:
  int groups_ = 0;
  std::vector<int8_t> codes_;       // [item][probe][groups * 4]
  std::vector<int32_t> code_sums_;  // [item][probe]
  std::vector<float> scale_;        // [item][probe]
  std::vector<float> bias_;         // [item][probe]
};

}  // namespace kvtier::scorer::internal

#endif  // KVTIER_GPU_INTERNAL_PROBES_H_
