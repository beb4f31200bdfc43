// kvtierctl sessions: one line per open session.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"

namespace kvtier::ctl {

int RunSessions(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "kvtierctl sessions: takes no arguments\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags();
  if (!client.ok()) {
    std::fprintf(stderr, "kvtierctl sessions: %s\n", client.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions =
      (*client)->ListSessions(absl::GetFlag(FLAGS_tenant));
  if (!sessions.ok()) {
    std::fprintf(stderr, "kvtierctl sessions: %s\n", sessions.status().ToString().c_str());
    return 1;
  }
  std::printf("%-24s %-12s %-22s %10s %10s %10s %10s %14s %s\n", "SESSION", "TENANT", "GEOMETRY",
              "STORED", "COMPLETE", "CANDIDATE", "PROMOTED", "BYTES", "EXPIRES");
  for (const v1::SessionInfo& s : *sessions) {
    const v1::Geometry& g = s.geometry();
    char geometry[64];
    std::snprintf(geometry, sizeof(geometry), "%dLx%dQx%dKVx%d %s", g.num_layers(), g.num_q_heads(),
                  g.num_kv_heads(), g.head_dim(),
                  g.dtype() == v1::DTYPE_FLOAT16    ? "f16"
                  : g.dtype() == v1::DTYPE_BFLOAT16 ? "bf16"
                  : g.dtype() == v1::DTYPE_FLOAT32  ? "f32"
                                                    : "?");
    const std::string expires = absl::FormatTime(
        "%Y-%m-%dT%H:%M:%S", absl::FromUnixMillis(s.expires_unix_ms()), absl::LocalTimeZone());
    std::printf("%-24s %-12s %-22s %10lld %10lld %10lld %10lld %14llu %s\n", s.session_id().c_str(),
                s.tenant().c_str(), geometry, static_cast<long long>(s.rows_stored()),
                static_cast<long long>(s.rows_complete()),
                static_cast<long long>(s.rows_candidate()),
                static_cast<long long>(s.rows_promoted()),
                static_cast<unsigned long long>(s.bytes()), expires.c_str());
  }
  std::printf("%zu session(s)\n", sessions->size());
  return 0;
}

}  // namespace kvtier::ctl
