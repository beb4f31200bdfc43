// kvtierctl health: exit 0 when the daemon's grpc.health.v1 service reports SERVING.
#include <cstdio>

#include "absl/flags/flag.h"
#include "grpc/health/v1/health.pb.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/output.h"

namespace kvtier::ctl {

int RunHealth(const std::vector<std::string>& args) {
  if (!args.empty())
    return UsageFailure("health", "takes no arguments", "kvtierctl health [--json]");
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags(kOperatorDeadline);
  if (!client.ok()) return RpcFailure("health", client.status());
  // Anything but SERVING comes back as UNAVAILABLE naming the status.
  if (absl::Status status = (*client)->Health(); !status.ok()) return RpcFailure("health", status);
  if (absl::GetFlag(FLAGS_json)) {
    grpc::health::v1::HealthCheckResponse response;
    response.set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    PrintJson(response);
  } else {
    std::printf("SERVING\n");
  }
  return 0;
}

}  // namespace kvtier::ctl
