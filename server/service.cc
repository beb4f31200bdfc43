#include "server/service.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/status_util.h"
#include "server/validation.h"
#include "spdlog/spdlog.h"

namespace kvtier::server {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

absl::Status WithPrefix(const absl::Status& status, absl::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::Status StreamBroken() {
  return absl::CancelledError("client went away while the response was streaming");
}

// How long a call may wait for the demoter to make room: its deadline, at most 30 s.
absl::Time RoomDeadline(const grpc::ServerContext& context) {
  return absl::FromChrono(
      std::min(context.deadline(), std::chrono::system_clock::now() + std::chrono::seconds(30)));
}

// Streams the payload of `positions` slice by slice. Each slice is gathered under the
// session lock into one reused message and written with the lock released: memory stays
// at one chunk whatever K is, and a slow client never holds the session. Rows released or
// re-offloaded by the engine while their payload streams end the call with
// FAILED_PRECONDITION; other gather errors (DATA_LOSS, UNAVAILABLE) pass through. Each
// chunk's payload bytes are added to `streamed_bytes` (when not null) once the chunk is
// written, so a stream that breaks counts only what was sent.
template <typename Response>
absl::Status StreamPayload(Session& session, absl::Span<const int64_t> positions,
                           const std::vector<PayloadSlice>& plan,
                           grpc::ServerWriter<Response>* writer, v1::StageTimings* timings,
                           prometheus::Counter* streamed_bytes) {
  Response message;
  v1::PayloadChunk* chunk = message.mutable_chunk();
  double gather = 0, send = 0;
  for (const PayloadSlice& slice : plan) {
    const auto gather_start = Clock::now();
    {
      absl::MutexLock lock(&session.mu);
      absl::Status s = GatherSlice(session.store(), session.geometry(), positions, slice, chunk);
      if (absl::IsNotFound(s) || absl::IsFailedPrecondition(s)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "rows were released or changed while their payload was streaming: ", s.message()));
      }
      // DATA_LOSS (a stored segment failed its check), a disk error or an allocation
      // failure keep their code: the rows are still there, reading them failed.
      if (!s.ok()) return s;
    }
    const auto send_start = Clock::now();
    gather += std::chrono::duration<double>(send_start - gather_start).count();
    if (!writer->Write(message)) return StreamBroken();
    send += SecondsSince(send_start);
    if (streamed_bytes != nullptr) {
      streamed_bytes->Increment(static_cast<double>(SliceBytes(slice, session.geometry())));
    }
  }
  timings->set_gather_seconds(gather);
  timings->set_send_seconds(send);
  return absl::OkStatus();
}

// Index-only sessions return positions only: RETURN_MODE_UNSPECIFIED means positions there,
// and an explicit RETURN_MODE_PAYLOAD is refused before anything changes.
absl::Status ResolveReturnMode(const Session& session, v1::ReturnMode mode, bool* positions_only) {
  if (!session.geometry().index_only) return absl::OkStatus();
  if (mode == v1::RETURN_MODE_PAYLOAD) {
    return absl::FailedPreconditionError(
        absl::StrCat("return_mode: session '", session.id(),
                     "' is index-only (no payload stored); use RETURN_MODE_POSITIONS"));
  }
  *positions_only = true;
  return absl::OkStatus();
}

