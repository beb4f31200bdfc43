#include "server/session.h"

#include "server/validation.h"

namespace kvtier::server {

Session::Session(std::string id, std::string tenant, storage::Geometry geometry, absl::Duration ttl,
                 std::unique_ptr<storage::RowStore> store, absl::Time now)
    : id_(std::move(id)),
      tenant_(std::move(tenant)),
      geometry_(std::move(geometry)),
      ttl_(ttl),
      segment_bytes_(store->segment_bytes()),
      created_(now),
      last_access_unix_ns_(absl::ToUnixNanos(now)),
      store_(std::move(store)) {
  absl::MutexLock lock(&mu);
  PublishCounts();
}

void Session::Touch(absl::Time now) {
  last_access_unix_ns_.store(absl::ToUnixNanos(now), std::memory_order_relaxed);
}

bool Session::ExpiredAt(absl::Time now) const {
  return absl::FromUnixNanos(last_access_unix_ns_.load(std::memory_order_relaxed)) + ttl_ <= now;
}

const RepairRecord* Session::FindRepair(const std::string& request_id) const {
  for (const auto& [id, record] : repairs_) {
    if (id == request_id) return &record;
  }
  return nullptr;
}

void Session::RememberRepair(const std::string& request_id, RepairRecord record) {
  if (repairs_.size() == kRepairHistory) repairs_.pop_front();
  repairs_.emplace_back(request_id, std::move(record));
}

void Session::PublishCounts() {
  const storage::RowCounts counts = store_->counts();
  rows_stored_.store(counts.stored, std::memory_order_relaxed);
  rows_complete_.store(counts.complete, std::memory_order_relaxed);
  rows_candidate_.store(counts.candidate, std::memory_order_relaxed);
  rows_promoted_.store(counts.promoted, std::memory_order_relaxed);
  bytes_.store(store_->bytes(), std::memory_order_relaxed);
  segments_.store(store_->segments(), std::memory_order_relaxed);
  segments_on_disk_.store(store_->segments_on_disk(), std::memory_order_relaxed);
}

uint64_t Session::DemoteSegment(uint32_t segment) {
  absl::StatusOr<storage::DemotionPlan> plan;
  if (!mu.TryLock()) return 0;  // busy with an RPC: the demoter tries another segment
  plan = store_->PrepareDemotion(segment);
  mu.Unlock();
  if (!plan.ok()) return 0;
  const absl::Status written = plan->Write();  // the slow part, without the lock
  absl::MutexLock lock(&mu);
  const uint64_t freed = store_->FinishDemotion(*plan, written);
  PublishCounts();
  return freed;
}

void Session::PrefetchSegment(uint32_t segment) {
  if (!mu.TryLock()) return;
  (void)store_->Prefetch(segment);  // a hint: a failure leaves the payload on disk
  PublishCounts();
  mu.Unlock();
}

void Session::FillInfo(v1::SessionInfo* info) const {
  info->set_session_id(id_);
  info->set_tenant(tenant_);
  GeometryToProto(geometry_, info->mutable_geometry());
  info->set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(ttl_)));
  info->set_rows_stored(rows_stored_.load(std::memory_order_relaxed));
  info->set_rows_complete(rows_complete_.load(std::memory_order_relaxed));
  info->set_rows_candidate(rows_candidate_.load(std::memory_order_relaxed));
  info->set_rows_promoted(rows_promoted_.load(std::memory_order_relaxed));
  info->set_bytes(bytes_.load(std::memory_order_relaxed));
  info->set_created_unix_ms(absl::ToUnixMillis(created_));
  info->set_expires_unix_ms(
      absl::ToUnixMillis(absl::FromUnixNanos(last_access_unix_ns_.load()) + ttl_));
  info->set_row_bytes(geometry_.RowBytes());
  info->set_segments(segments_.load(std::memory_order_relaxed));
  info->set_segments_on_disk(segments_on_disk_.load(std::memory_order_relaxed));
}

}  // namespace kvtier::server
