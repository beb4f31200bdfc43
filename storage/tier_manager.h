// TierManager: the tiers of one kvtierd and what moves between them (DESIGN.md §3,
// docs/STORAGE.md). It owns the byte budgets of the host-RAM and NVMe tiers (HBM stays
// zero until the GPU path), the RocksDB database, the placement policy and per-tenant
// quotas, and runs the demoter: a background thread that, when host RAM passes its high
// watermark, asks the policy for cold segments and demotes their payload to RocksDB until
// host RAM is back under the low watermark. Stores report what happens to their segments
// (created, accessed, loaded, demoted, freed); the manager never touches a segment itself,
// it asks the segment's owner (a TierClient) to move it, so every move happens under the
// owner's lock.
#ifndef KVTIER_STORAGE_TIER_MANAGER_H_
#define KVTIER_STORAGE_TIER_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/kv_db.h"
#include "storage/policy/placement_policy.h"
#include "storage/quant/codec.h"
#include "storage/tier.h"
#include "storage/trace/access_trace_recorder.h"

namespace kvtier::storage {

struct TierManagerOptions {
  uint64_t host_capacity_bytes = 8ull << 30;
  uint64_t disk_capacity_bytes = 64ull << 30;
  // The demoter starts when host RAM use passes high_watermark * capacity and stops below
  // low_watermark * capacity. 0 < low <= high <= 1.
  double high_watermark = 0.90;
  double low_watermark = 0.80;
  std::string policy = "lru";
  policy::PolicyParams policy_params;
  // Encoding of demoted payloads. Segments holding one of the session's `guard_rows` most
  // recent positions are always stored raw.
  quant::Format cold_format = quant::Format::kRaw;
  int64_t guard_rows = 256;
  // Bytes a tenant may hold over all tiers (host bytes plus the full-precision size of
  // demoted payloads); 0 = unlimited. Per-tenant overrides in tenant_quota_bytes.
  uint64_t default_tenant_quota_bytes = 0;
  absl::flat_hash_map<std::string, uint64_t> tenant_quota_bytes;
  // How often the demoter checks the watermarks when nobody wakes it.
  absl::Duration demote_interval = absl::Milliseconds(50);
  // Most prefetch hints queued at once (predictive policy); more are dropped.
  size_t max_prefetch_queue = 64;
};

// INVALID_ARGUMENT naming the field when options are inconsistent (watermarks, policy).
absl::Status ValidateTierManagerOptions(const TierManagerOptions& options);

// The owner of a store, called by the demoter to move one of its segments. Implementations
// lock their store; they must not call back into the manager while holding its lock
// (they don't: the manager calls them with no lock held).
class TierClient {
 public:
  virtual ~TierClient() = default;
  // Demotes the payload of `segment` if possible now; returns the host bytes freed (0 when
  // the owner is busy, the segment changed or was freed, or the disk tier is full).
  virtual uint64_t DemoteSegment(uint32_t segment) = 0;
  // Loads the payload of `segment` into host RAM if it is demoted and fits.
  virtual void PrefetchSegment(uint32_t segment) = 0;
};

// Counters of movements and decisions, read by the server's metrics. Thread-safe.
struct TierStats {
  std::atomic<uint64_t> demotions{0};  // host -> nvme
  std::atomic<uint64_t> demoted_bytes{0};
  std::atomic<uint64_t> promotions{0};  // nvme -> host, kept resident
  std::atomic<uint64_t> promoted_bytes{0};
  std::atomic<uint64_t> read_through{0};  // nvme reads served without staying resident
  std::atomic<uint64_t> read_through_bytes{0};
  std::atomic<uint64_t> prefetches{0};     // loads done ahead of access (policy or pause)
  std::atomic<uint64_t> policy_hits{0};    // accesses to a resident payload
  std::atomic<uint64_t> policy_misses{0};  // accesses to a demoted payload
  std::atomic<uint64_t> quota_rejections{0};
  std::atomic<uint64_t> capacity_rejections{0};  // RESOURCE_EXHAUSTED: no tier had room
  std::atomic<uint64_t> data_loss{0};            // records that failed their check
  std::atomic<uint64_t> demote_failures{0};      // disk writes that failed
};

// Thread-safe.
class TierManager {
 public:
  // `db` may be null: host RAM only, nothing demoted (unit tests, --durability none
  // without a data dir). INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<TierManager>> Create(TierManagerOptions options,
                                                             std::unique_ptr<KvDb> db);
  ~TierManager();  // stops the demoter

  // Starts the demoter thread. Call once, after recovery.
  void Start();
  // Stops the demoter (idempotent); the destructor calls it.
  void Stop();

  const TierManagerOptions& options() const { return options_; }
  TierBudget& host() { return host_; }
  TierBudget& disk() { return disk_; }
  TierBudget& hbm() { return hbm_; }
  KvDb* db() { return db_.get(); }
  TierStats& stats() { return stats_; }

  // Records live segment accesses into `recorder` (not owned; null stops recording).
  void set_recorder(AccessTraceRecorder* recorder) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Owners ----
  // A fresh owner id; the store uses it in its segments' page keys.
  uint32_t RegisterOwner() ABSL_LOCKS_EXCLUDED(mu_);
  // Whom to ask to move the owner's segments. Until bound, its segments are not demoted.
  void BindOwner(uint32_t owner, std::weak_ptr<TierClient> client) ABSL_LOCKS_EXCLUDED(mu_);
  void UnregisterOwner(uint32_t owner) ABSL_LOCKS_EXCLUDED(mu_);
  static uint64_t PageKey(uint32_t owner, uint32_t segment) {
    return (uint64_t{owner} << 32) | segment;
  }

