// AccessTraceRecorder: records the segment accesses a live kvtierd serves and writes them
// as an access trace in the JSON format kvtier-replay reads (docs/REPLAY.md "Trace
// format"), so an operator can replay the daemon's workload under every placement policy
// with `kvtier-replay --trace FILE --scenario ... --policy ...`. storage/trace/README.md
// says how segments map to pages and what the limits are.
#ifndef KVTIER_STORAGE_TRACE_ACCESS_TRACE_RECORDER_H_
#define KVTIER_STORAGE_TRACE_ACCESS_TRACE_RECORDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace kvtier::storage {

// One access as the tier manager reports it. `key` identifies the page (a segment's
// unique id); the other fields become the page's row
// [index, layer, token_start, token_end, head_group, size_bytes] in the trace.
struct TracePage {
  uint64_t key = 0;
  int32_t layer = 0;
  int64_t token_start = 0;  // half-open span [token_start, token_end)
  int64_t token_end = 0;
  int32_t head_group = 0;
  int64_t size_bytes = 0;
};

// Accumulates accesses in memory and writes the whole trace on Flush. Thread-safe: any
// number of threads may call RecordAccess, Flush and the counters concurrently.
//
// Pages get indices 0, 1, 2, ... in order of first access (page id "page-<index>" in the
// replay). A page's layer and head_group are those of its first access; its token span
// is the smallest span covering every span recorded for it, and its size_bytes the
// largest size recorded for it (a segment that grows is replayed at its largest size).
// Sizes are clamped to [1, kMaxPageBytes], because the replay loader rejects
// non-positive sizes and sizes above 2^50.
//
// Memory: 4 bytes per recorded access plus about 64 bytes per distinct page; at most
// `max_accesses` accesses (hence pages) are ever held.
class AccessTraceRecorder {
 public:
  static constexpr int64_t kMaxPageBytes = int64_t{1} << 50;
  // Page indices and positions must fit the replay loader's 32-bit range.
  static constexpr int64_t kMaxAccessesLimit = (int64_t{1} << 31) - 1;

  // `path`: the file Flush writes. `workload`: the trace's "workload" string (UTF-8).
  // `quant`: the trace's "quant", which must be a scheme kvtier-replay knows (fp16, fp8,
  // int4, int2; it only selects the replay's decode penalty); any other value makes
  // Flush fail. `max_accesses`: accesses beyond this many are not recorded but counted in
  // dropped(); clamped to [0, kMaxAccessesLimit].
  AccessTraceRecorder(std::string path, std::string workload, std::string quant = "fp16",
                      int64_t max_accesses = 10'000'000);

  AccessTraceRecorder(const AccessTraceRecorder&) = delete;
  AccessTraceRecorder& operator=(const AccessTraceRecorder&) = delete;

  // Appends one access to the trace, or counts it in dropped() once max_accesses are
  // recorded (then nothing else changes, not even the page's size or span). Takes one
  // mutex and does one hash lookup; no I/O.
  void RecordAccess(const TracePage& page) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes every access recorded so far (since construction, not since the last Flush)
  // to path(): the trace goes to path() + ".tmp", is fsync'ed and renamed over path(), so
  // readers see either the previous complete trace or the new one. May be called any
  // number of times, e.g. periodically and at shutdown; concurrent calls are serialized.
  // RecordAccess is blocked only while the new accesses and the page table are copied,
  // never during I/O. Errors: INVALID_ARGUMENT naming "quant" for an unknown scheme;
  // the errno-derived code (NOT_FOUND, PERMISSION_DENIED, ...) with a message naming the
  // path when the file cannot be written. A failed Flush loses nothing; the next retries.
  absl::Status Flush() ABSL_LOCKS_EXCLUDED(flush_mu_, mu_);

  const std::string& path() const { return path_; }
  // Accesses recorded (at most max_accesses), distinct pages among them, and accesses
  // dropped because the cap was reached.
  int64_t accesses() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t pages() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t dropped() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct PageRow {
    int32_t layer = 0;
    int32_t head_group = 0;
    int64_t token_start = 0;
    int64_t token_end = 0;
    int64_t size_bytes = 0;
  };

  const std::string path_;
  const std::string workload_;
  const std::string quant_;
  const int64_t max_accesses_;

  // Held by Flush for its whole run; taken before mu_.
  absl::Mutex flush_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Accesses already taken out of pending_ by earlier Flush calls, in order.
  std::vector<uint32_t> flushed_ ABSL_GUARDED_BY(flush_mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, uint32_t> index_of_key_ ABSL_GUARDED_BY(mu_);
  std::vector<PageRow> pages_ ABSL_GUARDED_BY(mu_);  // by page index
  // Accesses (page indices) recorded since the last Flush took them; flushed_ followed by
  // pending_ is the whole trace.
  std::vector<uint32_t> pending_ ABSL_GUARDED_BY(mu_);
  int64_t accesses_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_TRACE_ACCESS_TRACE_RECORDER_H_
