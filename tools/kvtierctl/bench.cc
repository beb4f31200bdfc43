// kvtierctl bench: repair latency through gRPC. Offloads N synthetic fp16 rows of a 7B-class
// geometry, then for each return mode and budget K runs --runs repairs (after one warm-up)
// and reports p50/p95 of the server's stages and of the client's end-to-end time.
//
// Every measured repair sees all N candidates: rows promoted by a run stop being candidates,
// so they are re-offloaded after the run, outside the timed region (re-offloading a position
// makes it a candidate again).
#include <cstdio>
#include <fstream>
#include <numeric>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/synthetic_session.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::ctl {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr size_t kOffloadBlockRows = 1024;

struct Sample {
  double score = 0, select = 0, gather = 0, send = 0, total = 0, client = 0;
  uint64_t bytes = 0;
  int64_t chosen = 0;
};

struct Series {
  std::string mode;
  int32_t budget = 0;
  std::vector<Sample> samples;
};

int Fail(const std::string& what, const absl::Status& status) {
  return ReportFailure("bench", what, status);
}

std::string P50P95(const std::vector<Sample>& samples, double Sample::*field) {
  std::vector<double> seconds;
  for (const Sample& s : samples) seconds.push_back(s.*field);
  return P50P95Ms(seconds);
}

}  // namespace

