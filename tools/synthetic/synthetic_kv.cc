#include "tools/synthetic/synthetic_kv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

namespace kvtier::synthetic {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Small fast generator seeded per (layer, position): the per-element cost matters when a
// demo fills ~1 G elements.
class RowRng {
 public:
  explicit RowRng(uint64_t seed) : state_(SplitMix64(seed) | 1) {}
  uint64_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  // Approximately N(0, 1): sum of four uniforms in [-1, 1) (variance 4/3), rescaled.
  float Normal() {
    const uint64_t r = Next();
    float sum = 0;
    for (int i = 0; i < 4; ++i) {
      sum += static_cast<float>((r >> (16 * i)) & 0xffff) * (2.0f / 65536.0f) - 1.0f;
    }
    return sum * 0.8660254f;  // sqrt(3/4)
  }

 private:
  uint64_t state_;
};

uint64_t RowSeed(uint64_t seed, uint64_t salt, int32_t layer, int64_t position) {
  return SplitMix64(seed ^ SplitMix64(salt ^ (static_cast<uint64_t>(layer) << 48) ^
                                      static_cast<uint64_t>(position)));
}

}  // namespace

uint16_t FloatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, sizeof(x));
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mantissa = x & 0x7fffffu;
  const int32_t exponent = static_cast<int32_t>((x >> 23) & 0xffu);
  if (exponent == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mantissa ? 0x200u : 0u));
  const int32_t e = exponent - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) {  // subnormal half (or zero)
    if (e < -10) return static_cast<uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - e;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // carry into exponent is right
  return static_cast<uint16_t>(half);
}

SyntheticKv::SyntheticKv(const SyntheticOptions& options) : options_(options) {
  std::mt19937_64 gen(options.seed);
  const size_t rows = static_cast<size_t>(std::max<int64_t>(0, options.num_rows));
  const int32_t num_needles = std::min<int32_t>(options.num_needles, options.head_dim);

  // Needles sit at evenly spread row indices (with jitter), away from each other.
  needle_of_row_.assign(rows, -1);
  if (num_needles > 0 && rows > 0) {
    const size_t stride = rows / static_cast<size_t>(num_needles);
    for (int32_t n = 0; n < num_needles; ++n) {
      const size_t len =
          std::min<size_t>(rows, static_cast<size_t>(std::uniform_int_distribution<int32_t>(
                                     options.needle_min_rows, options.needle_max_rows)(gen)));
      if (stride <= len) break;  // too few rows for this many needles
      const size_t slack = stride - len;
      const size_t first = static_cast<size_t>(n) * stride + slack / 4 +
                           std::uniform_int_distribution<size_t>(0, slack / 2)(gen);
      Needle needle;
      needle.first_row = first;
      needle.num_rows = len;
      for (size_t r = first; r < first + len; ++r) needle_of_row_[r] = n;
      needles_.push_back(std::move(needle));
    }
  }

  // Positions: ascending with gaps, none inside a needle span.
  positions_.resize(rows);
  std::bernoulli_distribution gap(options.gap_probability);
  std::uniform_int_distribution<int32_t> gap_len(1, std::max(1, options.max_gap));
  int64_t position = 0;
  for (size_t r = 0; r < rows; ++r) {
    const bool inside =
        r > 0 && needle_of_row_[r] >= 0 && needle_of_row_[r - 1] == needle_of_row_[r];
    if (!inside && gap(gen)) position += gap_len(gen);
    positions_[r] = position++;
  }
  for (Needle& needle : needles_) {
    needle.positions.assign(
        positions_.begin() + static_cast<ptrdiff_t>(needle.first_row),
        positions_.begin() + static_cast<ptrdiff_t>(needle.first_row + needle.num_rows));
  }
  row_of_.reserve(rows);
  for (size_t r = 0; r < rows; ++r) row_of_.emplace(positions_[r], static_cast<int64_t>(r));

  // Orthonormal needle directions (Gram-Schmidt on Gaussian vectors).
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t dim = static_cast<size_t>(options.head_dim);
  for (size_t n = 0; n < needles_.size(); ++n) {
    std::vector<float> v(dim);
    for (float& x : v) x = normal(gen);
    for (const std::vector<float>& u : directions_) {
      float dot = 0;
      for (size_t d = 0; d < dim; ++d) dot += v[d] * u[d];
      for (size_t d = 0; d < dim; ++d) v[d] -= dot * u[d];
    }
    float norm = 0;
    for (float x : v) norm += x * x;
    norm = std::sqrt(norm);
    for (float& x : v) x /= norm;
    directions_.push_back(std::move(v));
  }
}

