// The set of open sessions, with idle expiry.
#ifndef KVTIER_SERVER_SESSION_REGISTRY_H_
#define KVTIER_SERVER_SESSION_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/session.h"
#include "storage/geometry.h"
#include "storage/quant/codec.h"
#include "storage/tier_manager.h"

namespace kvtier::server {

struct RegistryOptions {
  int32_t segment_rows = 256;
  int64_t max_sessions = 4096;
  absl::Duration default_ttl = absl::Hours(1);
  absl::Duration max_ttl = absl::Hours(24 * 7);
};

// Thread-safe. Sessions are shared_ptr: an RPC that found a session keeps it alive even if
// it is released or expires meanwhile. A released or expired session's rows are dropped
// from every tier (disk included) at once; an RPC still streaming them gets
// FAILED_PRECONDITION.
class SessionRegistry {
 public:
  // `tiers` (not owned) must outlive the registry and every session.
  SessionRegistry(storage::TierManager* tiers, RegistryOptions options);

  // Reopens every session stored in the tier manager's database (durability wal or sync)
  // with its rows, as they were acknowledged. Returns the number of sessions; segments that
  // failed their checks are added to *data_loss. Call before serving.
  absl::StatusOr<int64_t> Recover(int64_t* data_loss);

  // Creates a session. `id` empty: a random one is assigned. ttl zero: the default.
  // ALREADY_EXISTS if `id` is taken, RESOURCE_EXHAUSTED past max_sessions, OUT_OF_RANGE for
  // a ttl above max_ttl.
  absl::StatusOr<std::shared_ptr<Session>> Open(const std::string& id, const std::string& tenant,
                                                const storage::Geometry& geometry,
                                                absl::Duration ttl, absl::Time now);

  // The live session `id`, touched at `now`. NOT_FOUND (naming session_id) when it does not
  // exist or has expired (an expired session is removed here).
  absl::StatusOr<std::shared_ptr<Session>> Find(const std::string& id, absl::Time now);

  // Removes the session; NOT_FOUND if absent. Returns the removed session.
  absl::StatusOr<std::shared_ptr<Session>> Remove(const std::string& id);

  // Sessions of `tenant` (all when empty), sorted by id.
  std::vector<std::shared_ptr<Session>> List(const std::string& tenant) const;

  // Drops sessions idle past their ttl; returns how many.
  int64_t ExpireIdle(absl::Time now);

  int64_t size() const;
  int32_t segment_rows() const { return options_.segment_rows; }

 private:
  // Builds the session around `store` and binds it to the tier manager.
  std::shared_ptr<Session> MakeSession(const std::string& id, const std::string& tenant,
                                       const storage::Geometry& geometry, absl::Duration ttl,
                                       std::unique_ptr<storage::RowStore> store, absl::Time now);
  // Takes a session out of the map for dropping; its id stays in dropping_ (Open of that
  // id waits) until DropTaken has deleted its records.
  std::shared_ptr<Session> TakeLocked(
      absl::flat_hash_map<std::string, std::shared_ptr<Session>>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops taken sessions' rows from every tier, outside the registry lock, then lets Open
  // reuse their ids.
  void DropTaken(std::vector<std::shared_ptr<Session>>& sessions) ABSL_LOCKS_EXCLUDED(mu_);

  storage::TierManager* const tiers_;
  const RegistryOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  // Ids whose session was taken out and whose records are being deleted. An Open of such
  // an id waits: the old session's Drop deletes the record key the new one would write.
  absl::flat_hash_set<std::string> dropping_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_SESSION_REGISTRY_H_
