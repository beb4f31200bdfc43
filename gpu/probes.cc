// ProbeSet (gpu/internal/probes.h): a few rounds of k-means on the item's query vectors
// under cosine similarity, seeded with one cluster per query head.
#include "gpu/internal/probes.h"

#include <algorithm>
#include <cmath>

#include "gpu/sketch.h"

namespace kvtier::scorer::internal {
namespace {

constexpr int kRounds = 1;  // refinements after the per-head seeding

// Eight independent partial sums, so that the compiler vectorizes the loop.
float Dot(const float* a, const float* b, int n) {
  float acc[8] = {};
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[d + j] * b[d + j];
  }
  float sum = 0.0f;
  for (; d < n; ++d) sum += a[d] * b[d];
  for (int j = 0; j < 8; ++j) sum += acc[j];
  return sum;
}

}  // namespace

void ProbeSet::Reset(const ScoreRequest& request) {
  const ScoreShape& shape = request.shape;
  groups_ = SketchGroups(shape.head_dim);
  const size_t items = static_cast<size_t>(shape.num_layers) * shape.num_kv_heads;
  codes_.resize(items * kSketchProbes * groups_ * 4);
  code_sums_.resize(items * kSketchProbes);
  scale_.resize(items * kSketchProbes);
  bias_.resize(items * kSketchProbes);
}

void ProbeSet::Build(const ScoreRequest& request, int item) {
  const ScoreShape& shape = request.shape;
  const int dim = shape.head_dim;
  const int tokens = shape.num_tokens;
  const int group = shape.num_q_heads / shape.num_kv_heads;
  const int n = group * tokens;
  const int layer = item / shape.num_kv_heads;
  const int kv = item % shape.num_kv_heads;
  // Members: the group's query vectors, head-major then token, and their shifts.
  const int64_t first = int64_t{layer} * shape.num_q_heads + int64_t{kv} * group;  // [l][h]
  const float* members = request.queries.data() + first * tokens * dim;
  auto shift = [&](int i) -> float {
    return request.lse_active.empty() ? 0.0f : -request.lse_active[first * tokens + i];
  };

  // Seeds: member i starts in cluster (i / tokens) % kSketchProbes (its head), so that every
  // head has a probe when group <= kSketchProbes.
  std::vector<int> cluster(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) cluster[i] = (i / tokens) % kSketchProbes;
  std::vector<float> centroid(static_cast<size_t>(kSketchProbes) * dim);
  std::vector<float> unit(static_cast<size_t>(kSketchProbes) * dim);
  std::vector<float> bias(kSketchProbes);
  std::vector<int> count(kSketchProbes);
  auto update = [&]() {
    std::fill(centroid.begin(), centroid.end(), 0.0f);
    std::fill(bias.begin(), bias.end(), 0.0f);
    std::fill(count.begin(), count.end(), 0);
    for (int i = 0; i < n; ++i) {
      float* c = &centroid[static_cast<size_t>(cluster[i]) * dim];
      const float* x = members + static_cast<int64_t>(i) * dim;
      for (int d = 0; d < dim; ++d) c[d] += x[d];
      bias[cluster[i]] += shift(i);
      ++count[cluster[i]];
    }
    for (int m = 0; m < kSketchProbes; ++m) {
      if (count[m] == 0) {  // an empty cluster repeats member m's vector (m < n, or 0)
        const int i = std::min(m, n - 1);
        std::copy_n(members + static_cast<int64_t>(i) * dim, dim, &centroid[m * dim]);
        bias[m] = shift(i);
        count[m] = 1;
        continue;
      }
      const float inv = 1.0f / static_cast<float>(count[m]);
      for (int d = 0; d < dim; ++d) centroid[m * dim + d] *= inv;
      bias[m] *= inv;
    }
    for (int m = 0; m < kSketchProbes; ++m) {
      const float norm = std::sqrt(Dot(&centroid[m * dim], &centroid[m * dim], dim));
      const float inv = norm > 0.0f ? 1.0f / norm : 0.0f;
      for (int d = 0; d < dim; ++d) unit[m * dim + d] = centroid[m * dim + d] * inv;
    }
  };
  update();
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < n; ++i) {
      const float* x = members + static_cast<int64_t>(i) * dim;
      int best = 0;
      float best_dot = -INFINITY;
      for (int m = 0; m < kSketchProbes; ++m) {
        const float dot = Dot(x, &unit[m * dim], dim);
        if (dot > best_dot) best_dot = dot, best = m;
      }
      cluster[i] = best;
    }
    update();
  }

  // Quantize: code = round(c / peak * kSketchProbeMax); the scale carries 1/sqrt(dim) and
  // undoes the key scale's 127 (the row scale holds peak_k / 127).
  const float inv_sqrt_dim = 1.0f / std::sqrt(static_cast<float>(dim));
  for (int m = 0; m < kSketchProbes; ++m) {
    const size_t at = static_cast<size_t>(item) * kSketchProbes + m;
    int8_t* codes = &codes_[at * groups_ * 4];
    std::fill(codes, codes + groups_ * 4, int8_t{0});
    float peak = 0.0f;
    for (int d = 0; d < dim; ++d) peak = std::max(peak, std::fabs(centroid[m * dim + d]));
    const float inv = peak > 0.0f ? static_cast<float>(kSketchProbeMax) / peak : 0.0f;
    int32_t sum = 0;
    for (int d = 0; d < dim; ++d) {
      codes[d] = static_cast<int8_t>(std::lrint(centroid[m * dim + d] * inv));
      sum += codes[d];
    }
    code_sums_[at] = 128 * sum;
    scale_[at] = peak / static_cast<float>(kSketchProbeMax) * inv_sqrt_dim;
    bias_[at] = bias[m];
  }
}

SketchProbes ProbeSet::For(int item) const {
  const size_t at = static_cast<size_t>(item) * kSketchProbes;
  return SketchProbes{&codes_[at * groups_ * 4], &code_sums_[at], &scale_[at], &bias_[at]};
}

}  // namespace kvtier::scorer::internal
