#include "server/session_registry.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvtier::server {
namespace {

std::string RandomSessionId() {
  thread_local absl::BitGen gen;
  return absl::StrFormat("s-%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

absl::Status NotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("session_id: session '", id, "' not found"));
}

}  // namespace

SessionRegistry::SessionRegistry(storage::TierBudget* host, RegistryOptions options)
    : host_(host), options_(options) {}

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
  std::shared_ptr<Session> expired;  // destroyed after the lock is released
  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(absl::StrCat("sessions: the server holds its maximum of ",
                                                     options_.max_sessions,
                                                     " sessions; release or let some expire"));
  }
  std::string session_id = id;
  if (session_id.empty()) {
    do {
      session_id = RandomSessionId();
    } while (sessions_.contains(session_id));
  } else if (auto it = sessions_.find(session_id); it != sessions_.end()) {
    if (!it->second->ExpiredAt(now)) {
      return absl::AlreadyExistsError(
          absl::StrCat("session_id: session '", session_id, "' already exists"));
    }
    expired = std::move(it->second);
    sessions_.erase(it);
  }
  auto session = std::make_shared<Session>(
      session_id, tenant.empty() ? std::string("default") : tenant, geometry, ttl,
      storage::RowStore::Create(geometry, host_, options_.segment_rows), now);
  sessions_.emplace(session_id, session);
  return session;
}

absl::StatusOr<std::shared_ptr<Session>> SessionRegistry::Find(const std::string& id,
                                                               absl::Time now) {
  std::shared_ptr<Session> expired;  // destroyed after the lock is released
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound(id);
  if (it->second->ExpiredAt(now)) {
    expired = std::move(it->second);
    sessions_.erase(it);
    return NotFound(id);
  }
  it->second->Touch(now);
  return it->second;
}

absl::StatusOr<std::shared_ptr<Session>> SessionRegistry::Remove(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return NotFound(id);
  std::shared_ptr<Session> session = std::move(it->second);
  sessions_.erase(it);
  return session;
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
        expired.push_back(std::move(it->second));
        sessions_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  return static_cast<int64_t>(expired.size());
}

int64_t SessionRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(sessions_.size());
}

}  // namespace kvtier::server
