// FastScoring (gpu/fast_select.h).
#include "gpu/fast_select.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"

namespace kvtier::scorer {
namespace {

constexpr float kNegInfF = -std::numeric_limits<float>::infinity();
constexpr size_t kKeepScratchBytes = size_t{32} << 20;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double LogAddExp(double a, double b) {
  const double hi = std::max(a, b);
  if (hi == -std::numeric_limits<double>::infinity()) return hi;
  return hi + std::log(std::exp(a - hi) + std::exp(b - hi));
}

// Copies the keys of `slots` (in order) out of the request's blocks into one block of
// capacity `cap`: [layer][kv][d][cap] of `elem` bytes.
// Copies the keys of `slots` out of the score index into one block of capacity `cap`, in the
// index's layout ([layer][kv][d][row]). Typed element copies: a memcpy call per 2-byte
// element cost more than the scoring of the gathered rows.
template <typename T>
void GatherTyped(const ScoreRequest& request, absl::Span<const int64_t> slots, int64_t cap,
                 int64_t lines, T* dst) {
  const int64_t src_cap = request.block_capacity;
  for (size_t j = 0; j < slots.size(); ++j) {
    const KeyBlock& block = request.blocks[static_cast<size_t>(slots[j] / src_cap)];
    const T* src = static_cast<const T*>(block.keys) + slots[j] % src_cap;
    T* out = dst + j;
    for (int64_t line = 0; line < lines; ++line) out[line * cap] = src[line * src_cap];
  }
}

void GatherKeys(const ScoreRequest& request, absl::Span<const int64_t> slots, int64_t cap,
                std::vector<uint8_t>* out) {
  const ScoreShape& shape = request.shape;
  const size_t elem = static_cast<size_t>(KeyTypeSize(shape.key_type));
  const int64_t lines = int64_t{shape.num_layers} * shape.num_kv_heads * shape.head_dim;
  out->resize(static_cast<size_t>(lines * cap) * elem);
  auto gather = [&](absl::Span<const int64_t> part, size_t first) {
    if (elem == 2) {
      GatherTyped(request, part, cap, lines, reinterpret_cast<uint16_t*>(out->data()) + first);
    } else {
      GatherTyped(request, part, cap, lines, reinterpret_cast<uint32_t*>(out->data()) + first);
    }
  };
  // The copy waits on memory (every element is in a different cache line): two threads
  // keep twice as many loads in flight.
  if (slots.size() < 128) {
    gather(slots, 0);
    return;
  }
  const size_t half = slots.size() / 2;
  std::thread other([&] { gather(slots.subspan(half), half); });
  gather(slots.subspan(0, half), 0);
  other.join();
}

}  // namespace

absl::Status FastScoring::Start() {
  const ScoreRequest& request = *request_;
  const int64_t cap = request.block_capacity;
  const size_t num_slots = request.blocks.size() * static_cast<size_t>(cap);
  auto start = std::chrono::steady_clock::now();
  proxy_.assign(num_slots, kNegInfF);
  if (absl::Status s = scorer_->FirstPass(request, absl::MakeSpan(proxy_)); !s.ok()) return s;
  rescored_.assign(num_slots, 0);
  candidates_ = 0;
  for (const KeyBlock& block : request.blocks) {
    for (int32_t r = 0; r < block.rows; ++r) candidates_ += block.valid[r] != 0;
  }
  first_pass_seconds_ = SecondsSince(start);

  start = std::chrono::steady_clock::now();
  const size_t lse_size = static_cast<size_t>(request.shape.num_layers) *
                          request.shape.num_q_heads * request.shape.num_tokens;
  lse_.assign(lse_size, 0.0);
  slots_.clear();
  scores_.clear();
  if (candidates_ <= options_.first_round + options_.sample_rows) {
    // Small enough to score everything: the exact mode's result.
    slots_ = NextByProxy(candidates_);
    std::sort(slots_.begin(), slots_.end());
    for (int64_t slot : slots_) rescored_[static_cast<size_t>(slot)] = 1;
    absl::Status s = ScoreSlots(slots_, request.lse_active, {}, absl::MakeSpan(lse_), &scores_);
    rescore_seconds_ = SecondsSince(start);
    return s;
  }

  std::vector<int64_t> top = NextByProxy(options_.first_round);
  std::sort(top.begin(), top.end());
  for (int64_t slot : top) rescored_[static_cast<size_t>(slot)] = 1;
  // A strided sample of the rows left, for the mass the first round does not see.
  const int64_t rest = candidates_ - static_cast<int64_t>(top.size());
  const int64_t step = std::max<int64_t>(1, rest / options_.sample_rows);
  std::vector<int64_t> sample;
  sample.reserve(static_cast<size_t>(options_.sample_rows));
  int64_t seen = 0;
  for (size_t slot = 0;
       slot < num_slots && static_cast<int32_t>(sample.size()) < options_.sample_rows; ++slot) {
    if (proxy_[slot] == kNegInfF || rescored_[slot]) continue;
    if (seen++ % step == 0) sample.push_back(static_cast<int64_t>(slot));
  }
  std::vector<double> sample_lse(lse_size);
  std::vector<double> ignored;
  if (absl::Status s = ScoreSlots(sample, {}, {}, absl::MakeSpan(sample_lse), &ignored); !s.ok()) {
    return s;
  }
  // Normalizer of the first round: its own rows exactly, the rest as the sample's mass
  // scaled by rest / |sample|, and the engine's active cache.
  std::vector<float> extra(lse_size);
  const double weight = std::log(static_cast<double>(rest) / static_cast<double>(sample.size()));
  for (size_t i = 0; i < lse_size; ++i) {
    double v = sample_lse[i] + weight;
    if (!request.lse_active.empty()) v = LogAddExp(v, request.lse_active[i]);
    extra[i] = static_cast<float>(v);
  }
  slots_ = std::move(top);
  absl::Status s = ScoreSlots(slots_, extra, {}, absl::MakeSpan(lse_), &scores_);
  rescore_seconds_ = SecondsSince(start);
  return s;
}

absl::Status FastScoring::Extend(int64_t total) {
  const int64_t want = std::min(total, candidates_) - static_cast<int64_t>(slots_.size());
  if (want <= 0) return absl::OkStatus();
  auto start = std::chrono::steady_clock::now();
  std::vector<int64_t> next = NextByProxy(want);
  std::sort(next.begin(), next.end());
  for (int64_t slot : next) rescored_[static_cast<size_t>(slot)] = 1;
  std::vector<double> scores;
  absl::Status s = ScoreSlots(next, {}, lse_, {}, &scores);
  if (s.ok()) {
    slots_.insert(slots_.end(), next.begin(), next.end());
    scores_.insert(scores_.end(), scores.begin(), scores.end());
  }
  rescore_seconds_ += SecondsSince(start);
  return s;
}

std::vector<int64_t> FastScoring::NextByProxy(int64_t count) const {
  const size_t n = proxy_.size();
  // NaN never passes (a proxy is finite for finite keys; NaN would be a bug upstream).
  auto eligible = [&](size_t slot) { return proxy_[slot] > kNegInfF && !rescored_[slot]; };
  const int64_t remaining = candidates_ - static_cast<int64_t>(slots_.size());
  // A threshold from a strided sample that about 2 * count rows pass, so that the full
  // scan keeps few rows; -infinity (every row) when that is not enough.
  float threshold = kNegInfF;
  if (count < remaining / 4) {
    std::vector<float> sample;
    const size_t step = std::max<size_t>(1, n / 16384);
    for (size_t slot = 0; slot < n; slot += step) {
      if (eligible(slot)) sample.push_back(proxy_[slot]);
    }
    const double fraction = static_cast<double>(count) / static_cast<double>(remaining);
    const size_t k = static_cast<size_t>(2.0 * fraction * static_cast<double>(sample.size())) + 16;
    if (k < sample.size()) {
      std::nth_element(sample.begin(), sample.begin() + static_cast<ptrdiff_t>(k), sample.end(),
                       std::greater<float>());
      threshold = sample[k];
    }
  }
  std::vector<std::pair<float, int64_t>> kept;
  while (true) {
    kept.clear();
    for (size_t slot = 0; slot < n; ++slot) {
      if (eligible(slot) && proxy_[slot] >= threshold) {
        kept.emplace_back(proxy_[slot], static_cast<int64_t>(slot));
      }
    }
    if (static_cast<int64_t>(kept.size()) >= count || threshold == kNegInfF) break;
    threshold = kNegInfF;
  }
  const size_t take = std::min(kept.size(), static_cast<size_t>(count));
  std::partial_sort(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(take), kept.end(),
                    [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first > b.first : a.second < b.second;
                    });
  std::vector<int64_t> out(take);
  for (size_t i = 0; i < take; ++i) out[i] = kept[i].second;
  return out;
}

absl::Status FastScoring::ScoreSlots(absl::Span<const int64_t> slots,
                                     absl::Span<const float> lse_active,
                                     absl::Span<const double> lse_fixed, absl::Span<double> lse_out,
                                     std::vector<double>* scores) {
  scores->clear();
  if (slots.empty()) {
    // No rows: the normalizer is what the caller brings.
    for (size_t i = 0; i < lse_out.size(); ++i) {
      lse_out[i] = !lse_fixed.empty()    ? lse_fixed[i]
                   : !lse_active.empty() ? lse_active[i]
                                         : -std::numeric_limits<double>::infinity();
    }
    return absl::OkStatus();
  }
  const int64_t cap = (static_cast<int64_t>(slots.size()) + 15) / 16 * 16;
  // Per-thread buffers reused across repairs (fresh pages would cost a fault each), given
  // back when a large repair made them big.
  thread_local std::vector<uint8_t> keys;
  thread_local std::vector<uint8_t> valid;
  thread_local std::vector<double> out;
  struct Trim {
    ~Trim() {
      if (keys.capacity() > kKeepScratchBytes) std::vector<uint8_t>().swap(keys);
    }
  } trim;
  GatherKeys(*request_, slots, cap, &keys);
  valid.assign(static_cast<size_t>(cap), 1);
  const KeyBlock block{keys.data(), static_cast<int32_t>(slots.size()), valid.data()};
  ScoreRequest sub;
  sub.shape = request_->shape;
  sub.block_capacity = static_cast<int32_t>(cap);
  sub.blocks = absl::MakeConstSpan(&block, 1);
  sub.queries = request_->queries;
  sub.lse_active = lse_active;
  sub.lse_fixed = lse_fixed;
  sub.lse_out = lse_out;
  sub.should_stop = request_->should_stop;
  out.resize(static_cast<size_t>(cap));
  if (absl::Status s = scorer_->Score(sub, absl::MakeSpan(out)); !s.ok()) return s;
  scores->assign(out.begin(), out.begin() + static_cast<ptrdiff_t>(slots.size()));
  return absl::OkStatus();
}

}  // namespace kvtier::scorer
