#include "server/session_registry.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "storage/segment_codec.h"

namespace kvtier::server {
namespace {

uint64_t RandomU64() {
  thread_local absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

std::string RandomSessionId() { return absl::StrFormat("s-%016x%016x", RandomU64(), RandomU64()); }

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("session_id: session '", id, "' not found"));
}

}  // namespace

SessionRegistry::SessionRegistry(storage::TierManager* tiers, RegistryOptions options)
    : tiers_(tiers), options_(options) {}

std::shared_ptr<Session> SessionRegistry::MakeSession(
    const std::string& id, const std::string& tenant, const storage::Geometry& geometry,
    absl::Duration ttl, std::unique_ptr<storage::RowStore> store, absl::Time now) {
  auto session = std::make_shared<Session>(id, tenant, geometry, ttl, std::move(store), now);
  absl::MutexLock lock(&session->mu);
  session->store().Bind(session);
  return session;
}

std::shared_ptr<Session> SessionRegistry::TakeLocked(
    absl::flat_hash_map<std::string, std::shared_ptr<Session>>::iterator it) {
  dropping_.insert(it->first);
  std::shared_ptr<Session> session = std::move(it->second);
  sessions_.erase(it);
  return session;
}

void SessionRegistry::DropTaken(std::vector<std::shared_ptr<Session>>& sessions) {
  for (const std::shared_ptr<Session>& session : sessions) {
    absl::MutexLock lock(&session->mu);
    if (absl::Status s = session->store().Drop(); !s.ok()) {
      spdlog::error("session {}: deleting its rows from disk failed: {}", session->id(),
                    std::string(s.message()));
    }
    // The published counters keep the values from before the drop, for the Release reply.
  }
  absl::MutexLock lock(&mu_);
  for (const std::shared_ptr<Session>& session : sessions) dropping_.erase(session->id());
}

absl::StatusOr<int64_t> SessionRegistry::Recover(int64_t* data_loss) {
  storage::KvDb* db = tiers_->db();
  if (db == nullptr || db->durability() == storage::Durability::kNone) return 0;
  std::vector<storage::SessionRecord> records;
  // Segment-key prefixes of sessions whose record exists but cannot be decoded (damage, or
  // a format this build does not read): their keys are kept, never swept as orphans.
  std::vector<std::string> unreadable;
  absl::Status scan =
      db->Scan(storage::kSessionRecordPrefix, [&](absl::string_view key, absl::string_view value) {
        absl::StatusOr<storage::SessionRecord> record = storage::DecodeSessionRecord(value, key);
        if (!record.ok()) {
          spdlog::error("skipping session record: {}", std::string(record.status().message()));
          // m/<tenant>/<id> -> s/<tenant>/<id>: every incarnation and the older format.
          unreadable.push_back(absl::StrCat(
              "s/", key.substr(std::string_view(storage::kSessionRecordPrefix).size())));
          ++*data_loss;
          tiers_->stats().data_loss.fetch_add(1, std::memory_order_relaxed);
        } else {
          records.push_back(std::move(*record));
        }
        return true;
      });
  if (!scan.ok()) return scan;
  // Segment keys that no session record names cannot be recovered (a crash interrupted
  // their session's deletion); they would hold disk forever.
  absl::flat_hash_set<std::string> live;
  for (const storage::SessionRecord& r : records) {
    live.insert(
        storage::SessionPrefix(r.tenant, storage::SessionStorageName(r.session_id, r.incarnation)));
  }
  absl::StatusOr<int64_t> orphans = db->DeleteSessionsUnless([&](absl::string_view prefix) {
    if (live.contains(prefix)) return true;
    for (const std::string& id : unreadable) {
      // "s/<tenant>/<id>~<inc>/" or "s/<tenant>/<id>/"
      if (absl::StartsWith(prefix, id) && prefix.size() > id.size() &&
          (prefix[id.size()] == '~' || prefix[id.size()] == '/')) {
        return true;
      }
    }
    return false;
  });
  if (!orphans.ok()) return orphans.status();
  if (*orphans > 0) {
    spdlog::warn("deleted the segment records of {} session(s) without a session record", *orphans);
  }
  const absl::Time now = absl::Now();
  int64_t recovered = 0;
  for (storage::SessionRecord& r : records) {
    absl::StatusOr<std::unique_ptr<storage::RowStore>> store =
        storage::RowStore::Recover(r.geometry,
                                   storage::StoreContext{nullptr, tiers_, r.tenant, r.session_id,
                                                         r.segment_rows, r.incarnation},
                                   data_loss);
    if (!store.ok()) return store.status();
    std::shared_ptr<Session> session = MakeSession(
        r.session_id, r.tenant, r.geometry, absl::Seconds(r.ttl_seconds), std::move(*store), now);
    {
      absl::MutexLock lock(&session->mu);
      session->PublishCounts();
    }
    absl::MutexLock lock(&mu_);
    sessions_.emplace(r.session_id, std::move(session));
    ++recovered;
  }
  return recovered;
}