int RunBench(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "kvtierctl bench: takes no arguments\n");
    return 2;
  }
  const int64_t num_rows = absl::GetFlag(FLAGS_rows);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int32_t tokens = absl::GetFlag(FLAGS_tokens) > 0 ? absl::GetFlag(FLAGS_tokens) : 64;
  const int32_t runs = absl::GetFlag(FLAGS_runs);
  std::vector<int32_t> budgets;
  for (const std::string& b : absl::GetFlag(FLAGS_budgets)) {
    int32_t k;
    if (!absl::SimpleAtoi(b, &k) || k < 1) {
      std::fprintf(stderr, "kvtierctl bench: --budgets: \"%s\" is not a positive integer\n",
                   b.c_str());
      return 2;
    }
    budgets.push_back(k);
  }
  std::vector<std::pair<std::string, v1::ReturnMode>> modes;
  for (const std::string& m : absl::GetFlag(FLAGS_modes)) {
    if (m == "payload") {
      modes.emplace_back(m, v1::RETURN_MODE_PAYLOAD);
    } else if (m == "positions") {
      modes.emplace_back(m, v1::RETURN_MODE_POSITIONS);
    } else {
      std::fprintf(stderr, "kvtierctl bench: --modes: \"%s\" is not payload or positions\n",
                   m.c_str());
      return 2;
    }
  }
  if (num_rows < 256 || runs < 1 || budgets.empty() || modes.empty()) {
    std::fprintf(stderr, "kvtierctl bench: need --rows >= 256, --runs >= 1, budgets, modes\n");
    return 2;
  }

  absl::StatusOr<std::unique_ptr<Client>> connected = ConnectFromFlags();
  if (!connected.ok()) return Fail("connect", connected.status());
  Client& client = **connected;

  const synthetic::SyntheticKv kv(synthetic::SevenBClassOptions(num_rows, seed));
  absl::StatusOr<v1::SessionInfo> session = synthetic::OpenSession(client, kv);
  if (!session.ok()) return Fail("OpenSession", session.status());
  const std::string& id = session->session_id();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
  if (!geometry.ok()) return Fail("session geometry", geometry.status());

  std::fprintf(stderr, "offloading %lld rows (28 layers x 4 KV heads x 128, fp16)...\n",
               static_cast<long long>(num_rows));
  const absl::Time offload_start = absl::Now();
  std::vector<uint16_t> keys, values;
  for (size_t begin = 0; begin < static_cast<size_t>(num_rows); begin += kOffloadBlockRows) {
    const size_t end = std::min(static_cast<size_t>(num_rows), begin + kOffloadBlockRows);
    std::vector<size_t> rows(end - begin);
    std::iota(rows.begin(), rows.end(), begin);
    absl::StatusOr<synthetic::OffloadedRange> r = synthetic::OffloadRows(
        client, id, *geometry, kv, 0, kv.options().num_layers, rows, &keys, &values);
    if (!r.ok()) return Fail("Offload", r.status());
  }
  std::fprintf(stderr, "offloaded in %.1f s\n", absl::ToDoubleSeconds(absl::Now() - offload_start));

  const std::string queries = Float32Bytes(kv.Queries(0, tokens, 2.0f, 1.0f, seed + 1));
  std::vector<Series> all;
  int request_number = 0;
  for (const auto& [mode_name, mode] : modes) {
    for (int32_t budget : budgets) {
      Series series{mode_name, budget, {}};
      for (int run = -1; run < runs; ++run) {  // run -1 warms up and is not recorded
        v1::RepairRequest request;
        request.set_session_id(id);
        request.set_request_id(absl::StrCat("bench-", seed, "-", request_number++));
        request.set_budget(budget);
        request.set_selector(v1::SELECTOR_REPAIRKV);
        request.set_return_mode(mode);
        request.mutable_signal()->set_num_tokens(tokens);
        request.mutable_signal()->set_query_dtype(v1::DTYPE_FLOAT32);
        request.mutable_signal()->set_queries(queries);
        const absl::Time start = absl::Now();
        absl::StatusOr<RepairResult> result = client.Repair(request, *geometry);
        const double client_seconds = absl::ToDoubleSeconds(absl::Now() - start);
        if (!result.ok()) return Fail(absl::StrCat("Repair K=", budget), result.status());
        if (result->summary.candidates() != num_rows) {
          std::fprintf(stderr, "kvtierctl bench: warning: %lld candidates, expected %lld\n",
                       static_cast<long long>(result->summary.candidates()),
                       static_cast<long long>(num_rows));
        }
        if (run >= 0) {
          Sample s;
          s.score = result->summary.timings().score_seconds();
          s.select = result->summary.timings().select_seconds();
          s.gather = result->timings.gather_seconds();
          s.send = result->timings.send_seconds();
          s.total = result->timings.total_seconds();
          s.client = client_seconds;
          s.bytes = result->bytes_received;
          s.chosen = result->summary.chosen_size();
          series.samples.push_back(s);
        }
        std::vector<int64_t> chosen(result->summary.chosen().begin(),
                                    result->summary.chosen().end());
        if (absl::Status s = ReoffloadPositions(client, id, *geometry, kv, chosen); !s.ok()) {
          return Fail("re-offload", s);
        }
      }
      std::fprintf(stderr, "%s K=%d: %d runs done\n", mode_name.c_str(), budget, runs);
      all.push_back(std::move(series));
    }
  }
  if (absl::StatusOr<v1::ReleaseResponse> r = client.ReleaseSession(id); !r.ok()) {
    return Fail("Release", r.status());
  }

  std::printf(
      "Repair latency through gRPC (%s): N=%lld rows, 28 layers x 28 q heads x 4 KV "
      "heads x 128, fp16, T=%d, %d runs each; milliseconds p50 / p95\n\n",
      absl::GetFlag(FLAGS_server).c_str(), static_cast<long long>(num_rows), tokens, runs);
  std::printf(
      "| mode | K | score | select | gather | send | server total | client e2e | "
      "MiB received |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Series& s : all) {
    std::printf(
        "| %s | %d | %s | %s | %s | %s | %s | %s | %.2f |\n", s.mode.c_str(), s.budget,
        P50P95(s.samples, &Sample::score).c_str(), P50P95(s.samples, &Sample::select).c_str(),
        P50P95(s.samples, &Sample::gather).c_str(), P50P95(s.samples, &Sample::send).c_str(),
        P50P95(s.samples, &Sample::total).c_str(), P50P95(s.samples, &Sample::client).c_str(),
        static_cast<double>(s.samples.front().bytes) / kMiB);
  }

  if (const std::string path = absl::GetFlag(FLAGS_csv); !path.empty()) {
    std::ofstream csv(path, std::ios::trunc);
    csv << "mode,budget,run,rows,tokens,chosen,score_s,select_s,gather_s,send_s,total_s,"
           "client_s,bytes_received\n";
    for (const Series& s : all) {
      for (size_t i = 0; i < s.samples.size(); ++i) {
        const Sample& x = s.samples[i];
        csv << s.mode << ',' << s.budget << ',' << i << ',' << num_rows << ',' << tokens << ','
            << x.chosen << ',' << x.score << ',' << x.select << ',' << x.gather << ',' << x.send
            << ',' << x.total << ',' << x.client << ',' << x.bytes << '\n';
      }
    }
    if (!csv.flush()) {
      std::fprintf(stderr, "kvtierctl bench: cannot write %s\n", path.c_str());
      return 1;
    }
    std::fprintf(stderr, "wrote %s\n", path.c_str());
  }
  return 0;
}

}  // namespace kvtier::ctl
