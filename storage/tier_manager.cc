#include "storage/tier_manager.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kvtier::storage {

absl::Status ValidateTierManagerOptions(const TierManagerOptions& o) {
  if (!(o.low_watermark > 0 && o.low_watermark <= o.high_watermark && o.high_watermark <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("low_watermark, high_watermark: need 0 < low <= high <= 1, got ",
                     o.low_watermark, " and ", o.high_watermark));
  }
  if (o.guard_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat("guard_rows: ", o.guard_rows, " < 0"));
  }
  return policy::MakePlacementPolicy(o.policy, o.policy_params).status();
}

absl::StatusOr<std::unique_ptr<TierManager>> TierManager::Create(TierManagerOptions options,
                                                                 std::unique_ptr<KvDb> db) {
  if (absl::Status s = ValidateTierManagerOptions(options); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<policy::PlacementPolicy>> policy =
      policy::MakePlacementPolicy(options.policy, options.policy_params);
  if (!policy.ok()) return policy.status();
  return std::unique_ptr<TierManager>(
      new TierManager(std::move(options), std::move(db), std::move(*policy)));
}

TierManager::TierManager(TierManagerOptions options, std::unique_ptr<KvDb> db,
                         std::unique_ptr<policy::PlacementPolicy> policy)
    : options_(std::move(options)),
      host_("host", options_.host_capacity_bytes),
      disk_("nvme", db == nullptr ? 0 : options_.disk_capacity_bytes),
      hbm_("hbm", 0),
      db_(std::move(db)),
      policy_(std::move(policy)) {}

TierManager::~TierManager() { Stop(); }

void TierManager::Start() {
  demoter_ = std::thread([this] { DemoterLoop(); });
}

void TierManager::Stop() {
  {
    absl::MutexLock lock(&demoter_mu_);
    stop_ = true;
    demoter_wake_.SignalAll();
  }
  if (demoter_.joinable()) demoter_.join();
}

void TierManager::set_recorder(AccessTraceRecorder* recorder) {
  absl::MutexLock lock(&mu_);
  recorder_ = recorder;
}

uint32_t TierManager::RegisterOwner() {
  absl::MutexLock lock(&mu_);
  return next_owner_++;
}

void TierManager::BindOwner(uint32_t owner, std::weak_ptr<TierClient> client) {
  absl::MutexLock lock(&mu_);
  owners_[owner] = std::move(client);
}

void TierManager::UnregisterOwner(uint32_t owner) {
  absl::MutexLock lock(&mu_);
  owners_.erase(owner);
}

uint64_t TierManager::QuotaOf(const std::string& tenant) const {
  auto it = options_.tenant_quota_bytes.find(tenant);
  return it != options_.tenant_quota_bytes.end() ? it->second : options_.default_tenant_quota_bytes;
}

absl::Status TierManager::ChargeTenant(const std::string& tenant, uint64_t bytes) {
  const uint64_t quota = QuotaOf(tenant);
  absl::MutexLock lock(&mu_);
  uint64_t& used = tenant_bytes_[tenant];
  if (quota != 0 && (bytes > quota || used > quota - bytes)) {
    stats_.quota_rejections.fetch_add(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(absl::StrCat("tenant ", tenant, ": quota of ", quota,
                                                     " bytes reached (", used, " bytes held, ",
                                                     bytes, " more asked)"));
  }
  used += bytes;
  return absl::OkStatus();
}

void TierManager::ForceChargeTenant(const std::string& tenant, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  tenant_bytes_[tenant] += bytes;
}

void TierManager::RefundTenant(const std::string& tenant, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  auto it = tenant_bytes_.find(tenant);
  if (it == tenant_bytes_.end()) return;
  it->second -= std::min(it->second, bytes);
  if (it->second == 0) tenant_bytes_.erase(it);
}

uint64_t TierManager::TenantBytes(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = tenant_bytes_.find(tenant);
  return it == tenant_bytes_.end() ? 0 : it->second;
}

void TierManager::MarkResident(uint64_t key, Page& page) {
  if (page.resident) resident_order_.erase(page.resident_seq);
  page.resident = true;
  page.resident_seq = next_resident_seq_++;
  resident_order_.emplace(page.resident_seq, key);
}

void TierManager::OnCreated(uint64_t page_key, uint64_t size_bytes) {
  absl::MutexLock lock(&mu_);
  Page& page = pages_[page_key];
  page.size_bytes = size_bytes;
  MarkResident(page_key, page);
  policy_->OnInsert(NextStep(), {page_key, static_cast<int64_t>(size_bytes)}, 0);
}

void TierManager::OnCreatedDemoted(uint64_t page_key, uint64_t size_bytes) {
  absl::MutexLock lock(&mu_);
  Page& page = pages_[page_key];
  page.size_bytes = size_bytes;
  policy_->OnInsert(NextStep(), {page_key, static_cast<int64_t>(size_bytes)}, 1);
}

void TierManager::OnAccess(uint64_t page_key, uint64_t size_bytes, bool resident,
                           int64_t token_begin, int64_t token_end) {
  std::vector<policy::PageKey> prefetch;
  {
    absl::MutexLock lock(&mu_);
    const policy::PolicyContext ctx = NextStep();
    const policy::PageView view{page_key, static_cast<int64_t>(size_bytes)};
    policy_->OnAccess(ctx, view, resident ? 0 : 1);
    if (resident) {
      stats_.policy_hits.fetch_add(1, std::memory_order_relaxed);
    } else {
      stats_.policy_misses.fetch_add(1, std::memory_order_relaxed);
      policy_->OnMiss(ctx, view);
    }
    for (const policy::PageKey key : policy_->MaybePrefetch(ctx, view)) {
      auto it = pages_.find(key);
      if (it == pages_.end() || it->second.resident) continue;
      if (prefetch_queue_.size() >= options_.max_prefetch_queue) break;
      prefetch_queue_.push_back(key);
    }
    if (recorder_ != nullptr) {
      recorder_->RecordAccess(TracePage{page_key, 0, token_begin,
                                        std::max(token_end, token_begin + 1), 0,
                                        static_cast<int64_t>(size_bytes)});
    }
    if (prefetch_queue_.empty()) return;
  }
  absl::MutexLock lock(&demoter_mu_);
  wake_requested_ = true;
  demoter_wake_.Signal();
}

void TierManager::OnLoaded(uint64_t page_key, uint64_t size_bytes, bool prefetch) {
  absl::MutexLock lock(&mu_);
  Page& page = pages_[page_key];
  page.size_bytes = size_bytes;
  MarkResident(page_key, page);
  const policy::PolicyContext ctx = NextStep();
  const policy::PageView view{page_key, static_cast<int64_t>(size_bytes)};
  policy_->OnPromote(ctx, view, 1, 0);
  policy_->OnInsert(ctx, view, 0);
  auto& count = prefetch ? stats_.prefetches : stats_.promotions;
  count.fetch_add(1, std::memory_order_relaxed);
  stats_.promoted_bytes.fetch_add(size_bytes, std::memory_order_relaxed);
}

void TierManager::OnDemoted(uint64_t page_key, uint64_t size_bytes) {
  absl::MutexLock lock(&mu_);
  auto it = pages_.find(page_key);
  if (it == pages_.end()) return;
  if (it->second.resident) resident_order_.erase(it->second.resident_seq);
  it->second.resident = false;
  policy_->OnEvict(NextStep(), {page_key, static_cast<int64_t>(size_bytes)}, 0);
  stats_.demotions.fetch_add(1, std::memory_order_relaxed);
  stats_.demoted_bytes.fetch_add(size_bytes, std::memory_order_relaxed);
}

void TierManager::OnFreed(uint64_t page_key) {
  absl::MutexLock lock(&mu_);
  auto it = pages_.find(page_key);
  if (it == pages_.end()) return;
  if (it->second.resident) resident_order_.erase(it->second.resident_seq);
  pages_.erase(it);
}

uint64_t TierManager::HighBytes() const {
  return static_cast<uint64_t>(options_.high_watermark *
                               static_cast<double>(host_.capacity_bytes()));
}
uint64_t TierManager::LowBytes() const {
  return static_cast<uint64_t>(options_.low_watermark *
                               static_cast<double>(host_.capacity_bytes()));
}

bool TierManager::FitsUnderHighWatermark(uint64_t bytes) const {
  const uint64_t used = host_.used_bytes();
  return bytes <= HighBytes() && used <= HighBytes() - bytes;
}

bool TierManager::PickVictim(const absl::flat_hash_set<uint64_t>& skip,
                             std::optional<uint32_t> keep_owner, uint64_t* key,
                             std::weak_ptr<TierClient>* client) {
  // Candidates: resident pages of bound owners in the order they entered host RAM, as the
  // policies expect (ties go to the earliest).
  std::vector<policy::PageView> candidates;
  candidates.reserve(resident_order_.size());
  for (const auto& [seq, page_key] : resident_order_) {
    const uint32_t owner = static_cast<uint32_t>(page_key >> 32);
    if (skip.contains(page_key) || !owners_.contains(owner) || owner == keep_owner) continue;
    candidates.push_back({page_key, static_cast<int64_t>(pages_[page_key].size_bytes)});
  }
  if (candidates.empty()) return false;
  const size_t i = policy_->SelectEvictionCandidate(NextStep(), 0, candidates, {0, 0});
  *key = candidates[std::min(i, candidates.size() - 1)].key;
  *client = owners_[static_cast<uint32_t>(*key >> 32)];
  return true;
}

uint64_t TierManager::DemoteOnce(uint64_t bytes_needed) {
  const uint64_t target = LowBytes();
  return DemoteWhile(
      [&] {
        const uint64_t used = host_.used_bytes();
        const bool over_low = used > target;
        const bool need_room = bytes_needed > 0 && (bytes_needed > host_.capacity_bytes() ||
                                                    used > host_.capacity_bytes() - bytes_needed);
        return over_low || need_room;
      },
      std::nullopt);
}

bool TierManager::MakeRoomForStaging(uint64_t bytes, uint32_t keep_owner, absl::Time deadline) {
  const uint64_t wanted = std::min(bytes, HighBytes());
  if (wanted == 0) return true;  // nothing to stage: no reason to move other sessions
  auto fits = [&] { return FitsUnderHighWatermark(wanted); };
  return DemoteUntil(
      fits, [&] { return DemoteWhile([&] { return !fits(); }, keep_owner); }, deadline);
}

bool TierManager::DemoteUntil(absl::FunctionRef<bool()> fits, absl::FunctionRef<uint64_t()> round,
                              absl::Time deadline) {
  // Rounds that free nothing while other rounds have demotions in flight wait for those
  // (they may free the room, or release the sessions this round found busy), a bounded
  // number of times in a row: attempts that keep failing elsewhere cannot spin us until
  // the deadline.
  constexpr int kFruitlessWaits = 8;
  int fruitless = 0;
  while (!fits()) {
    if (absl::Now() > deadline) return false;
    if (round() > 0) {
      fruitless = 0;
      continue;
    }
    absl::MutexLock lock(&in_flight_mu_);
    if (in_flight_ == 0 || ++fruitless > kFruitlessWaits) return fits();
    demotion_done_.WaitWithDeadline(&in_flight_mu_, deadline);
  }
  return true;
}

uint64_t TierManager::DemoteWhile(absl::FunctionRef<bool()> more,
                                  std::optional<uint32_t> keep_owner) {
  if (db_ == nullptr) return 0;
  uint64_t freed = 0;
  absl::flat_hash_set<uint64_t> skip;  // busy or not demotable in this round
  while (more()) {
    uint64_t key = 0;
    std::weak_ptr<TierClient> weak;
    {
      absl::MutexLock lock(&mu_);
      if (!PickVictim(skip, keep_owner, &key, &weak)) break;
    }
    std::shared_ptr<TierClient> client = weak.lock();
    {
      absl::MutexLock lock(&in_flight_mu_);
      ++in_flight_;
    }
    const uint64_t got = client == nullptr ? 0 : client->DemoteSegment(static_cast<uint32_t>(key));
    {
      absl::MutexLock lock(&in_flight_mu_);
      --in_flight_;
      demotion_done_.SignalAll();
    }
    if (got == 0) {
      skip.insert(key);
    } else {
      freed += got;
    }
  }
  return freed;
}

bool TierManager::MakeRoom(uint64_t bytes, absl::Time deadline) {
  auto fits = [&] {
    const uint64_t used = host_.used_bytes();
    return bytes <= host_.capacity_bytes() && used <= host_.capacity_bytes() - bytes;
  };
  return DemoteUntil(
      fits, [&] { return DemoteOnce(bytes); }, deadline);
}

void TierManager::DemoterLoop() {
  while (true) {
    {
      absl::MutexLock lock(&demoter_mu_);
      if (!stop_ && !wake_requested_) {
        demoter_wake_.WaitWithTimeout(&demoter_mu_, options_.demote_interval);
      }
      if (stop_) return;
      wake_requested_ = false;
    }
    if (host_.used_bytes() > HighBytes()) DemoteOnce(0);
    // Prefetch hints, while host RAM stays under the low watermark.
    while (true) {
      uint64_t key = 0;
      std::weak_ptr<TierClient> weak;
      {
        absl::MutexLock lock(&mu_);
        if (prefetch_queue_.empty()) break;
        key = prefetch_queue_.front();
        prefetch_queue_.pop_front();
        auto page = pages_.find(key);
        if (page == pages_.end() || page->second.resident) continue;
        if (host_.used_bytes() + page->second.size_bytes > LowBytes()) continue;
        auto owner = owners_.find(static_cast<uint32_t>(key >> 32));
        if (owner == owners_.end()) continue;
        weak = owner->second;
      }
      if (std::shared_ptr<TierClient> client = weak.lock()) {
        client->PrefetchSegment(static_cast<uint32_t>(key));
      }
    }
  }
}

}  // namespace kvtier::storage
