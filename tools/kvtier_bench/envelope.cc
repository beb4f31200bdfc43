// kvtier-bench envelope (envelope.h). One session of synthetic 7B-shaped rows (28 layers,
// 28 query heads, 4 KV heads, head dim 128, fp16; 4 planted needle spans) in a running
// kvtierd; for each K, `exact_runs` exact and `runs` fast repairs with T signal tokens
// aimed at needle 0, positions returned. Rows a repair promotes are offloaded again after
// it, outside the timed region, so that every repair sees all N candidates.
#include "tools/kvtier_bench/envelope.h"

#include <cstdio>
#include <map>
#include <memory>
#include <numeric>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gpu/sketch.h"
#include "kvtier/client.h"
#include "tools/kvtier_bench/bench_util.h"
#include "tools/synthetic/synthetic_client.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::bench {
namespace {

constexpr size_t kOffloadRows = 2048;  // rows per Offload call

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "kvtier-bench envelope: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

// Per-run figures of one repair, in seconds.
struct Run {
  double client = 0, total = 0, score = 0, first_pass = 0, rescore = 0, select = 0;
};

// Offloads rows `rows` (row indices of kv): every layer of a full session, or the scoring
// layers' keys one layer per call in an index-only one.
absl::Status OffloadRowSet(Client& client, const std::string& id, const RowGeometry& geometry,
                           const synthetic::SyntheticKv& kv, const std::vector<int32_t>& layers,
                           absl::Span<const size_t> rows, std::vector<uint16_t>* keys,
                           std::vector<uint16_t>* values) {
  for (size_t begin = 0; begin < rows.size(); begin += kOffloadRows) {
    const absl::Span<const size_t> block = rows.subspan(begin, kOffloadRows);
    if (!geometry.index_only) {
      absl::StatusOr<synthetic::OffloadedRange> r = synthetic::OffloadRows(
          client, id, geometry, kv, 0, geometry.num_layers, block, keys, values);
      if (!r.ok()) return r.status();
      continue;
    }
    for (const int32_t l : layers) {
      absl::StatusOr<synthetic::OffloadedRange> r =
          synthetic::OffloadRows(client, id, geometry, kv, l, l + 1, block, keys, values);
      if (!r.ok()) return r.status();
    }
  }
  return absl::OkStatus();
}

std::string Stage(const char* name, const std::vector<Run>& runs, double Run::*field) {
  std::vector<double> v;
  for (const Run& r : runs) v.push_back(r.*field);
  return absl::StrCat("\"", name, "_p50_ms\": ", 1e3 * Percentile(v, 0.5), ", \"", name,
                      "_p95_ms\": ", 1e3 * Percentile(v, 0.95), ", \"", name,
                      "_p99_ms\": ", 1e3 * Percentile(v, 0.99));
}

}  // namespace

