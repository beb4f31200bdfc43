// KvTierService: the gRPC face of kvtierd. It validates requests, finds sessions, runs the
// repair pipeline and streams results; all storage and scoring work is delegated.
#ifndef KVTIER_SERVER_SERVICE_H_
#define KVTIER_SERVER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "server/metrics.h"
#include "server/repair_log.h"
#include "server/repair_pipeline.h"
#include "server/session_registry.h"
#include "storage/tier_manager.h"

namespace kvtier::server {

// Thread-safe: gRPC calls the handlers from its thread pool. Borrowed pointers must outlive
// the service. Finished repairs are recorded in `repair_log` when it is not null. Stats'
// uptime_seconds counts from `started`, the time the process started (recovery included),
// on a monotonic clock.
class KvTierService final : public v1::KvTier::Service {
 public:
  KvTierService(SessionRegistry* registry, storage::TierManager* tiers, RepairPipeline* pipeline,
                Metrics* metrics, std::string version, absl::Time started,
                RepairLog* repair_log = nullptr);

  grpc::Status OpenSession(grpc::ServerContext* context, const v1::OpenSessionRequest* request,
                           v1::OpenSessionResponse* response) override;
  grpc::Status Offload(grpc::ServerContext* context, grpc::ServerReader<v1::OffloadChunk>* reader,
                       v1::OffloadResponse* response) override;
  grpc::Status Repair(grpc::ServerContext* context, const v1::RepairRequest* request,
                      grpc::ServerWriter<v1::RepairResponse>* writer) override;
  grpc::Status Promote(grpc::ServerContext* context, const v1::PromoteRequest* request,
                       grpc::ServerWriter<v1::PromoteResponse>* writer) override;
  grpc::Status Release(grpc::ServerContext* context, const v1::ReleaseRequest* request,
                       v1::ReleaseResponse* response) override;
  grpc::Status BeginPause(grpc::ServerContext* context, const v1::BeginPauseRequest* request,
                          v1::BeginPauseResponse* response) override;
  grpc::Status GetSession(grpc::ServerContext* context, const v1::GetSessionRequest* request,
                          v1::SessionInfo* response) override;
  grpc::Status ListSessions(grpc::ServerContext* context, const v1::ListSessionsRequest* request,
                            v1::ListSessionsResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context, const v1::StatsRequest* request,
                     v1::StatsResponse* response) override;

  // Drops sessions idle past their TTL, refreshes gauges and copies the tier manager's
  // counters into the metrics. Called periodically by main.
  void Maintain(absl::Time now);

 private:
  absl::Status DoOpenSession(const v1::OpenSessionRequest& request,
                             v1::OpenSessionResponse* response);
  absl::Status DoOffload(grpc::ServerContext* context, grpc::ServerReader<v1::OffloadChunk>* reader,
                         v1::OffloadResponse* response);
  absl::Status ApplyChunk(grpc::ServerContext* context, const v1::OffloadChunk& chunk,
                          v1::OffloadResponse* response);
  absl::Status DoRepair(grpc::ServerContext* context, const v1::RepairRequest& request,
                        grpc::ServerWriter<v1::RepairResponse>* writer);
  absl::Status DoPromote(const v1::PromoteRequest& request,
                         grpc::ServerWriter<v1::PromoteResponse>* writer);
  absl::Status DoRelease(const v1::ReleaseRequest& request, v1::ReleaseResponse* response);

  // Runs `body`, records kvtier_rpc_duration_seconds{method, code} and converts the status.
  template <typename Body>
  grpc::Status Instrumented(const char* method, Body&& body);

  void RefreshTierGauges();

  SessionRegistry* const registry_;
  storage::TierManager* const tiers_;
  RepairPipeline* const pipeline_;
  Metrics* const metrics_;
  RepairLog* const repair_log_;
  const std::string version_;
  // `started` on the steady clock: uptime never goes back when the wall clock is set.
  const std::chrono::steady_clock::time_point started_;
};

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_SERVICE_H_