// What /statusz shows of a finished repair (server/statusz.h).
RepairLogEntry LogEntry(const Session& session, const v1::RepairRequest& request,
                        const RepairParams& params, const SelectionOutcome& outcome, bool replayed,
                        const v1::StageTimings& timings) {
  RepairLogEntry entry;
  entry.time = absl::Now();
  entry.session_id = session.id();
  entry.tenant = session.tenant();
  switch (params.selector) {
    case scorer::SelectorKind::kRepairKv:
      entry.mode = outcome.fast ? "fast" : "exact";
      break;
    case scorer::SelectorKind::kOldest:
      entry.mode = "oldest";
      break;
    case scorer::SelectorKind::kRandom:
      entry.mode = "random";
      break;
  }
  if (replayed) entry.mode = "replay";
  entry.budget = request.budget();
  entry.chosen = static_cast<int64_t>(outcome.chosen.size());
  entry.candidates = outcome.candidates;
  entry.positions_only = params.positions_only;
  entry.score_seconds = timings.score_seconds();
  entry.select_seconds = timings.select_seconds();
  entry.gather_seconds = timings.gather_seconds();
  entry.send_seconds = timings.send_seconds();
  entry.total_seconds = timings.total_seconds();
  return entry;
}

uint64_t PlanBytes(const std::vector<PayloadSlice>& plan, const storage::Geometry& geometry) {
  uint64_t bytes = 0;
  for (const PayloadSlice& slice : plan) bytes += SliceBytes(slice, geometry);
  return bytes;
}

}  // namespace

KvTierService::KvTierService(SessionRegistry* registry, storage::TierManager* tiers,
                             RepairPipeline* pipeline, Metrics* metrics, std::string version,
                             absl::Time started, RepairLog* repair_log)
    : registry_(registry),
      tiers_(tiers),
      pipeline_(pipeline),
      metrics_(metrics),
      repair_log_(repair_log),
      version_(std::move(version)),
      started_(Clock::now() - std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(
                                  std::max(absl::ZeroDuration(), absl::Now() - started)))) {
  metrics_->SetBuildInfo(version_);
  RefreshTierGauges();
}

template <typename Body>
grpc::Status KvTierService::Instrumented(const char* method, Body&& body) {
  const auto start = Clock::now();
  const absl::Status status = body();
  const grpc::Status grpc_status = ToGrpcStatus(status);
  metrics_->ObserveRpc(method, StatusCodeName(grpc_status.error_code()), SecondsSince(start));
  return grpc_status;
}

void KvTierService::RefreshTierGauges() {
  for (storage::TierBudget* tier : {&tiers_->hbm(), &tiers_->host(), &tiers_->disk()}) {
    metrics_->SetTier(tier->name(), static_cast<double>(tier->used_bytes()),
                      static_cast<double>(tier->capacity_bytes()),
                      static_cast<double>(tier->segments()));
  }
  metrics_->sessions().Set(static_cast<double>(registry_->size()));
}

void KvTierService::Maintain(absl::Time now) {
  const int64_t expired = registry_->ExpireIdle(now);
  if (expired > 0) {
    spdlog::info("{} idle session(s) expired", expired);
    metrics_->expired_sessions().Increment(static_cast<double>(expired));
  }
  RefreshTierGauges();
  metrics_->SyncTierStats(tiers_->stats());
}

// ---- OpenSession ----

grpc::Status KvTierService::OpenSession(grpc::ServerContext*, const v1::OpenSessionRequest* request,
                                        v1::OpenSessionResponse* response) {
  return Instrumented("OpenSession", [&] { return DoOpenSession(*request, response); });
}

