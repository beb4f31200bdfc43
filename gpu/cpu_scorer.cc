// The CPU Scorer: shape checks, ISA dispatch, work split and the two passes of DESIGN.md §1.
//
// Work item = (scoring layer l, kv head g). Pass 1 computes s for the item's query heads x
// tokens against every candidate row and folds a log-sum-exp per (l, q head, token); pass 2
// takes max over tokens of (s - lse) per (q head, row) and adds exp(.) / (layers * q_heads)
// to the row. Items are assigned to threads statically (item i to thread i % threads) and
// per-thread partial scores are summed in thread order, so every row's sum is formed in the
// same order and identical rows tie exactly.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gpu/internal/cpu_kernels.h"
#include "gpu/internal/cpu_scorer_internal.h"
#include "gpu/internal/probes.h"
#include "gpu/internal/score_request_check.h"
#include "gpu/scorer.h"
#include "gpu/sketch.h"

namespace kvtier::scorer {
namespace internal {
namespace {

constexpr float kNegInfF = -std::numeric_limits<float>::infinity();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// A grow-only buffer that does not initialize its elements.
template <typename T>
class Scratch {
 public:
  T* Get(size_t n) {
    if (n > size_) {
      data_ = std::make_unique_for_overwrite<T[]>(n);
      size_ = n;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<T[]> data_;
  size_t size_ = 0;
};

// Fixed set of threads that run one job at a time; the caller of Run takes part as
// participant 0. Thread-compatible: Run must not be called concurrently (CpuScorer holds its
// mutex around it).
class WorkerPool {
 public:
  explicit WorkerPool(int participants) : participants_(std::max(1, participants)) {
    for (int i = 1; i < participants_; ++i) threads_.emplace_back([this, i] { WorkerLoop(i); });
  }

  ~WorkerPool() {
    {
      absl::MutexLock lock(&mu_);
      shutdown_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }

  int participants() const { return participants_; }

  // Runs fn(i) for every participant i and returns when all are done.
  void Run(absl::FunctionRef<void(int)> fn) {
    {
      absl::MutexLock lock(&mu_);
      job_ = &fn;
      pending_ = participants_ - 1;
      ++generation_;
    }
    fn(0);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* pending) { return *pending == 0; }, &pending_));
    job_ = nullptr;
  }

 private:
  void WorkerLoop(int index) {
    uint64_t seen = 0;
    while (true) {
      const absl::FunctionRef<void(int)>* job;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return shutdown_ || generation_ != seen;
        };
        mu_.Await(absl::Condition(&ready));
        if (shutdown_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(index);
      absl::MutexLock lock(&mu_);
      --pending_;
    }
  }

  const int participants_;
  absl::Mutex mu_;
  const absl::FunctionRef<void(int)>* job_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// should_stop of a request, polled by several threads (one call at a time); once it fired,
// every later poll returns true without calling it again. should_stop runs at most once per
// `interval` and never makes a thread wait for another: the first pass polls once per block
// (16,384 blocks at 4M rows), and a shared mutex locked at every poll had its two threads
// trading futex waits that cost several times the pass itself.
class StopFlag {
 public:
  StopFlag(const std::function<bool()>& should_stop, std::chrono::nanoseconds interval)
      : should_stop_(should_stop), interval_nanos_(interval.count()) {}
  bool Poll() {
    if (stopped_.load(std::memory_order_relaxed)) return true;
    if (!should_stop_) return false;
    const int64_t now = NowNanos();
    if (now < next_poll_.load(std::memory_order_relaxed)) return false;
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (!lock.owns_lock()) return stopped_.load(std::memory_order_relaxed);
    next_poll_.store(now + interval_nanos_, std::memory_order_relaxed);
    if (should_stop_()) stopped_.store(true, std::memory_order_relaxed);
    return stopped_.load(std::memory_order_relaxed);
  }
  bool stopped() const { return stopped_.load(); }

