// ReferenceScore: DESIGN.md §1 in float64 with plain loops, for tests of the fast paths.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gpu/internal/cpu_kernels.h"
#include "gpu/internal/score_request_check.h"
#include "gpu/scorer.h"

namespace kvtier::scorer {

absl::Status ReferenceScore(const ScoreRequest& request, absl::Span<double> scores) {
  if (absl::Status s = internal::CheckScoreRequest(request, scores.size()); !s.ok()) return s;
  const ScoreShape& shape = request.shape;
  const int64_t cap = request.block_capacity;
  const int64_t num_slots = static_cast<int64_t>(request.blocks.size()) * cap;
  const int group = shape.num_q_heads / shape.num_kv_heads;
  const int64_t dim = shape.head_dim;
  const double inv_sqrt_dim = 1.0 / std::sqrt(static_cast<double>(dim));
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();

  // Keys of every slot as float32: keys[((l * kv + g) * num_slots + slot) * dim + d].
  std::vector<float> keys(static_cast<size_t>(shape.num_layers) * shape.num_kv_heads * num_slots *
                          dim);
  std::vector<bool> valid(num_slots, false);
  std::vector<float> column(cap);
  const int elem = KeyTypeSize(shape.key_type);
  for (size_t b = 0; b < request.blocks.size(); ++b) {
    const KeyBlock& block = request.blocks[b];
    for (int r = 0; r < block.rows; ++r) valid[b * cap + r] = block.valid[r] != 0;
    if (block.rows == 0) continue;
    for (int l = 0; l < shape.num_layers; ++l) {
      for (int g = 0; g < shape.num_kv_heads; ++g) {
        for (int64_t d = 0; d < dim; ++d) {
          const int64_t offset = ((int64_t{l} * shape.num_kv_heads + g) * dim + d) * cap;
          internal::ConvertToFloat32Portable(
              shape.key_type, static_cast<const uint8_t*>(block.keys) + offset * elem, block.rows,
              column.data());
          for (int r = 0; r < block.rows; ++r) {
            const int64_t slot = static_cast<int64_t>(b) * cap + r;
            keys[((int64_t{l} * shape.num_kv_heads + g) * num_slots + slot) * dim + d] = column[r];
          }
        }
      }
    }
  }

  std::fill(scores.begin(), scores.end(), 0.0);
  std::vector<double> s(static_cast<size_t>(shape.num_tokens) * num_slots);
  std::vector<double> best(num_slots);
  for (int l = 0; l < shape.num_layers; ++l) {
    for (int h = 0; h < shape.num_q_heads; ++h) {
      const int g = h / group;
      std::fill(best.begin(), best.end(), kNegInf);
      for (int t = 0; t < shape.num_tokens; ++t) {
        const int64_t lht = (int64_t{l} * shape.num_q_heads + h) * shape.num_tokens + t;
        const float* q = request.queries.data() + lht * dim;
        // s over candidates, then logsumexp(lse_active ∪ s).
        double max = request.lse_active.empty() ? kNegInf : request.lse_active[lht];
        for (int64_t slot = 0; slot < num_slots; ++slot) {
          if (!valid[slot]) continue;
          const float* k = &keys[((int64_t{l} * shape.num_kv_heads + g) * num_slots + slot) * dim];
          double dot = 0.0;
          for (int64_t d = 0; d < dim; ++d) dot += static_cast<double>(q[d]) * k[d];
          s[t * num_slots + slot] = dot * inv_sqrt_dim;
          max = std::max(max, s[t * num_slots + slot]);
        }
        double lse = kNegInf;
        if (!request.lse_fixed.empty()) {
          lse = request.lse_fixed[lht];
        } else if (max != kNegInf) {
          double sum = request.lse_active.empty() ? 0.0 : std::exp(request.lse_active[lht] - max);
          for (int64_t slot = 0; slot < num_slots; ++slot) {
            if (valid[slot]) sum += std::exp(s[t * num_slots + slot] - max);
          }
          lse = max + std::log(sum);
        }
        if (!request.lse_out.empty()) request.lse_out[lht] = lse;
        if (max == kNegInf) continue;  // no candidates at all
        for (int64_t slot = 0; slot < num_slots; ++slot) {
          if (valid[slot])
            best[slot] = std::max(best[slot], std::exp(s[t * num_slots + slot] - lse));
        }
      }
      for (int64_t slot = 0; slot < num_slots; ++slot) {
        if (valid[slot]) scores[slot] += best[slot] / shape.num_q_heads / shape.num_layers;
      }
    }
  }
  for (int64_t slot = 0; slot < num_slots; ++slot) {
    if (!valid[slot]) scores[slot] = kNegInf;
  }
  return absl::OkStatus();
}

}  // namespace kvtier::scorer
