// RepairLog: the last few repairs kvtierd served, with their per-stage timings, for the
// /statusz page. Histograms in Metrics hold the long-run distribution; this keeps the
// individual calls an operator looks at when a repair was slow.
#ifndef KVTIER_SERVER_REPAIR_LOG_H_
#define KVTIER_SERVER_REPAIR_LOG_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvtier::server {

// One finished Repair call. Stage times are in seconds, as RepairSummary reports them;
// stages that did not run (first_pass and rescore outside the fast mode) are 0.
struct RepairLogEntry {
  absl::Time time;         // when the call finished
  std::string session_id;  // as the client sent it (validated, but escape it for HTML)
  std::string tenant;      // the session's tenant; empty for the default tenant
  std::string mode;        // "exact", "fast", "oldest", "random" or "replay"
  int64_t budget = 0;      // K asked for
  int64_t chosen = 0;      // rows returned (fewer than K when fewer were candidates)
  int64_t candidates = 0;  // offloaded rows the selection ran over
  bool positions_only = false;
  double score_seconds = 0;
  double select_seconds = 0;
  double gather_seconds = 0;
  double send_seconds = 0;
  double total_seconds = 0;
};

// A bounded log of the most recent repairs. Thread-safe: Record is called from gRPC's
// handler threads, Recent from the HTTP server's.
class RepairLog {
 public:
  static constexpr size_t kDefaultCapacity = 32;

  // Keeps the last `capacity` repairs (at least 1).
  explicit RepairLog(size_t capacity = kDefaultCapacity);

  RepairLog(const RepairLog&) = delete;
  RepairLog& operator=(const RepairLog&) = delete;

  // Appends `entry`, dropping the oldest one when the log is full.
  void Record(RepairLogEntry entry) ABSL_LOCKS_EXCLUDED(mu_);

  // A copy of the kept repairs, newest first.
  std::vector<RepairLogEntry> Recent() const ABSL_LOCKS_EXCLUDED(mu_);

  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<RepairLogEntry> entries_ ABSL_GUARDED_BY(mu_);  // oldest first
};

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_REPAIR_LOG_H_