 private:
  static int64_t NowNanos() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  const std::function<bool()>& should_stop_;
  const int64_t interval_nanos_;
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> next_poll_{0};
  std::mutex mu_;  // held by the one thread calling should_stop_
};

// Buffers of one participant, reused across calls.
struct ThreadScratch {
  Scratch<float> keys;      // [head_dim][capacity] float32 copy of a block's (l, g) keys
  Scratch<float> s;         // pass-1 scores: [nq][slots] when cached, else [nq][capacity]
  Scratch<double> lse_max;  // [nq]
  Scratch<double> lse_sum;  // [nq]
  Scratch<double> lse;      // [nq]
  Scratch<float> rowmax;    // [group][capacity]
  Scratch<double> partial;  // [slots]
};

// Everything one Score call shares between its threads (read-only during the passes).
struct CallContext {
  const ScoreRequest* request;
  const KernelTable* kernels;
  int64_t cap;
  int64_t slots;
  int group;
  int nq;                   // group * tokens: query vectors of one item
  float scale;              // 1 / sqrt(head_dim)
  double inv_heads;         // 1 / (layers * q_heads)
  bool cache_s;             // pass-1 scores kept for pass 2
  const float* bias;        // [slots]: 0 for candidates, -inf otherwise
  const int* block_rows16;  // [blocks]: rows rounded up to 16, 0 when no candidate
};

class CpuScorer final : public Scorer {
 public:
  CpuScorer(int num_threads, const KernelTable& kernels, int64_t cache_budget_bytes)
      : kernels_(kernels),
        cache_budget_bytes_(cache_budget_bytes),
        pool_(num_threads),
        scratch_(pool_.participants()) {}

  std::string_view name() const override { return "cpu"; }