int64_t SyntheticKv::RowOf(int64_t position) const {
  auto it = row_of_.find(position);
  return it == row_of_.end() ? -1 : it->second;
}

void SyntheticKv::FillRowKeys(int32_t layer, size_t row, uint16_t* out) const {
  RowRng rng(RowSeed(options_.seed, 0x6b657973, layer, positions_[row]));
  const size_t n = LayerRowElements();
  const int32_t needle = needle_of_row_[row];
  if (needle < 0) {
    for (size_t i = 0; i < n; ++i) out[i] = FloatToHalf(rng.Normal());
    return;
  }
  const std::vector<float>& dir = directions_[static_cast<size_t>(needle)];
  const size_t dim = static_cast<size_t>(options_.head_dim);
  const float scale = options_.needle_key_scale * std::sqrt(static_cast<float>(dim));
  for (size_t i = 0; i < n; ++i) {
    out[i] = FloatToHalf(0.5f * rng.Normal() + scale * dir[i % dim]);
  }
}

void SyntheticKv::FillKeys(int32_t layer_begin, int32_t layer_end, absl::Span<const size_t> rows,
                           absl::Span<uint16_t> out) const {
  const size_t n = LayerRowElements();
  size_t offset = 0;
  for (int32_t l = layer_begin; l < layer_end; ++l) {
    for (size_t row : rows) {
      FillRowKeys(l, row, out.data() + offset);
      offset += n;
    }
  }
}

void SyntheticKv::FillValues(int32_t layer_begin, int32_t layer_end, absl::Span<const size_t> rows,
                             absl::Span<uint16_t> out) const {
  const size_t n = LayerRowElements();
  size_t offset = 0;
  for (int32_t l = layer_begin; l < layer_end; ++l) {
    for (size_t row : rows) {
      RowRng rng(RowSeed(options_.seed, 0x76616c73, l, positions_[row]));
      for (size_t i = 0; i < n; i += 4) {
        const uint64_t r = rng.Next();
        for (size_t j = 0; j < 4 && i + j < n; ++j) {
          // Uniform in [-1, 1): enough to tell any two rows and layers apart.
          const float v = static_cast<float>((r >> (16 * j)) & 0xffff) * (2.0f / 65536.0f) - 1.0f;
          out[offset + i + j] = FloatToHalf(v);
        }
      }
      offset += n;
    }
  }
}

std::vector<float> SyntheticKv::Queries(int32_t needle, int32_t num_tokens, float query_scale,
                                        float noise, uint64_t seed) const {
  const size_t dim = static_cast<size_t>(options_.head_dim);
  const size_t count = static_cast<size_t>(options_.num_layers) *
                       static_cast<size_t>(options_.num_q_heads) * static_cast<size_t>(num_tokens) *
                       dim;
  std::vector<float> q(count);
  std::mt19937_64 gen(SplitMix64(seed ^ options_.seed));
  std::normal_distribution<float> normal(0.0f, noise);
  const std::vector<float>* dir = needle >= 0 && static_cast<size_t>(needle) < directions_.size()
                                      ? &directions_[static_cast<size_t>(needle)]
                                      : nullptr;
  const float scale = query_scale * std::sqrt(static_cast<float>(dim));
  for (size_t i = 0; i < count; ++i) {
    q[i] = (dir != nullptr ? scale * (*dir)[i % dim] : 0.0f) + (noise > 0 ? normal(gen) : 0.0f);
  }
  return q;
}

SyntheticOptions SevenBClassOptions(int64_t rows, uint64_t seed) {
  SyntheticOptions options;
  options.num_layers = 28;
  options.num_q_heads = 28;
  options.num_kv_heads = 4;
  options.head_dim = 128;
  options.num_rows = rows;
  options.num_needles = 4;
  options.needle_min_rows = 8;
  options.needle_max_rows = 16;
  options.seed = seed;
  return options;
}

}  // namespace kvtier::synthetic