absl::StatusOr<std::shared_ptr<Session>> SessionRegistry::Open(const std::string& id,
                                                               const std::string& tenant,
                                                               const storage::Geometry& geometry,
                                                               absl::Duration ttl, absl::Time now) {
  if (ttl == absl::ZeroDuration()) ttl = options_.default_ttl;
  if (ttl > options_.max_ttl) {
    return absl::OutOfRangeError(absl::StrCat("ttl_seconds: ", absl::ToInt64Seconds(ttl),
                                              " exceeds the maximum ",
                                              absl::ToInt64Seconds(options_.max_ttl)));
  }
  absl::MutexLock lock(&mu_);
  std::string session_id = id;
  // Every check is made again after the lock was released to drop an expired session of
  // this id: meanwhile another Open may have taken the id, or another drop begun.
  while (true) {
    if (!id.empty()) {
      // A session of this id is being dropped: wait until its records are gone.
      struct Wait {
        const absl::flat_hash_set<std::string>* dropping;
        const std::string* id;
      } wait{&dropping_, &id};
      mu_.Await(absl::Condition(
          +[](Wait* w) { return !w->dropping->contains(*w->id); }, &wait));
    }
    if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions) {
      return absl::ResourceExhaustedError(absl::StrCat("sessions: the server holds its maximum of ",
                                                       options_.max_sessions,
                                                       " sessions; release or let some expire"));
    }
    if (id.empty()) {
      do {
        session_id = RandomSessionId();
      } while (sessions_.contains(session_id) || dropping_.contains(session_id));
      break;
    }
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) break;
    if (!it->second->ExpiredAt(now)) {
      return absl::AlreadyExistsError(
          absl::StrCat("session_id: session '", session_id, "' already exists"));
    }
    // The id is reused at once: its old rows must be gone from disk before new ones land.
    std::vector<std::shared_ptr<Session>> expired{TakeLocked(it)};
    mu_.Unlock();
    DropTaken(expired);
    mu_.Lock();
  }
  const std::string owner = tenant.empty() ? std::string("default") : tenant;
  // A fresh incarnation per open, so that a re-opened id never meets the records of the
  // session it replaces (a demotion of the old one may still be writing).
  const uint64_t incarnation = RandomU64();
  std::unique_ptr<storage::RowStore> store = storage::RowStore::Create(
      geometry, storage::StoreContext{nullptr, tiers_, owner, session_id, options_.segment_rows,
                                      incarnation});
  storage::SessionRecord record{owner,
                                session_id,
                                geometry,
                                absl::ToInt64Seconds(ttl),
                                options_.segment_rows,
                                tiers_->options().cold_format,
                                incarnation};
  if (absl::Status s = store->PersistSession(storage::EncodeSessionRecord(record)); !s.ok()) {
    return s;
  }
  std::shared_ptr<Session> session =
      MakeSession(session_id, owner, geometry, ttl, std::move(store), now);
  sessions_.emplace(session_id, session);
  return session;
}

absl::StatusOr<std::shared_ptr<Session>> SessionRegistry::Find(const std::string& id,
                                                               absl::Time now) {
  std::vector<std::shared_ptr<Session>> expired;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return NotFound(id);
    if (!it->second->ExpiredAt(now)) {
      it->second->Touch(now);
      return it->second;
    }
    expired.push_back(TakeLocked(it));
  }
  DropTaken(expired);
  return NotFound(id);
}

absl::StatusOr<std::shared_ptr<Session>> SessionRegistry::Remove(const std::string& id) {
  std::vector<std::shared_ptr<Session>> removed;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return NotFound(id);
    removed.push_back(TakeLocked(it));
  }
  DropTaken(removed);
  return removed.front();
}

std::vector<std::shared_ptr<Session>> SessionRegistry::List(const std::string& tenant) const {
  std::vector<std::shared_ptr<Session>> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, session] : sessions_) {
      if (tenant.empty() || session->tenant() == tenant) out.push_back(session);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  return out;
}

int64_t SessionRegistry::ExpireIdle(absl::Time now) {
  // Sessions are destroyed outside the lock: freeing a large store takes time.
  std::vector<std::shared_ptr<Session>> expired;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second->ExpiredAt(now)) {
        expired.push_back(TakeLocked(it++));
      } else {
        ++it;
      }
    }
  }
  DropTaken(expired);
  return static_cast<int64_t>(expired.size());
}

int64_t SessionRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(sessions_.size());
}

}  // namespace kvtier::server
