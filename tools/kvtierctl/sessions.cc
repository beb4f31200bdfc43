// kvtierctl sessions [list] | sessions show ID | sessions drop ID.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/output.h"

namespace kvtier::ctl {
namespace {

constexpr char kUsage[] =
    "kvtierctl sessions [list] [--tenant=T] [--json] | sessions show ID [--json] | "
    "sessions drop ID [--json]";

// NOT_FOUND for a session id gets a sentence of its own: the usual cause is a typo or a
// session that expired, not a server fault.
int SessionFailure(const std::string& command, const std::string& id, const absl::Status& status) {
  if (absl::IsNotFound(status)) {
    std::fprintf(stderr,
                 "kvtierctl %s: no session \"%s\" on %s (expired, dropped or never opened)\n",
                 command.c_str(), id.c_str(), absl::GetFlag(FLAGS_server).c_str());
  }
  return RpcFailure(command, status);
}

int List(Client& client) {
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions =
      client.ListSessions(absl::GetFlag(FLAGS_tenant));
  if (!sessions.ok()) return RpcFailure("sessions", sessions.status());
  if (absl::GetFlag(FLAGS_json)) {
    v1::ListSessionsResponse response;
    for (v1::SessionInfo& s : *sessions) *response.add_sessions() = std::move(s);
    PrintJson(response);
    return 0;
  }
  std::printf("%s%zu session(s)\n", SessionTable(*sessions).c_str(), sessions->size());
  return 0;
}

// "0-3, 7" for ascending layer numbers.
std::string LayerRanges(const google::protobuf::RepeatedField<int32_t>& layers) {
  std::string out;
  for (int i = 0; i < layers.size();) {
    int j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    absl::StrAppend(&out, out.empty() ? "" : ", ", layers[i]);
    if (j > i) absl::StrAppend(&out, "-", layers[j]);
    i = j + 1;
  }
  return out;
}

int Show(Client& client, const std::string& id) {
  // GetSession counts as a touch: the session's idle TTL starts again.
  absl::StatusOr<v1::SessionInfo> s = client.GetSession(id);
  if (!s.ok()) return SessionFailure("sessions show", id, s.status());
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(*s);
    return 0;
  }
  const v1::Geometry& g = s->geometry();
  std::printf("session         %s\n", s->session_id().c_str());
  std::printf("tenant          %s\n", s->tenant().c_str());
  std::printf("geometry        %s (%d layers, %d query heads, %d KV heads, head_dim %d)\n",
              GeometrySummary(g).c_str(), g.num_layers(), g.num_q_heads(), g.num_kv_heads(),
              g.head_dim());
  std::printf("scoring layers  %s\n", LayerRanges(g.scoring_layers()).c_str());
  std::printf("ttl             %u s\n", s->ttl_seconds());
  std::printf("rows            %lld stored, %lld complete, %lld candidate, %lld promoted\n",
              static_cast<long long>(s->rows_stored()), static_cast<long long>(s->rows_complete()),
              static_cast<long long>(s->rows_candidate()),
              static_cast<long long>(s->rows_promoted()));
  std::printf("row bytes       %llu\n", static_cast<unsigned long long>(s->row_bytes()));
  std::printf("host bytes      %s (%llu)\n", HumanBytes(s->bytes()).c_str(),
              static_cast<unsigned long long>(s->bytes()));
  std::printf("segments        %lld (%lld on disk only)\n", static_cast<long long>(s->segments()),
              static_cast<long long>(s->segments_on_disk()));
  std::printf("created         %s\n", LocalTime(s->created_unix_ms()).c_str());
  std::printf("expires         %s\n", LocalTime(s->expires_unix_ms()).c_str());
  return 0;
}

int Drop(Client& client, const std::string& id) {
  absl::StatusOr<v1::ReleaseResponse> r = client.ReleaseSession(id);
  if (!r.ok()) return SessionFailure("sessions drop", id, r.status());
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(*r);
    return 0;
  }
  std::printf("dropped session %s: %lld rows, %s freed\n", id.c_str(),
              static_cast<long long>(r->rows_released()), HumanBytes(r->bytes_freed()).c_str());
  return 0;
}

}  // namespace

int RunSessions(const std::vector<std::string>& args) {
  const std::string verb = args.empty() ? "list" : args[0];
  if (verb == "list") {
    if (args.size() > 1) return UsageFailure("sessions", "list takes no arguments", kUsage);
  } else if (verb == "show" || verb == "drop") {
    if (args.size() != 2 || args[1].empty()) {
      return UsageFailure("sessions", absl::StrCat(verb, " takes one session id"), kUsage);
    }
  } else {
    return UsageFailure("sessions", absl::StrCat("unknown subcommand \"", verb, "\""), kUsage);
  }
  // drop is sent once: if its reply were lost, a retry would find the session gone and
  // report NOT_FOUND for a drop that worked.
  absl::StatusOr<std::unique_ptr<Client>> client =
      ConnectFromFlags(kOperatorDeadline, /*retry=*/verb != "drop");
  if (!client.ok()) return RpcFailure("sessions", client.status());
  if (verb == "show") return Show(**client, args[1]);
  if (verb == "drop") return Drop(**client, args[1]);
  return List(**client);
}

}  // namespace kvtier::ctl
