// kvtierctl tier-bench: what the tiers cost through gRPC. Offloads N synthetic fp16 rows of
// the 7B-class geometry (a score index over 4 of the 28 layers, so that host RAM mostly
// holds payloads) in calls of kRowsPerCall rows with every layer, then
//   1. promotes --runs bursts of kBurstRows contiguous rows, each from a different segment,
//      in payload mode ("cold": wherever the tier manager left them, RAM or RocksDB),
//   2. calls BeginPause (stages the session's demoted payloads back into host RAM),
//   3. promotes --runs bursts from other segments ("after pause"),
// and checks every promoted byte against what was offloaded. It prints one Markdown table
// row (the daemon's durability and host capacity label it) and, with --csv, appends one
// line per timed call. bench/tier_throughput.sh runs it against several daemon
// configurations side by side.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/synthetic_session.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::ctl {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr size_t kRowsPerCall = 512;  // 28 MiB of K+V per Offload call
constexpr size_t kBurstRows = 96;     // one promoted burst, as a repair at K = 96 returns
constexpr int kIndexLayers[] = {0, 9, 18, 27};

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "kvtierctl tier-bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

std::string P50P95Ms(const std::vector<double>& seconds) {
  std::vector<double> ms;
  for (double s : seconds) ms.push_back(s * 1e3);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f / %.1f", Percentile(ms, 50), Percentile(ms, 95));
  return buf;
}