  // ---- Quotas ----
  // Charges `bytes` to `tenant`, or RESOURCE_EXHAUSTED naming the tenant and its quota.
  absl::Status ChargeTenant(const std::string& tenant, uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // Charges bytes that already exist (recovery), even past the quota.
  void ForceChargeTenant(const std::string& tenant, uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void RefundTenant(const std::string& tenant, uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t TenantBytes(const std::string& tenant) const ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Segment events, reported by stores (with their owner's lock held) ----
  // A segment with its payload resident was created (or recovered).
  void OnCreated(uint64_t page_key, uint64_t size_bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // A segment was recovered with its payload on disk only.
  void OnCreatedDemoted(uint64_t page_key, uint64_t size_bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // The payload was read or written; `resident` says where it was found.
  // [token_begin, token_end): the segment's positions, for the trace recorder.
  void OnAccess(uint64_t page_key, uint64_t size_bytes, bool resident, int64_t token_begin,
                int64_t token_end) ABSL_LOCKS_EXCLUDED(mu_);
  // The payload was loaded from disk and stays resident; `prefetch` when ahead of access.
  void OnLoaded(uint64_t page_key, uint64_t size_bytes, bool prefetch) ABSL_LOCKS_EXCLUDED(mu_);
  // The payload was demoted (its host bytes are free).
  void OnDemoted(uint64_t page_key, uint64_t size_bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // The segment is gone from every tier.
  void OnFreed(uint64_t page_key) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Room ----
  // Wakes the demoter and waits until `bytes` more fit in host RAM, the deadline passes
  // or the demoter can free nothing more. Returns whether they fit. Call with no lock held.
  bool MakeRoom(uint64_t bytes, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `bytes` more stay under the high watermark (staging for a pause).
  bool FitsUnderHighWatermark(uint64_t bytes) const;
  // Runs the demoter's work once on the calling thread: demotes until host RAM is under
  // the low watermark (or `bytes` more fit). Returns the bytes freed. For tests and MakeRoom.
  // Rounds may run concurrently (the demoter thread, Offloads making room, BeginPause): a
  // round whose victim's session is busy finishing an RPC waits for that one session only,
  // and the others skip segments already moving, so no caller queues behind another's
  // wait. Concurrent rounds may overshoot the low watermark by a segment each.
  uint64_t DemoteOnce(uint64_t bytes_needed) ABSL_LOCKS_EXCLUDED(mu_);
  // BeginPause: demotes other owners' segments (chosen by the policy) until `bytes` more
  // (at most the high watermark's worth) fit under the high watermark, so that owner
  // `keep_owner`'s demoted payloads can come back, or the deadline passes, or nothing
  // more can move. Returns whether they fit.
  bool MakeRoomForStaging(uint64_t bytes, uint32_t keep_owner, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Page {
    uint64_t size_bytes = 0;
    bool resident = false;
    uint64_t resident_seq = 0;  // insertion order into host RAM
  };

  TierManager(TierManagerOptions options, std::unique_ptr<KvDb> db,
              std::unique_ptr<policy::PlacementPolicy> policy);

  void DemoterLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Chooses the next page to demote, skipping `skip` and the pages of `keep_owner`;
  // false when none is left.
  bool PickVictim(const absl::flat_hash_set<uint64_t>& skip, std::optional<uint32_t> keep_owner,
                  uint64_t* key, std::weak_ptr<TierClient>* client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `round` until `fits()`, the deadline passes, or a round frees nothing while no
  // other round's demotion is in flight (it waits for those first). Returns fits().
  bool DemoteUntil(absl::FunctionRef<bool()> fits, absl::FunctionRef<uint64_t()> round,
                   absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Demotes victims while `more()` holds and a victim is left; returns the bytes freed.
  uint64_t DemoteWhile(absl::FunctionRef<bool()> more, std::optional<uint32_t> keep_owner)
      ABSL_LOCKS_EXCLUDED(mu_);
  void MarkResident(uint64_t key, Page& page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  policy::PolicyContext NextStep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return policy::PolicyContext{step_++};
  }
  uint64_t QuotaOf(const std::string& tenant) const;
  uint64_t HighBytes() const;
  uint64_t LowBytes() const;

  const TierManagerOptions options_;
  TierBudget host_;
  TierBudget disk_;
  TierBudget hbm_;
  std::unique_ptr<KvDb> db_;
  TierStats stats_;

  mutable absl::Mutex mu_;
  std::unique_ptr<policy::PlacementPolicy> policy_ ABSL_GUARDED_BY(mu_);
  int64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t next_owner_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint32_t, std::weak_ptr<TierClient>> owners_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Page> pages_ ABSL_GUARDED_BY(mu_);
  // Resident pages in the order they entered host RAM: resident_seq -> page key.
  std::map<uint64_t, uint64_t> resident_order_ ABSL_GUARDED_BY(mu_);
  uint64_t next_resident_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, uint64_t> tenant_bytes_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> prefetch_queue_ ABSL_GUARDED_BY(mu_);
  AccessTraceRecorder* recorder_ ABSL_GUARDED_BY(mu_) = nullptr;

  // Demoter thread state.
  absl::Mutex demoter_mu_;
  absl::CondVar demoter_wake_;
  bool stop_ ABSL_GUARDED_BY(demoter_mu_) = false;
  bool wake_requested_ ABSL_GUARDED_BY(demoter_mu_) = false;
  std::thread demoter_;
  // Demotion attempts running in any round, so that MakeRoom can wait for other rounds'
  // work instead of giving up on the segments (and sessions) those rounds hold.
  absl::Mutex in_flight_mu_;
  absl::CondVar demotion_done_;
  int in_flight_ ABSL_GUARDED_BY(in_flight_mu_) = 0;
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_TIER_MANAGER_H_
