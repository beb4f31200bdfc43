// kvtierctl tier-bench: what the tiers cost through gRPC, for an agent that pauses while
// other sessions keep offloading. Two sessions of the 7B-class geometry (fp16, a score
// index over 4 of the 28 layers, so that host RAM mostly holds payloads):
//   1. the paused session P gets 2 x --runs x 256 rows, then session B gets the rest of
//      --rows (every Offload call: kRowsPerCall rows with every layer; only the RPC is
//      timed). On a daemon whose host RAM cannot hold both, B's rows push P's to RocksDB.
//   2. --runs bursts of kBurstRows contiguous rows are promoted (payload mode) from P,
//      each from its own 256-row block: read from wherever the tier manager left them.
//   3. BeginPause(P) stages P's demoted payloads back into host RAM.
//   4. --runs bursts are promoted from P's other blocks.
// Every promoted byte is checked against what was offloaded. Prints one Markdown table
// row, labelled with the daemon's durability and host capacity; with --csv, appends one
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

int Fail(const std::string& what, const absl::Status& status) {
  return ReportFailure("tier-bench", what, status);
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
  // P's rows fill its segments in arrival order: with the default --segment_rows (256),
  // or any divisor of it, no two 256-row blocks share a segment.
  constexpr int64_t kBlockRows = 256;
  const int64_t paused_rows = 2 * runs * kBlockRows;
  if (runs < 1 || num_rows <= paused_rows) {
    std::fprintf(stderr, "kvtierctl tier-bench: need --runs >= 1 and --rows > 512 x --runs\n");
    return 2;
  }

  absl::StatusOr<std::unique_ptr<Client>> connected = ConnectFromFlags();
  if (!connected.ok()) return Fail("connect", connected.status());
  Client& client = **connected;
  absl::StatusOr<v1::StatsResponse> before = client.Stats();
  if (!before.ok()) return Fail("Stats", before.status());
  const v1::TierStats* host = FindTier(*before, "host");
  if (host == nullptr) return Fail("Stats", absl::InternalError("no host tier reported"));

  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const synthetic::SyntheticKv paused_kv(synthetic::SevenBClassOptions(paused_rows, seed));
  const synthetic::SyntheticKv busy_kv(
      synthetic::SevenBClassOptions(num_rows - paused_rows, seed + 1));
  struct Opened {
    std::string id;
    RowGeometry geometry;
  };
  auto open = [&](const synthetic::SyntheticKv& kv) -> absl::StatusOr<Opened> {
    v1::OpenSessionRequest request = synthetic::OpenSessionRequestFor(kv);
    request.mutable_geometry()->mutable_scoring_layers()->Assign(
        std::begin(synthetic::kSevenBIndexLayers), std::end(synthetic::kSevenBIndexLayers));
    absl::StatusOr<v1::SessionInfo> session = client.OpenSession(request);
    if (!session.ok()) return session.status();
    absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
    if (!geometry.ok()) return geometry.status();
    return Opened{session->session_id(), *geometry};
  };
  absl::StatusOr<Opened> paused = open(paused_kv);
  if (!paused.ok()) return Fail("OpenSession", paused.status());
  absl::StatusOr<Opened> busy = open(busy_kv);
  if (!busy.ok()) return Fail("OpenSession", busy.status());

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

  // 1. Offload P, then B.
  std::vector<double> offload_calls;
  uint64_t offloaded_bytes = 0;
  std::vector<uint16_t> keys, values;
  auto offload = [&](const synthetic::SyntheticKv& kv, const Opened& session) -> absl::Status {
    const size_t n = kv.positions().size();
    for (size_t begin = 0; begin < n; begin += kRowsPerCall) {
      std::vector<size_t> rows(std::min(kRowsPerCall, n - begin));
      std::iota(rows.begin(), rows.end(), begin);
      absl::StatusOr<synthetic::OffloadedRange> r =
          synthetic::OffloadRows(client, session.id, session.geometry, kv, 0,
                                 kv.options().num_layers, rows, &keys, &values);
      if (!r.ok()) return r.status();
      offload_calls.push_back(absl::ToDoubleSeconds(r->call_time));
      offloaded_bytes += r->response.bytes();
      record("offload", offload_calls.size() - 1, offload_calls.back(), r->response.bytes());
    }
    return absl::OkStatus();
  };
  if (absl::Status s = offload(paused_kv, *paused); !s.ok()) return Fail("Offload", s);
  if (absl::Status s = offload(busy_kv, *busy); !s.ok()) return Fail("Offload", s);
  const double offload_seconds = std::accumulate(offload_calls.begin(), offload_calls.end(), 0.0);
  absl::StatusOr<v1::SessionInfo> info = client.GetSession(paused->id);
  if (!info.ok()) return Fail("GetSession", info.status());

  // 2.-4. Bursts from P's blocks in a shuffled order: the first --runs before BeginPause,
  // the next --runs after it.
  std::vector<int64_t> order(static_cast<size_t>(2 * runs));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  bool all_exact = true;
  auto promote_bursts = [&](const char* call, size_t first_block,
                            std::vector<double>* seconds) -> absl::Status {
    for (int32_t run = 0; run < runs; ++run) {
      const int64_t block = order[first_block + run];
      const size_t offset = std::uniform_int_distribution<size_t>(0, kBlockRows - kBurstRows)(rng);
      v1::PromoteRequest request;
      request.set_session_id(paused->id);
      request.set_return_mode(v1::RETURN_MODE_PAYLOAD);
      for (size_t i = 0; i < kBurstRows; ++i) {
        request.add_positions(paused_kv.positions()[block * kBlockRows + offset + i]);
      }
      const absl::Time start = absl::Now();
      absl::StatusOr<PromoteResult> promoted = client.Promote(request, paused->geometry);
      if (!promoted.ok()) return promoted.status();
      seconds->push_back(absl::ToDoubleSeconds(absl::Now() - start));
      record(call, run, seconds->back(), promoted->bytes_received);
      all_exact = all_exact && PayloadMatches(paused_kv, promoted->payload);
    }
    return absl::OkStatus();
  };
  std::vector<double> cold, warm;
  if (absl::Status s = promote_bursts("promote_before_pause", 0, &cold); !s.ok()) {
    return Fail("Promote", s);
  }
  const absl::Time pause_start = absl::Now();
  absl::StatusOr<v1::BeginPauseResponse> staged = client.BeginPause(paused->id);
  const double pause_seconds = absl::ToDoubleSeconds(absl::Now() - pause_start);
  if (!staged.ok()) return Fail("BeginPause", staged.status());
  record("begin_pause", 0, pause_seconds, staged->bytes_loaded());
  if (absl::Status s = promote_bursts("promote_after_pause", runs, &warm); !s.ok()) {
    return Fail("Promote", s);
  }
  for (const Opened* session : {&*paused, &*busy}) {
    if (absl::StatusOr<v1::ReleaseResponse> r = client.ReleaseSession(session->id); !r.ok()) {
      return Fail("Release", r.status());
    }
  }

  // | durability | host MiB | offload MiB/s | offload call p50/p95 | P's segments on disk |
  // | promote before pause p50/p95 | BeginPause | promote after pause p50/p95 | bit-exact |
  const double loaded_mib = static_cast<double>(staged->bytes_loaded()) / kMiB;
  std::printf(
      "| %s | %.0f | %.1f | %s | %lld / %lld | %s | %.2f s, %.0f MiB (%.0f MiB/s) | %s | %s |\n",
      before->durability().c_str(), static_cast<double>(host->capacity_bytes()) / kMiB,
      static_cast<double>(offloaded_bytes) / kMiB / offload_seconds,
      P50P95Ms(offload_calls, 1).c_str(), static_cast<long long>(info->segments_on_disk()),
      static_cast<long long>(info->segments()), P50P95Ms(cold, 1).c_str(), pause_seconds,
      loaded_mib, pause_seconds > 0 ? loaded_mib / pause_seconds : 0.0, P50P95Ms(warm, 1).c_str(),
      all_exact ? "yes" : "NO");
  if (csv.is_open() && !csv.flush()) {
    std::fprintf(stderr, "kvtierctl tier-bench: cannot write %s\n", csv_path.c_str());
    return 1;
  }
  return all_exact ? 0 : 1;
}

}  // namespace kvtier::ctl