  absl::Status Score(const ScoreRequest& request, absl::Span<double> scores) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status FirstPass(const ScoreRequest& request, absl::Span<float> proxy) override
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Fills ctx.bias / block_rows16; returns whether any slot is a candidate.
  bool PrepareMasks(const ScoreRequest& request, CallContext& ctx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Pass 1 of item (l, g) into t.lse.
  void ComputeLse(const CallContext& ctx, const float* q, int l, int g, float* s,
                  ThreadScratch& t) const;

  // Both passes of item (l, g); accumulates into t.partial.
  void RunItem(const CallContext& ctx, int l, int g, ThreadScratch& t) const;

  // s tile of block b for the item's queries: cached or recomputed into t.s.
  void ComputeBlock(const CallContext& ctx, const float* q, int l, int g, size_t b, float* out,
                    int64_t out_stride, ThreadScratch& t) const;

  const KernelTable& kernels_;
  const int64_t cache_budget_bytes_;
  absl::Mutex mu_;  // serializes Score calls; guards the pool and all scratch
  WorkerPool pool_ ABSL_GUARDED_BY(mu_);
  std::vector<ThreadScratch> scratch_ ABSL_GUARDED_BY(mu_);
  Scratch<float> bias_ ABSL_GUARDED_BY(mu_);
  Scratch<int> block_rows16_ ABSL_GUARDED_BY(mu_);
  ProbeSet probes_ ABSL_GUARDED_BY(mu_);
};

bool CpuScorer::PrepareMasks(const ScoreRequest& request, CallContext& ctx) {
  float* bias = bias_.Get(static_cast<size_t>(ctx.slots));
  int* rows16 = block_rows16_.Get(request.blocks.size());
  bool any = false;
  for (size_t b = 0; b < request.blocks.size(); ++b) {
    const KeyBlock& block = request.blocks[b];
    float* out = bias + b * ctx.cap;
    bool block_any = false;
    for (int64_t r = 0; r < ctx.cap; ++r) {
      const bool candidate = r < block.rows && block.valid[r] != 0;
      out[r] = candidate ? 0.0f : kNegInfF;
      block_any |= candidate;
    }
    rows16[b] = block_any ? (block.rows + 15) / 16 * 16 : 0;
    any |= block_any;
  }
  ctx.bias = bias;
  ctx.block_rows16 = rows16;
  return any;
}

void CpuScorer::ComputeBlock(const CallContext& ctx, const float* q, int l, int g, size_t b,
                             float* out, int64_t out_stride, ThreadScratch& t) const {
  const ScoreRequest& request = *ctx.request;
  const ScoreShape& shape = request.shape;
  const int rows16 = ctx.block_rows16[b];
  const int64_t dim = shape.head_dim;
  const int64_t first = (int64_t{l} * shape.num_kv_heads + g) * dim * ctx.cap;
  const float* keys;
  if (shape.key_type == KeyType::kFloat32) {
    keys = static_cast<const float*>(request.blocks[b].keys) + first;
  } else {
    // Convert once per block; the fp32 copy is reused by every query tile.
    float* converted = t.keys.Get(static_cast<size_t>(dim * ctx.cap));
    const auto* src = static_cast<const uint8_t*>(request.blocks[b].keys) + first * 2;
    for (int64_t d = 0; d < dim; ++d) {
      ctx.kernels->convert(shape.key_type, src + d * ctx.cap * 2, rows16, converted + d * ctx.cap);
    }
    keys = converted;
  }
  ctx.kernels->dot_tile(q, ctx.nq, shape.head_dim, keys, ctx.cap, rows16, ctx.bias + b * ctx.cap,
                        ctx.scale, out, out_stride);
}

// Pass 1 of item (l, g): lse[i] = logsumexp of lse_active and s over every candidate, per
// (q head, token) i of the item; s is kept in `s` when ctx.cache_s.
void CpuScorer::ComputeLse(const CallContext& ctx, const float* q, int l, int g, float* s,
                           ThreadScratch& t) const {
  const ScoreRequest& request = *ctx.request;
  const ScoreShape& shape = request.shape;
  const int tokens = shape.num_tokens;
  const int64_t stride = ctx.cache_s ? ctx.slots : ctx.cap;
  double* lse_max = t.lse_max.Get(ctx.nq);
  double* lse_sum = t.lse_sum.Get(ctx.nq);
  double* lse = t.lse.Get(ctx.nq);
  std::fill(lse_max, lse_max + ctx.nq, kNegInf);
  std::fill(lse_sum, lse_sum + ctx.nq, 0.0);
  for (size_t b = 0; b < request.blocks.size(); ++b) {
    const int rows16 = ctx.block_rows16[b];
    if (rows16 == 0) continue;
    float* out = ctx.cache_s ? s + b * ctx.cap : s;
    ComputeBlock(ctx, q, l, g, b, out, stride, t);
    for (int i = 0; i < ctx.nq; ++i) {
      ctx.kernels->lse_fold(out + i * stride, rows16, &lse_max[i], &lse_sum[i]);
    }
  }
  for (int i = 0; i < ctx.nq; ++i) {
    double total = lse_max[i] == kNegInf ? kNegInf : lse_max[i] + std::log(lse_sum[i]);
    if (!request.lse_active.empty()) {
      const int h = g * ctx.group + i / tokens;
      const double active =
          request.lse_active[(int64_t{l} * shape.num_q_heads + h) * tokens + i % tokens];
      const double hi = std::max(total, active);
      if (hi != kNegInf) total = hi + std::log(std::exp(total - hi) + std::exp(active - hi));
    }
    lse[i] = total;
  }
}

void CpuScorer::RunItem(const CallContext& ctx, int l, int g, ThreadScratch& t) const {
  const ScoreRequest& request = *ctx.request;
  const ScoreShape& shape = request.shape;
  const int tokens = shape.num_tokens;
  const float* q =
      request.queries.data() +
      (int64_t{l} * shape.num_q_heads + int64_t{g} * ctx.group) * tokens * shape.head_dim;
  const size_t num_blocks = request.blocks.size();
  const int64_t stride = ctx.cache_s ? ctx.slots : ctx.cap;
  float* s = t.s.Get(static_cast<size_t>(ctx.nq) * stride);
  double* lse = t.lse.Get(ctx.nq);
  const int64_t lse_base = (int64_t{l} * shape.num_q_heads + int64_t{g} * ctx.group) * tokens;
  if (!request.lse_fixed.empty()) {
    // The caller's normalizer: no pass 1. Entries of the item's q heads are contiguous.
    for (int i = 0; i < ctx.nq; ++i) lse[i] = request.lse_fixed[lse_base + i];
  } else {
    ComputeLse(ctx, q, l, g, s, t);
  }
  if (!request.lse_out.empty()) {
    for (int i = 0; i < ctx.nq; ++i) request.lse_out[lse_base + i] = lse[i];
  }

  // Pass 2: max over tokens of (s - lse) per (q head, row), then exp in double so that very
  // negative values keep their order instead of underflowing to a tie.
  float* rowmax = t.rowmax.Get(static_cast<size_t>(ctx.group) * ctx.cap);
  for (size_t b = 0; b < num_blocks; ++b) {
    const int rows16 = ctx.block_rows16[b];
    if (rows16 == 0) continue;
    const float* tile = s + b * ctx.cap;
    if (!ctx.cache_s) {
      ComputeBlock(ctx, q, l, g, b, s, stride, t);
      tile = s;
    }
    for (int hh = 0; hh < ctx.group; ++hh) {
      float* rm = rowmax + hh * ctx.cap;
      std::fill(rm, rm + rows16, kNegInfF);
      for (int tok = 0; tok < tokens; ++tok) {
        const int i = hh * tokens + tok;
        ctx.kernels->max_shifted(tile + i * stride, rows16, static_cast<float>(lse[i]), rm);
      }
    }
    const float* bias = ctx.bias + b * ctx.cap;
    double* partial = t.partial.Get(0) + b * ctx.cap;
    const int rows = request.blocks[b].rows;
    for (int r = 0; r < rows; ++r) {
      if (bias[r] != 0.0f) continue;
      double acc = partial[r];
      for (int hh = 0; hh < ctx.group; ++hh)
        acc += std::exp(static_cast<double>(rowmax[hh * ctx.cap + r])) * ctx.inv_heads;
      partial[r] = acc;
    }
  }
}

absl::Status CpuScorer::Score(const ScoreRequest& request, absl::Span<double> scores) {
  if (absl::Status s = CheckScoreRequest(request, scores.size()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  const ScoreShape& shape = request.shape;
  CallContext ctx;
  ctx.request = &request;
  ctx.kernels = &kernels_;
  ctx.cap = request.block_capacity;
  ctx.slots = static_cast<int64_t>(request.blocks.size()) * ctx.cap;
  ctx.group = shape.num_q_heads / shape.num_kv_heads;
  ctx.nq = ctx.group * shape.num_tokens;
  ctx.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(shape.head_dim)));
  ctx.inv_heads = 1.0 / (static_cast<double>(shape.num_layers) * shape.num_q_heads);
  ctx.cache_s = request.lse_fixed.empty() &&
                static_cast<int64_t>(ctx.nq) * ctx.slots * static_cast<int64_t>(sizeof(float)) <=
                    cache_budget_bytes_;
  std::fill(scores.begin(), scores.end(), -std::numeric_limits<double>::infinity());
  if (!PrepareMasks(request, ctx)) {
    for (size_t i = 0; i < request.lse_out.size(); ++i) {
      request.lse_out[i] = !request.lse_fixed.empty()    ? request.lse_fixed[i]
                           : !request.lse_active.empty() ? request.lse_active[i]
                                                         : kNegInf;
    }
    return absl::OkStatus();
  }

  const int participants = pool_.participants();
  const int items = shape.num_layers * shape.num_kv_heads;
  StopFlag stop(request.should_stop, std::chrono::nanoseconds(0));  // once per work item
  pool_.Run([&](int p) {
    ThreadScratch& t = scratch_[p];
    double* partial = t.partial.Get(static_cast<size_t>(ctx.slots));
    std::fill(partial, partial + ctx.slots, 0.0);
    for (int item = p; item < items; item += participants) {
      if (stop.Poll()) return;
      RunItem(ctx, item / shape.num_kv_heads, item % shape.num_kv_heads, t);
    }
  });
  if (stop.stopped()) {  // a stop after the last item keeps the finished result
    std::fill(scores.begin(), scores.end(), -std::numeric_limits<double>::infinity());
    return absl::DeadlineExceededError("scoring stopped by should_stop");
  }
  for (int64_t slot = 0; slot < ctx.slots; ++slot) {
    if (ctx.bias[slot] != 0.0f) continue;
    double sum = 0.0;
    for (int p = 0; p < participants; ++p) sum += scratch_[p].partial.Get(0)[slot];
    scores[slot] = sum;
  }
  return absl::OkStatus();
}

absl::Status CpuScorer::FirstPass(const ScoreRequest& request, absl::Span<float> proxy) {
  if (absl::Status s = CheckScoreRequest(request, proxy.size()); !s.ok()) return s;
  for (size_t b = 0; b < request.blocks.size(); ++b) {
    const KeyBlock& block = request.blocks[b];
    if (block.rows > 0 && (block.sketch_codes == nullptr || block.sketch_scales == nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat("blocks[", b, "] has no sketch"));
    }
  }
  absl::MutexLock lock(&mu_);
  const ScoreShape& shape = request.shape;
  const int items = shape.num_layers * shape.num_kv_heads;
  const int participants = pool_.participants();
  const int64_t cap = request.block_capacity;
  const int groups = SketchGroups(shape.head_dim);
  const SketchMaxFn kernel = SketchKernelFor(kernels_.isa);
  StopFlag stop(request.should_stop, std::chrono::milliseconds(1));
  probes_.Reset(request);
  pool_.Run([&](int p) {
    for (int item = p; item < items; item += participants) probes_.Build(request, item);
  });
  pool_.Run([&](int p) {
    for (size_t b = static_cast<size_t>(p); b < request.blocks.size(); b += participants) {
      if (stop.Poll()) return;
      const KeyBlock& block = request.blocks[b];
      float* out = proxy.data() + b * cap;
      std::fill(out, out + cap, kNegInfF);
      if (block.rows == 0) continue;
      const int rows16 = (block.rows + 15) / 16 * 16;
      for (int item = 0; item < items; ++item) {
        kernel(block.sketch_codes + static_cast<int64_t>(item) * groups * cap * 4, groups, rows16,
               probes_.For(item), block.sketch_scales + item * cap, out);
      }
      for (int64_t r = 0; r < cap; ++r) {
        if (r >= block.rows || block.valid[r] == 0) out[r] = kNegInfF;
      }
    }
  });
  if (stop.stopped()) return absl::DeadlineExceededError("first pass stopped by should_stop");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Scorer>> MakeCpuScorerWithOptions(const CpuScorerOptions& options) {
  if (!IsaSupported(options.isa)) {
    return absl::FailedPreconditionError(
        absl::StrCat("this CPU does not support the ", IsaName(options.isa), " kernels"));
  }
  int threads = options.num_threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::make_unique<CpuScorer>(threads, KernelsFor(options.isa), options.cache_budget_bytes);
}

}  // namespace internal

std::unique_ptr<Scorer> MakeCpuScorer(int num_threads) {
  internal::CpuScorerOptions options;
  options.num_threads = num_threads;
  return *internal::MakeCpuScorerWithOptions(options);
}

}  // namespace kvtier::scorer
