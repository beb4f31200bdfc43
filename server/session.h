// A session: one engine sequence with its geometry, its rows and its repair history.
#ifndef KVTIER_SERVER_SESSION_H_
#define KVTIER_SERVER_SESSION_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kvtier/v1/kvtier.pb.h"
#include "storage/geometry.h"
#include "storage/row_store.h"
#include "storage/tier_manager.h"

namespace kvtier::server {

// What a Repair chose, kept so that a repeated request_id returns the same selection.
struct RepairRecord {
  std::vector<int64_t> chosen;
  std::vector<double> scores;  // empty for the control selectors
  int64_t candidates = 0;
};

// Thread-safe. `mu` serializes everything that reads or changes the rows: Offload, Repair,
// Promote and Release of one session run one at a time; different sessions run in
// parallel. Counters for GetSession/ListSessions are published as atomics so that reading
// them never waits for a long repair. As a TierClient it lets the tier manager's demoter
// move its segments: the demoter only tries the lock, so it never waits behind an RPC,
// and writes to disk with the lock released.
class Session final : public storage::TierClient {
 public:
  Session(std::string id, std::string tenant, storage::Geometry geometry, absl::Duration ttl,
          std::unique_ptr<storage::RowStore> store, absl::Time now);

  ~Session() override = default;

  const std::string& id() const { return id_; }
  const std::string& tenant() const { return tenant_; }
  const storage::Geometry& geometry() const { return geometry_; }
  // Bytes of one full segment of this session (head and payload).
  uint64_t segment_bytes() const { return segment_bytes_; }
  absl::Duration ttl() const { return ttl_; }

  // Records an access; the session expires `ttl` after the last one.
  void Touch(absl::Time now);
  bool ExpiredAt(absl::Time now) const;

  mutable absl::Mutex mu;

  storage::RowStore& store() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return *store_; }

  // The repair remembered under `request_id`, or nullptr.
  const RepairRecord* FindRepair(const std::string& request_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Remembers the last kRepairHistory repairs with a non-empty request id.
  void RememberRepair(const std::string& request_id, RepairRecord record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Copies the store's counters into the atomics read by FillInfo. Call after every change.
  void PublishCounts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Fills `info` from the published counters; takes no lock.
  void FillInfo(v1::SessionInfo* info) const;

  int64_t rows_stored() const { return rows_stored_.load(std::memory_order_relaxed); }

  // storage::TierClient.
  uint64_t DemoteSegment(uint32_t segment) override ABSL_LOCKS_EXCLUDED(mu);
  void PrefetchSegment(uint32_t segment) override ABSL_LOCKS_EXCLUDED(mu);

  static constexpr size_t kRepairHistory = 16;

 private:
  const std::string id_;
  const std::string tenant_;
  const storage::Geometry geometry_;
  const absl::Duration ttl_;
  const uint64_t segment_bytes_;
  const absl::Time created_;
  std::atomic<int64_t> last_access_unix_ns_;

  std::unique_ptr<storage::RowStore> store_ ABSL_GUARDED_BY(mu);
  std::deque<std::pair<std::string, RepairRecord>> repairs_ ABSL_GUARDED_BY(mu);

  std::atomic<int64_t> rows_stored_{0};
  std::atomic<int64_t> rows_complete_{0};
  std::atomic<int64_t> rows_candidate_{0};
  std::atomic<int64_t> rows_promoted_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int64_t> segments_{0};
  std::atomic<int64_t> segments_on_disk_{0};
};

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_SESSION_H_