absl::Status KvTierService::DoOpenSession(const v1::OpenSessionRequest& request,
                                          v1::OpenSessionResponse* response) {
  absl::StatusOr<storage::Geometry> geometry = GeometryFromProto(request.geometry());
  if (!geometry.ok()) return geometry.status();
  if (absl::Status s = ValidateTenant(request.tenant()); !s.ok()) return s;
  if (absl::Status s = ValidateSessionId("session_id", request.session_id(), true); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<Session>> session =
      registry_->Open(request.session_id(), request.tenant(), *geometry,
                      absl::Seconds(request.ttl_seconds()), absl::Now());
  if (!session.ok()) return session.status();
  (*session)->FillInfo(response->mutable_session());
  const storage::Geometry& g = (*session)->geometry();
  spdlog::info(
      "session {} opened: tenant={} layers={} q_heads={} kv_heads={} head_dim={} "
      "dtype_bytes={} scoring_layers={} ttl={}s",
      (*session)->id(), (*session)->tenant(), g.num_layers, g.num_q_heads, g.num_kv_heads,
      g.head_dim, storage::DTypeSize(g.dtype), g.scoring_layers.size(),
      absl::ToInt64Seconds((*session)->ttl()));
  RefreshTierGauges();
  return absl::OkStatus();
}

// ---- Offload ----

grpc::Status KvTierService::Offload(grpc::ServerContext* context,
                                    grpc::ServerReader<v1::OffloadChunk>* reader,
                                    v1::OffloadResponse* response) {
  return Instrumented("Offload", [&] { return DoOffload(context, reader, response); });
}

absl::Status KvTierService::DoOffload(grpc::ServerContext* context,
                                      grpc::ServerReader<v1::OffloadChunk>* reader,
                                      v1::OffloadResponse* response) {
  response->set_tier(tiers_->host().name());
  v1::OffloadChunk chunk;
  while (reader->Read(&chunk)) {
    absl::Status status = ApplyChunk(context, chunk, response);
    RefreshTierGauges();
    if (!status.ok()) {
      if (absl::IsResourceExhausted(status)) {
        spdlog::warn("offload to session {} rejected: {}", chunk.session_id(),
                     std::string(status.message()));
      }
      // Earlier chunks stay stored; the index tells the client where to resume.
      return WithPrefix(status, absl::StrCat("chunk ", response->chunks(), ": "));
    }
    response->set_chunks(response->chunks() + 1);
  }
  return absl::OkStatus();
}

absl::Status KvTierService::ApplyChunk(grpc::ServerContext* context, const v1::OffloadChunk& chunk,
                                       v1::OffloadResponse* response) {
  if (absl::Status s = ValidateSessionId("session_id", chunk.session_id(), false); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<Session>> session =
      registry_->Find(chunk.session_id(), absl::Now());
  if (!session.ok()) return session.status();
  storage::OffloadChunk rows;
  rows.positions = absl::MakeConstSpan(chunk.positions().data(), chunk.positions().size());
  rows.layer_begin = chunk.layer_begin();
  rows.layer_end = chunk.layer_end();
  rows.keys = absl::MakeConstSpan(reinterpret_cast<const std::byte*>(chunk.keys().data()),
                                  chunk.keys().size());
  rows.values = absl::MakeConstSpan(reinterpret_cast<const std::byte*>(chunk.values().data()),
                                    chunk.values().size());
  rows.importance = absl::MakeConstSpan(chunk.importance().data(), chunk.importance().size());
  // Host RAM for the new segments: when it is short, the demoter moves cold segments to
  // disk first (no session lock is held while it works). What it cannot free makes the
  // chunk fail with RESOURCE_EXHAUSTED below.
  const uint64_t needed = (static_cast<uint64_t>(rows.positions.size()) /
                               static_cast<uint64_t>(registry_->segment_rows()) +
                           2) *
                          (*session)->segment_bytes();
  tiers_->MakeRoom(needed, RoomDeadline(*context));
  absl::StatusOr<storage::OffloadResult> result;
  {
    absl::MutexLock lock(&(*session)->mu);
    result = (*session)->store().Offload(rows);
    (*session)->PublishCounts();
  }
  if (!result.ok()) {
    if (absl::IsResourceExhausted(result.status()) &&
        !absl::StartsWith(result.status().message(), "tenant ")) {
      tiers_->stats().capacity_rejections.fetch_add(1, std::memory_order_relaxed);
    }
    return result.status();
  }
  response->set_rows_written(response->rows_written() + result->rows_written);
  response->set_rows_completed(response->rows_completed() + result->rows_completed);
  response->set_bytes(response->bytes() + result->bytes);
  metrics_->offloaded_rows().Increment(static_cast<double>(result->rows_written));
  metrics_->offloaded_bytes().Increment(static_cast<double>(result->bytes));
  return absl::OkStatus();
}

// ---- Repair ----

grpc::Status KvTierService::Repair(grpc::ServerContext* context, const v1::RepairRequest* request,
                                   grpc::ServerWriter<v1::RepairResponse>* writer) {
  return Instrumented("Repair", [&] { return DoRepair(context, *request, writer); });
}

absl::Status KvTierService::DoRepair(grpc::ServerContext* context, const v1::RepairRequest& request,
                                     grpc::ServerWriter<v1::RepairResponse>* writer) {
  const auto start = Clock::now();
  absl::StatusOr<RepairParams> params = ValidateRepairRequest(request);
  if (!params.ok()) return params.status();
  absl::StatusOr<std::shared_ptr<Session>> found =
      registry_->Find(request.session_id(), absl::Now());
  if (!found.ok()) return found.status();
  Session& session = **found;
  if (absl::Status s = ResolveReturnMode(session, request.return_mode(), &params->positions_only);
      !s.ok()) {
    return s;
  }
  std::optional<DecodedSignal> signal;
  if (params->selector == scorer::SelectorKind::kRepairKv) {
    absl::StatusOr<DecodedSignal> decoded = DecodeSignal(request, session.geometry());
    if (!decoded.ok()) return decoded.status();
    signal = std::move(*decoded);
  }
  auto past_deadline = [context] {
    return context->IsCancelled() || std::chrono::system_clock::now() > context->deadline();
  };

  SelectionOutcome outcome;
  bool replayed = false;
  {
    absl::MutexLock lock(&session.mu);
    const RepairRecord* prior =
        request.request_id().empty() ? nullptr : session.FindRepair(request.request_id());
    if (prior != nullptr) {
      outcome.chosen = prior->chosen;
      outcome.scores = prior->scores;
      outcome.candidates = prior->candidates;
      replayed = true;
      if (!params->positions_only) {
        if (absl::Status s = session.store().CheckComplete(outcome.chosen); !s.ok()) {
          return absl::FailedPreconditionError(
              absl::StrCat("request_id: rows chosen by the earlier repair '", request.request_id(),
                           "' were released since: ", s.message()));
        }
      }
    } else {
      absl::StatusOr<SelectionOutcome> selected = pipeline_->Select(
          session.store(), session.geometry(), *params, signal ? &*signal : nullptr, past_deadline);
      if (!selected.ok()) return selected.status();
      outcome = std::move(*selected);
      // Nothing changes unless the selection is made within the deadline.
      if (past_deadline()) {
        return absl::DeadlineExceededError("deadline passed before the selection was made");
      }
      if (absl::Status s = session.store().MarkPromoted(outcome.chosen); !s.ok()) return s;
      session.PublishCounts();
      if (!request.request_id().empty()) {
        session.RememberRepair(request.request_id(),
                               {outcome.chosen, outcome.scores, outcome.candidates});
      }
    }
  }
  const std::vector<PayloadSlice> plan =
      params->positions_only ? std::vector<PayloadSlice>()
                             : PlanPayload(outcome.chosen.size(), session.geometry());

  v1::RepairResponse head;
  v1::RepairSummary& summary = *head.mutable_summary();
  summary.mutable_chosen()->Assign(outcome.chosen.begin(), outcome.chosen.end());
  std::vector<int64_t> sorted = outcome.chosen;
  std::sort(sorted.begin(), sorted.end());
  summary.mutable_sorted()->Assign(sorted.begin(), sorted.end());
  summary.mutable_scores()->Assign(outcome.scores.begin(), outcome.scores.end());
  summary.set_candidates(outcome.candidates);
  summary.set_replayed(replayed);
  summary.mutable_timings()->set_score_seconds(outcome.score_seconds);
  summary.mutable_timings()->set_select_seconds(outcome.select_seconds);
  summary.set_payload_chunks(static_cast<int32_t>(plan.size()));
  summary.set_payload_bytes(PlanBytes(plan, session.geometry()));
  summary.set_scorer(std::string(pipeline_->scorer_name()));
  if (!replayed && params->selector == scorer::SelectorKind::kRepairKv) {
    summary.set_scoring_mode(outcome.fast ? v1::SCORING_MODE_FAST : v1::SCORING_MODE_EXACT);
    summary.set_rescored(outcome.rescored);
    summary.mutable_timings()->set_first_pass_seconds(outcome.first_pass_seconds);
    summary.mutable_timings()->set_rescore_seconds(outcome.rescore_seconds);
  }
  metrics_->repairs().Increment();
  if (!replayed) {  // a replay promotes nothing new
    metrics_->promoted_rows().Increment(static_cast<double>(outcome.chosen.size()));
    metrics_->ObserveRepairStage("score", outcome.score_seconds);
    metrics_->ObserveRepairStage("select", outcome.select_seconds);
    if (outcome.fast) {
      metrics_->ObserveRepairStage("first_pass", outcome.first_pass_seconds);
      metrics_->ObserveRepairStage("rescore", outcome.rescore_seconds);
    }
  }

  v1::StageTimings timings = summary.timings();
  if (!writer->Write(head)) return StreamBroken();
  // A replay streams the payload again but promotes nothing new: its bytes are not counted.
  if (absl::Status s = StreamPayload(session, outcome.chosen, plan, writer, &timings,
                                     replayed ? nullptr : &metrics_->promoted_bytes());
      !s.ok()) {
    return s;
  }
  timings.set_total_seconds(SecondsSince(start));
  metrics_->ObserveRepairStage("gather", timings.gather_seconds());
  metrics_->ObserveRepairStage("send", timings.send_seconds());
  metrics_->ObserveRepairStage("total", timings.total_seconds());
  v1::RepairResponse done;
  *done.mutable_done()->mutable_timings() = timings;
  if (!writer->Write(done)) return StreamBroken();
  if (repair_log_ != nullptr) {
    repair_log_->Record(LogEntry(session, request, *params, outcome, replayed, timings));
  }
  return absl::OkStatus();
}

// ---- Promote ----

grpc::Status KvTierService::Promote(grpc::ServerContext*, const v1::PromoteRequest* request,
                                    grpc::ServerWriter<v1::PromoteResponse>* writer) {
  return Instrumented("Promote", [&] { return DoPromote(*request, writer); });
}

absl::Status KvTierService::DoPromote(const v1::PromoteRequest& request,
                                      grpc::ServerWriter<v1::PromoteResponse>* writer) {
  const auto start = Clock::now();
  if (absl::Status s = ValidateSessionId("session_id", request.session_id(), false); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidatePromotePositions(request.positions()); !s.ok()) return s;
  if (request.return_mode() != v1::RETURN_MODE_UNSPECIFIED &&
      request.return_mode() != v1::RETURN_MODE_PAYLOAD &&
      request.return_mode() != v1::RETURN_MODE_POSITIONS) {
    return absl::InvalidArgumentError(
        absl::StrCat("return_mode: unknown value ", static_cast<int>(request.return_mode())));
  }
  absl::StatusOr<std::shared_ptr<Session>> found =
      registry_->Find(request.session_id(), absl::Now());
  if (!found.ok()) return found.status();
  Session& session = **found;
  bool positions_only = request.return_mode() == v1::RETURN_MODE_POSITIONS;
  if (absl::Status s = ResolveReturnMode(session, request.return_mode(), &positions_only);
      !s.ok()) {
    return s;
  }
  const absl::Span<const int64_t> positions =
      absl::MakeConstSpan(request.positions().data(), request.positions().size());

  {
    absl::MutexLock lock(&session.mu);
    if (absl::Status s = session.store().MarkPromoted(positions); !s.ok()) return s;
    session.PublishCounts();
  }
  const std::vector<PayloadSlice> plan = positions_only
                                             ? std::vector<PayloadSlice>()
                                             : PlanPayload(positions.size(), session.geometry());
  v1::PromoteResponse head;
  v1::PromoteSummary& summary = *head.mutable_summary();
  *summary.mutable_positions() = request.positions();
  summary.set_payload_chunks(static_cast<int32_t>(plan.size()));
  summary.set_payload_bytes(PlanBytes(plan, session.geometry()));
  metrics_->promoted_rows().Increment(static_cast<double>(positions.size()));

  v1::StageTimings timings;
  if (!writer->Write(head)) return StreamBroken();
  if (absl::Status s =
          StreamPayload(session, positions, plan, writer, &timings, &metrics_->promoted_bytes());
      !s.ok()) {
    return s;
  }
  timings.set_total_seconds(SecondsSince(start));
  v1::PromoteResponse done;
  *done.mutable_done()->mutable_timings() = timings;
  if (!writer->Write(done)) return StreamBroken();
  return absl::OkStatus();
}

// ---- Release ----

grpc::Status KvTierService::Release(grpc::ServerContext*, const v1::ReleaseRequest* request,
                                    v1::ReleaseResponse* response) {
  return Instrumented("Release", [&] { return DoRelease(*request, response); });
}

absl::Status KvTierService::DoRelease(const v1::ReleaseRequest& request,
                                      v1::ReleaseResponse* response) {
  if (absl::Status s = ValidateSessionId("session_id", request.session_id(), false); !s.ok()) {
    return s;
  }
  if (request.whole_session()) {
    if (!request.positions().empty()) {
      return absl::InvalidArgumentError("positions: must be empty when whole_session is set");
    }
    absl::StatusOr<std::shared_ptr<Session>> removed = registry_->Remove(request.session_id());
    if (!removed.ok()) return removed.status();
    v1::SessionInfo info;
    (*removed)->FillInfo(&info);
    response->set_rows_released(info.rows_stored());
    response->set_bytes_freed(info.bytes());
    response->set_session_released(true);
    spdlog::info("session {} released: {} rows, {} bytes", request.session_id(), info.rows_stored(),
                 info.bytes());
    metrics_->released_rows().Increment(static_cast<double>(info.rows_stored()));
    metrics_->released_bytes().Increment(static_cast<double>(info.bytes()));
    removed->reset();  // frees the rows now unless an RPC in flight still holds the session
    RefreshTierGauges();
    return absl::OkStatus();
  }
  if (request.positions().empty()) {
    return absl::InvalidArgumentError(
        "positions: empty (set whole_session to release the session)");
  }
  absl::StatusOr<std::shared_ptr<Session>> found =
      registry_->Find(request.session_id(), absl::Now());
  if (!found.ok()) return found.status();
  storage::ReleaseResult result;
  {
    absl::MutexLock lock(&(*found)->mu);
    result = (*found)->store().Release(
        absl::MakeConstSpan(request.positions().data(), request.positions().size()));
    (*found)->PublishCounts();
  }
  if (!result.persisted.ok()) {
    metrics_->released_rows().Increment(static_cast<double>(result.rows_released));
    metrics_->released_bytes().Increment(static_cast<double>(result.bytes_freed));
    return absl::UnavailableError(
        absl::StrCat("rows released in memory but not on disk: ", result.persisted.message()));
  }
  response->set_rows_released(result.rows_released);
  response->set_bytes_freed(result.bytes_freed);
  metrics_->released_rows().Increment(static_cast<double>(result.rows_released));
  metrics_->released_bytes().Increment(static_cast<double>(result.bytes_freed));
  RefreshTierGauges();
  return absl::OkStatus();
}

// ---- BeginPause ----

grpc::Status KvTierService::BeginPause(grpc::ServerContext* context,
                                       const v1::BeginPauseRequest* request,
                                       v1::BeginPauseResponse* response) {
  return Instrumented("BeginPause", [&]() -> absl::Status {
    const auto start = Clock::now();
    if (absl::Status s = ValidateSessionId("session_id", request->session_id(), false); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::shared_ptr<Session>> found =
        registry_->Find(request->session_id(), absl::Now());
    if (!found.ok()) return found.status();
    // The paused session's Repair comes next: make room for its demoted payloads by
    // demoting other sessions' segments (the policy chooses), up to the high watermark.
    uint64_t wanted = 0;
    uint32_t owner = 0;
    {
      absl::MutexLock lock(&(*found)->mu);
      wanted = (*found)->store().demoted_payload_bytes();
      owner = (*found)->store().tier_owner();
    }
    (void)tiers_->MakeRoomForStaging(wanted, owner, RoomDeadline(*context));
    absl::StatusOr<storage::StageResult> staged;
    {
      absl::MutexLock lock(&(*found)->mu);
      staged = (*found)->store().Stage();
      (*found)->PublishCounts();
    }
    if (!staged.ok()) return staged.status();
    response->set_segments_loaded(staged->segments_loaded);
    response->set_bytes_loaded(staged->bytes_loaded);
    response->set_segments_resident(staged->segments_resident);
    response->set_segments_left(staged->segments_left);
    response->set_seconds(SecondsSince(start));
    RefreshTierGauges();
    return absl::OkStatus();
  });
}

// ---- Read-only calls ----

grpc::Status KvTierService::GetSession(grpc::ServerContext*, const v1::GetSessionRequest* request,
                                       v1::SessionInfo* response) {
  return Instrumented("GetSession", [&]() -> absl::Status {
    if (absl::Status s = ValidateSessionId("session_id", request->session_id(), false); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::shared_ptr<Session>> found =
        registry_->Find(request->session_id(), absl::Now());
    if (!found.ok()) return found.status();
    (*found)->FillInfo(response);
    return absl::OkStatus();
  });
}

grpc::Status KvTierService::ListSessions(grpc::ServerContext*,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) {
  return Instrumented("ListSessions", [&]() -> absl::Status {
    if (absl::Status s = ValidateTenant(request->tenant()); !s.ok()) return s;
    const absl::Time now = absl::Now();
    for (const auto& session : registry_->List(request->tenant())) {
      if (session->ExpiredAt(now)) continue;
      session->FillInfo(response->add_sessions());
    }
    return absl::OkStatus();
  });
}

grpc::Status KvTierService::Stats(grpc::ServerContext*, const v1::StatsRequest*,
                                  v1::StatsResponse* response) {
  return Instrumented("Stats", [&]() -> absl::Status {
    for (storage::TierBudget* tier : {&tiers_->hbm(), &tiers_->host(), &tiers_->disk()}) {
      v1::TierStats* stats = response->add_tiers();
      stats->set_name(tier->name());
      stats->set_bytes(tier->used_bytes());
      stats->set_capacity_bytes(tier->capacity_bytes());
      stats->set_segments(tier->segments());
    }
    const storage::TierManagerOptions& o = tiers_->options();
    response->set_durability(std::string(storage::DurabilityName(
        tiers_->db() == nullptr ? storage::Durability::kNone : tiers_->db()->durability())));
    response->set_placement_policy(o.policy);
    response->set_cold_format(std::string(storage::quant::FormatName(o.cold_format)));
    int64_t rows = 0;
    for (const auto& session : registry_->List("")) rows += session->rows_stored();
    response->set_sessions(registry_->size());
    response->set_rows(rows);
    response->set_scorer(std::string(pipeline_->scorer_name()));
    response->set_version(version_);
    response->set_uptime_seconds(SecondsSince(started_));
    response->set_repairs(static_cast<uint64_t>(metrics_->repairs().Value()));
    response->set_offloaded_rows(static_cast<uint64_t>(metrics_->offloaded_rows().Value()));
    return absl::OkStatus();
  });
}

}  // namespace kvtier::server
