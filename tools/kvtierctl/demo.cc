// kvtierctl demo: an agent pause end to end with a 7B-class geometry. Offloads ~32K evicted
// fp16 rows layer range by layer range (as vLLM's connector saves them), sends a next-turn
// signal aimed at one planted needle, repairs K=96 rows in payload mode and checks that the
// needle came back and that the returned K/V bytes are the ones offloaded.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/synthetic_session.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::ctl {
namespace {

constexpr int32_t kBudget = 96;
constexpr double kMiB = 1024.0 * 1024.0;

double Ms(double seconds) { return seconds * 1e3; }

int Fail(const std::string& what, const absl::Status& status) {
  return ReportFailure("demo", what, status);
}

}  // namespace

int RunDemo(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "kvtierctl demo: takes no arguments\n");
    return 2;
  }
  const int64_t num_rows = absl::GetFlag(FLAGS_rows);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int32_t tokens = absl::GetFlag(FLAGS_tokens) > 0 ? absl::GetFlag(FLAGS_tokens) : 16;
  const int32_t layers_per_call = std::max(1, absl::GetFlag(FLAGS_layers_per_call));
  if (num_rows < 1024) {
    std::fprintf(stderr, "kvtierctl demo: --rows must be >= 1024\n");
    return 2;
  }

  absl::StatusOr<std::unique_ptr<Client>> connected = ConnectFromFlags();
  if (!connected.ok()) return Fail("connect", connected.status());
  Client& client = **connected;
  if (absl::Status health = client.Health(); !health.ok()) return Fail("health", health);

  const synthetic::SyntheticKv kv(synthetic::SevenBClassOptions(num_rows, seed));
  const synthetic::SyntheticOptions& o = kv.options();
  absl::StatusOr<v1::SessionInfo> session = synthetic::OpenSession(client, kv);
  if (!session.ok()) return Fail("OpenSession", session.status());
  const std::string& id = session->session_id();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
  if (!geometry.ok()) return Fail("session geometry", geometry.status());

  const double total_bytes = 2.0 * static_cast<double>(num_rows) * o.num_layers *
                             static_cast<double>(geometry->LayerRowBytes());
  std::printf("session %s: %d layers, %d q heads, %d KV heads, head_dim %d, fp16\n", id.c_str(),
              o.num_layers, o.num_q_heads, o.num_kv_heads, o.head_dim);
  std::printf(
      "evicted rows: %lld at positions %lld..%lld (%lld positions in gaps), %.1f MiB of K+V\n",
      static_cast<long long>(num_rows), static_cast<long long>(kv.positions().front()),
      static_cast<long long>(kv.positions().back()),
      static_cast<long long>(kv.positions().back() + 1 - num_rows), total_bytes / kMiB);
  for (size_t n = 0; n < kv.needles().size(); ++n) {
    const synthetic::Needle& needle = kv.needles()[n];
    std::printf("needle %zu: positions %s (%zu rows)\n", n, CompactRanges(needle.positions).c_str(),
                needle.num_rows);
  }
  if (kv.needles().empty()) {
    std::fprintf(stderr, "kvtierctl demo: no needle could be planted\n");
    return 1;
  }

  // Offload, one layer range per call. Generating the rows is the engine's business; only the
  // RPC is timed.
  double offload_seconds = 0;
  int32_t offloaded_layers = 0;
  const absl::Status offloaded = synthetic::OffloadAllRows(
      client, id, *geometry, kv, layers_per_call, [&](const synthetic::OffloadedRange& range) {
        const v1::OffloadResponse& r = range.response;
        const double seconds = absl::ToDoubleSeconds(range.call_time);
        offload_seconds += seconds;
        offloaded_layers = range.layer_end;
        std::printf(
            "offload layers %2d-%2d: %7.1f MiB in %3lld chunks, %.3f s, %7.1f MiB/s "
            "(generation %.2f s, not counted)\n",
            range.layer_begin, range.layer_end - 1, static_cast<double>(r.bytes()) / kMiB,
            static_cast<long long>(r.chunks()), seconds,
            static_cast<double>(r.bytes()) / kMiB / seconds,
            absl::ToDoubleSeconds(range.fill_time));
      });
  if (!offloaded.ok()) {
    // The failed call is the layer range after the last one that succeeded.
    const int32_t lb = offloaded_layers;
    const int32_t le = std::min(o.num_layers, lb + layers_per_call);
    return Fail(absl::StrCat("Offload layers ", lb, "-", le - 1), offloaded);
  }
  std::printf("offload total: %.1f MiB in %.2f s, %.1f MiB/s\n", total_bytes / kMiB,
              offload_seconds, total_bytes / kMiB / offload_seconds);

  absl::StatusOr<v1::SessionInfo> info = client.GetSession(id);
  if (!info.ok()) return Fail("GetSession", info.status());
  std::printf("stored: %lld rows complete, %lld candidates, %.1f MiB on the host\n",
              static_cast<long long>(info->rows_complete()),
              static_cast<long long>(info->rows_candidate()),
              static_cast<double>(info->bytes()) / kMiB);

  // The pause ends: the next turn's queries point at one needle.
  const int32_t target = static_cast<int32_t>(seed % kv.needles().size());
  const synthetic::Needle& needle = kv.needles()[static_cast<size_t>(target)];
  v1::RepairRequest request;
  request.set_session_id(id);
  request.set_request_id(absl::StrCat("demo-", seed));
  request.set_budget(kBudget);
  request.set_selector(v1::SELECTOR_REPAIRKV);
  request.set_return_mode(v1::RETURN_MODE_PAYLOAD);
  v1::Signal* signal = request.mutable_signal();
  signal->set_num_tokens(tokens);
  signal->set_query_dtype(v1::DTYPE_FLOAT32);
  signal->set_queries(Float32Bytes(kv.Queries(target, tokens, 2.0f, 1.0f, seed + 1)));
  std::printf("repair: K=%d, T=%d signal tokens aimed at needle %d (%.1f MiB of queries)\n",
              kBudget, tokens, target, static_cast<double>(signal->queries().size()) / kMiB);
  const absl::Time start = absl::Now();
  absl::StatusOr<RepairResult> result = client.Repair(request, *geometry);
  const double client_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!result.ok()) return Fail("Repair", result.status());

  const v1::RepairSummary& summary = result->summary;
  std::vector<int64_t> sorted(summary.sorted().begin(), summary.sorted().end());
  std::printf("promoted %d of %lld candidates: %s\n", summary.chosen_size(),
              static_cast<long long>(summary.candidates()), CompactRanges(sorted).c_str());
  size_t found = 0;
  for (int64_t p : needle.positions) {
    if (std::binary_search(sorted.begin(), sorted.end(), p)) ++found;
  }
  const bool recovered = found == needle.positions.size();
  std::printf("needle %d (%s): %zu/%zu positions promoted -> %s\n", target,
              CompactRanges(needle.positions).c_str(), found, needle.positions.size(),
              recovered ? "RECOVERED" : "MISSED");
  const v1::StageTimings& t = result->timings;
  std::printf(
      "timings (%s scorer): score %.2f ms, select %.2f ms, gather %.2f ms, send %.2f ms, "
      "server total %.2f ms, client %.2f ms\n",
      summary.scorer().c_str(), Ms(summary.timings().score_seconds()),
      Ms(summary.timings().select_seconds()), Ms(t.gather_seconds()), Ms(t.send_seconds()),
      Ms(t.total_seconds()), Ms(client_seconds));
  std::printf("received: %.2f MiB (payload %.2f MiB in %d chunks)\n",
              static_cast<double>(result->bytes_received) / kMiB,
              static_cast<double>(summary.payload_bytes()) / kMiB, summary.payload_chunks());
  const bool payload_ok = PayloadMatches(kv, result->payload);
  std::printf("payload check: %s\n", payload_ok ? "K/V bytes equal what was offloaded"
                                                : "K/V bytes DIFFER from what was offloaded");

  if (absl::StatusOr<v1::ReleaseResponse> r = client.ReleaseSession(id); !r.ok()) {
    return Fail("Release", r.status());
  }
  std::printf("released session %s\n", id.c_str());
  return recovered && payload_ok ? 0 : 1;
}

}  // namespace kvtier::ctl