const v1::TierStats* FindTier(const v1::StatsResponse& stats, const std::string& name) {
  for (const v1::TierStats& t : stats.tiers()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

}  // namespace

int RunTierBench(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "kvtierctl tier-bench: takes no arguments\n");
    return 2;
  }
  const int64_t num_rows = absl::GetFlag(FLAGS_rows);
  const int32_t runs = absl::GetFlag(FLAGS_runs);
  // Segments are filled in arrival order; bursts are drawn from distinct 256-row blocks.
  constexpr int64_t kBlockRows = 256;
  const int64_t blocks = num_rows / kBlockRows;
  if (runs < 1 || blocks < 2 * runs) {
    std::fprintf(stderr, "kvtierctl tier-bench: need --runs >= 1 and --rows >= 512 x --runs\n");
    return 2;
  }

  absl::StatusOr<std::unique_ptr<Client>> connected = ConnectFromFlags();
  if (!connected.ok()) return Fail("connect", connected.status());
  Client& client = **connected;
  absl::StatusOr<v1::StatsResponse> before = client.Stats();
  if (!before.ok()) return Fail("Stats", before.status());
  const v1::TierStats* host = FindTier(*before, "host");
  if (host == nullptr) return Fail("Stats", absl::InternalError("no host tier reported"));

  const synthetic::SyntheticKv kv(SevenBClassOptions(num_rows, absl::GetFlag(FLAGS_seed)));
  v1::OpenSessionRequest open = synthetic::OpenSessionRequestFor(kv);
  open.mutable_geometry()->mutable_scoring_layers()->Assign(std::begin(kIndexLayers),
                                                            std::end(kIndexLayers));
  absl::StatusOr<v1::SessionInfo> session = client.OpenSession(open);
  if (!session.ok()) return Fail("OpenSession", session.status());
  const std::string& id = session->session_id();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
  if (!geometry.ok()) return Fail("session geometry", geometry.status());

  std::ofstream csv;
  const std::string csv_path = absl::GetFlag(FLAGS_csv);
  if (!csv_path.empty()) {
    const bool fresh = !std::ifstream(csv_path).good();
    csv.open(csv_path, std::ios::app);
    if (fresh) csv << "durability,host_capacity_bytes,call,run,seconds,bytes\n";
  }
  const std::string config = absl::StrCat(before->durability(), ",", host->capacity_bytes());
  auto record = [&](const char* call, size_t run, double seconds, uint64_t bytes) {
    if (csv.is_open()) {
      csv << config << ',' << call << ',' << run << ',' << seconds << ',' << bytes << '\n';
    }
  };

  // 1. Offload, timing the RPC only (generating rows is the engine's business).
  std::vector<double> offload_calls;
  uint64_t offloaded_bytes = 0;
  std::vector<uint16_t> keys, values;
  for (size_t begin = 0; begin < static_cast<size_t>(num_rows); begin += kRowsPerCall) {
    std::vector<size_t> rows(std::min(kRowsPerCall, static_cast<size_t>(num_rows) - begin));
    std::iota(rows.begin(), rows.end(), begin);
    absl::StatusOr<synthetic::OffloadedRange> r = synthetic::OffloadRows(
        client, id, *geometry, kv, 0, kv.options().num_layers, rows, &keys, &values);
    if (!r.ok()) return Fail("Offload", r.status());
    offload_calls.push_back(absl::ToDoubleSeconds(r->call_time));
    offloaded_bytes += r->response.bytes();
    record("offload", offload_calls.size() - 1, offload_calls.back(), r->response.bytes());
  }
  const double offload_seconds = std::accumulate(offload_calls.begin(), offload_calls.end(), 0.0);
  absl::StatusOr<v1::SessionInfo> info = client.GetSession(id);
  if (!info.ok()) return Fail("GetSession", info.status());

  // 2. Bursts from distinct blocks, half before and half after BeginPause.
  std::vector<int64_t> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::shuffle(order.begin(), order.end(), rng);
  bool all_exact = true;
  auto promote_bursts = [&](const char* call, size_t first_block,
                            std::vector<double>* seconds) -> absl::Status {
    for (int32_t run = 0; run < runs; ++run) {
      const int64_t block = order[first_block + run];
      const size_t offset = std::uniform_int_distribution<size_t>(0, kBlockRows - kBurstRows)(rng);
      v1::PromoteRequest request;
      request.set_session_id(id);
      request.set_return_mode(v1::RETURN_MODE_PAYLOAD);
      for (size_t i = 0; i < kBurstRows; ++i) {
        request.add_positions(kv.positions()[block * kBlockRows + offset + i]);
      }
      const absl::Time start = absl::Now();
      absl::StatusOr<PromoteResult> promoted = client.Promote(request, *geometry);
      if (!promoted.ok()) return promoted.status();
      seconds->push_back(absl::ToDoubleSeconds(absl::Now() - start));
      record(call, run, seconds->back(), promoted->bytes_received);
      all_exact = all_exact && PayloadMatches(kv, promoted->payload);
    }
    return absl::OkStatus();
  };
  std::vector<double> cold, warm;
  if (absl::Status s = promote_bursts("promote_cold", 0, &cold); !s.ok()) {
    return Fail("Promote", s);
  }
  const absl::Time pause_start = absl::Now();
  absl::StatusOr<v1::BeginPauseResponse> paused = client.BeginPause(id);
  const double pause_seconds = absl::ToDoubleSeconds(absl::Now() - pause_start);
  if (!paused.ok()) return Fail("BeginPause", paused.status());
  record("begin_pause", 0, pause_seconds, paused->bytes_loaded());
  if (absl::Status s = promote_bursts("promote_after_pause", runs, &warm); !s.ok()) {
    return Fail("Promote", s);
  }
  if (absl::StatusOr<v1::ReleaseResponse> r = client.ReleaseSession(id); !r.ok()) {
    return Fail("Release", r.status());
  }

  // | durability | host MiB | offload MiB/s | offload call p50/p95 | segments on disk |
  // | promote cold p50/p95 | BeginPause | promote after pause p50/p95 | bit-exact |
  std::printf("| %s | %.0f | %.1f | %s | %lld / %lld | %s | %.2f s, %.0f MiB | %s | %s |\n",
              before->durability().c_str(), static_cast<double>(host->capacity_bytes()) / kMiB,
              static_cast<double>(offloaded_bytes) / kMiB / offload_seconds,
              P50P95Ms(offload_calls).c_str(), static_cast<long long>(info->segments_on_disk()),
              static_cast<long long>(info->segments()), P50P95Ms(cold).c_str(), pause_seconds,
              static_cast<double>(paused->bytes_loaded()) / kMiB, P50P95Ms(warm).c_str(),
              all_exact ? "yes" : "NO");
  if (csv.is_open() && !csv.flush()) {
    std::fprintf(stderr, "kvtierctl tier-bench: cannot write %s\n", csv_path.c_str());
    return 1;
  }
  return all_exact ? 0 : 1;
}

}  // namespace kvtier::ctl