int RunEnvelope(const EnvelopeOptions& options) {
  ClientOptions client_options;
  client_options.target = options.server;
  client_options.default_deadline = absl::Minutes(10);
  absl::StatusOr<std::unique_ptr<Client>> connected = Client::Connect(client_options);
  if (!connected.ok()) return Fail("connect", connected.status());
  Client& client = **connected;

  const synthetic::SyntheticKv kv(synthetic::SevenBClassOptions(options.rows, options.seed));
  const std::vector<int32_t> layers = SourceLayers(options.layers);
  v1::OpenSessionRequest open = synthetic::OpenSessionRequestFor(kv);
  open.mutable_geometry()->mutable_scoring_layers()->Assign(layers.begin(), layers.end());
  open.mutable_geometry()->set_index_only(options.index_only);
  absl::StatusOr<v1::SessionInfo> session = client.OpenSession(open);
  if (!session.ok()) return Fail("OpenSession", session.status());
  const std::string id = session->session_id();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
  if (!geometry.ok()) return Fail("geometry", geometry.status());

  std::vector<size_t> all_rows(kv.positions().size());
  std::iota(all_rows.begin(), all_rows.end(), size_t{0});
  std::vector<uint16_t> keys, values;
  const auto load_start = Clock::now();
  if (absl::Status s = OffloadRowSet(client, id, *geometry, kv, layers, all_rows, &keys, &values);
      !s.ok()) {
    return Fail("Offload", s);
  }
  const double load_seconds = SecondsSince(load_start);
  absl::StatusOr<v1::SessionInfo> info = client.GetSession(id);
  if (!info.ok()) return Fail("GetSession", info.status());
  std::fprintf(stderr, "offloaded %lld rows in %.1f s; the session holds %.2f GiB\n",
               static_cast<long long>(info->rows_candidate()), load_seconds,
               static_cast<double>(info->bytes()) / (1 << 30));

  // Bytes each mode's scoring pass must read: every key of the scoring layers (exact), every
  // sketch and scale (fast first pass). Their streaming-read floors, measured here.
  const int32_t kv_heads = kv.options().num_kv_heads, dim = kv.options().head_dim;
  const double rows = static_cast<double>(options.rows);
  const double exact_bytes = rows * options.layers * kv_heads * dim * 2.0;
  const double sketch_bytes =
      rows * (static_cast<double>(scorer::SketchCodeBytes(options.layers, kv_heads, dim, 1)) +
              4.0 * options.layers * kv_heads);
  const std::map<std::string, double> floor_seconds = {
      {"exact", StreamReadSeconds(static_cast<size_t>(exact_bytes))},
      {"fast", StreamReadSeconds(static_cast<size_t>(sketch_bytes))}};

  // T tokens aimed at needle 0, for the scoring layers: [layer][q head][token][dim].
  const std::vector<float> every_layer =
      kv.Queries(0, options.tokens, 2.0f, 1.0f, options.seed + 1);
  const size_t per_layer = every_layer.size() / static_cast<size_t>(kv.options().num_layers);
  std::vector<float> queries;
  for (const int32_t l : layers) {
    queries.insert(queries.end(), every_layer.begin() + l * per_layer,
                   every_layer.begin() + (l + 1) * per_layer);
  }
  const std::string query_bytes = Float32Bytes(queries);
  const absl::flat_hash_set<int64_t> needle(kv.needles()[0].positions.begin(),
                                            kv.needles()[0].positions.end());

  for (const int64_t budget : options.budgets) {
    std::map<std::string, std::vector<int64_t>> first_chosen;  // mode -> chosen of its 1st run
    for (const std::string& mode : options.modes) {
      const int32_t timed = mode == "exact" ? options.exact_runs : options.runs;
      std::vector<Run> runs;
      int64_t rescored = 0, candidates = 0, chosen_rows = 0;
      std::string scored_as;
      for (int32_t run = -1; run < timed; ++run) {  // run -1 warms up
        v1::RepairRequest request;
        request.set_session_id(id);
        request.set_budget(static_cast<int32_t>(budget));
        request.set_return_mode(v1::RETURN_MODE_POSITIONS);
        request.set_scoring_mode(mode == "exact" ? v1::SCORING_MODE_EXACT : v1::SCORING_MODE_FAST);
        request.mutable_signal()->set_num_tokens(options.tokens);
        request.mutable_signal()->set_queries(query_bytes);
        const auto start = Clock::now();
        absl::StatusOr<RepairResult> result = client.Repair(request, *geometry);
        const double client_seconds = SecondsSince(start);
        if (!result.ok())
          return Fail(absl::StrCat("Repair ", mode, " K=", budget), result.status());
        const v1::RepairSummary& summary = result->summary;
        std::vector<int64_t> chosen(summary.chosen().begin(), summary.chosen().end());
        if (run >= 0) {
          runs.push_back({client_seconds, result->timings.total_seconds(),
                          summary.timings().score_seconds(), summary.timings().first_pass_seconds(),
                          summary.timings().rescore_seconds(), summary.timings().select_seconds()});
        }
        if (run == 0) first_chosen[mode] = chosen;
        rescored = summary.rescored();
        candidates = summary.candidates();
        chosen_rows = summary.chosen_size();
        scored_as = v1::ScoringMode_Name(summary.scoring_mode());
        // Promoted rows become candidates again (outside the timed region).
        std::vector<size_t> back;
        for (const int64_t p : chosen) {
          const int64_t row = kv.RowOf(p);
          if (row < 0) {
            return Fail("Repair", absl::InternalError(absl::StrCat("returned position ", p,
                                                                   " that was never offloaded")));
          }
          back.push_back(static_cast<size_t>(row));
        }
        if (absl::Status s = OffloadRowSet(client, id, *geometry, kv, layers, back, &keys, &values);
            !s.ok()) {
          return Fail("re-offload", s);
        }
      }
      const std::vector<int64_t>& mine = first_chosen[mode];
      int64_t needles_found = 0;
      for (const int64_t p : mine) needles_found += needle.contains(p);
      // recall@K of this mode's rows against the exact mode's, when the exact mode ran first.
      double recall = -1;
      if (auto exact = first_chosen.find("exact"); exact != first_chosen.end()) {
        const absl::flat_hash_set<int64_t> reference(exact->second.begin(), exact->second.end());
        int64_t common = 0;
        for (const int64_t p : mine) common += reference.contains(p);
        recall = reference.empty() ? 1.0 : static_cast<double>(common) / reference.size();
      }
      const double floor = floor_seconds.at(mode);
      std::vector<double> pass;
      for (const Run& r : runs) pass.push_back(mode == "fast" ? r.first_pass : r.score);
      std::printf(
          "{\"rows\": %lld, \"layers\": %d, \"index_only\": %s, \"tokens\": %d, \"K\": %lld, "
          "\"mode\": \"%s\", \"scored_as\": \"%s\", \"runs\": %zu, \"candidates\": %lld, "
          "\"chosen\": %lld, \"rescored\": %lld, %s, %s, %s, %s, %s, %s, "
          "\"recall_at_k\": %.4f, \"needle_recall\": %.4f, \"pass_bytes\": %.0f, "
          "\"floor_ms\": %.3f, \"pass_over_floor\": %.3f, \"session_bytes\": %llu, "
          "\"bytes_per_row\": %.1f, \"load_s\": %.1f}\n",
          static_cast<long long>(options.rows), options.layers,
          options.index_only ? "true" : "false", options.tokens, static_cast<long long>(budget),
          mode.c_str(), scored_as.c_str(), runs.size(), static_cast<long long>(candidates),
          static_cast<long long>(chosen_rows), static_cast<long long>(rescored),
          Stage("client", runs, &Run::client).c_str(), Stage("total", runs, &Run::total).c_str(),
          Stage("score", runs, &Run::score).c_str(),
          Stage("first_pass", runs, &Run::first_pass).c_str(),
          Stage("rescore", runs, &Run::rescore).c_str(),
          Stage("select", runs, &Run::select).c_str(), recall,
          needle.empty() ? 1.0 : static_cast<double>(needles_found) / needle.size(),
          mode == "fast" ? sketch_bytes : exact_bytes, 1e3 * floor,
          floor > 0 ? Percentile(pass, 0.5) / floor : 0.0,
          static_cast<unsigned long long>(info->bytes()), static_cast<double>(info->bytes()) / rows,
          load_seconds);
      std::fflush(stdout);
      std::fprintf(stderr, "K=%lld %s: %zu runs done\n", static_cast<long long>(budget),
                   mode.c_str(), runs.size());
    }
  }
  if (absl::StatusOr<v1::ReleaseResponse> r = client.ReleaseSession(id); !r.ok()) {
    return Fail("Release", r.status());
  }
  return 0;
}

}  // namespace kvtier::bench
