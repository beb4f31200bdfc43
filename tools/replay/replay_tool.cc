#include "tools/replay/replay_tool.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tools/replay/cost_model.h"
#include "tools/replay/json.h"
#include "tools/replay/replay_engine.h"
#include "tools/replay/report.h"
#include "tools/replay/trace.h"

namespace kvtier::replay {
namespace {

using google::protobuf::Value;

absl::StatusOr<std::vector<TierSpec>> LoadTierFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Value> doc = ParseJson(*text, path);
  if (!doc.ok()) return doc.status();
  const auto bad = [&](int i) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": entry ", i,
                     " must be [name, capacity_bytes, read_ms, write_ms, bandwidth_bytes_per_ms]"));
  };
  if (doc->kind_case() != Value::kListValue || doc->list_value().values_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a non-empty array of tiers"));
  }
  std::vector<TierSpec> tiers;
  for (int i = 0; i < doc->list_value().values_size(); ++i) {
    const Value& entry = doc->list_value().values(i);
    if (entry.kind_case() != Value::kListValue || entry.list_value().values_size() != 5) {
      return bad(i);
    }
    const auto& f = entry.list_value().values();
    TierSpec t;
    if (f[0].kind_case() != Value::kStringValue || f[0].string_value().empty() ||
        !JsonInteger(f[1], 0, int64_t{1} << 60, t.capacity_bytes)) {
      return bad(i);
    }
    t.name = f[0].string_value();
    for (int k = 2; k < 5; ++k) {
      if (f[k].kind_case() != Value::kNumberValue || f[k].number_value() < 0) return bad(i);
    }
    t.read_latency_ms = f[2].number_value();
    t.write_latency_ms = f[3].number_value();
    t.bandwidth_bytes_per_ms = f[4].number_value();
    tiers.push_back(std::move(t));
  }
  return tiers;
}

}  // namespace

absl::StatusOr<policy::PolicyParams> ParsePolicyParams(const std::string& text) {
  policy::PolicyParams params;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    double value = 0;
    if (kv.size() != 2 || kv[0].empty() || !absl::SimpleAtod(kv[1], &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--policy_params: bad item '", item, "'; expected key=number"));
    }
    params.emplace_back(std::string(kv[0]), value);
  }
  return params;
}

absl::StatusOr<ReplayOutput> RunReplayRequest(const ReplayRequest& request) {
  if (request.format != "json" && request.format != "csv") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format: unknown format '", request.format, "'; expected json or csv"));
  }
  if (request.prefetch != "auto" && request.prefetch != "on" && request.prefetch != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--prefetch: expected auto, on or off, got '", request.prefetch, "'"));
  }
  if (request.trace_path.empty()) return absl::InvalidArgumentError("--trace is required");
  if (request.policy.empty()) return absl::InvalidArgumentError("--policy is required");
  if (!request.tiers.empty() && !request.tiers_file.empty()) {
    return absl::InvalidArgumentError("give --tiers or --tiers_file, not both");
  }
  const bool custom_tiers = !request.tiers.empty() || !request.tiers_file.empty();
  if (request.scenario.empty() && !custom_tiers) {
    return absl::InvalidArgumentError("--scenario is required unless --tiers or --tiers_file");
  }

  Scenario scenario;
  scenario.name = "custom";
  if (!request.scenario.empty()) {
    absl::StatusOr<Scenario> found = FindScenario(request.scenario);
    if (!found.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--scenario: ", found.status().message()));
    }
    scenario = *std::move(found);
  }
  if (!request.tiers.empty()) {
    absl::StatusOr<std::vector<TierSpec>> tiers = ParseTierList(request.tiers);
    if (!tiers.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--", tiers.status().message()));
    }
    scenario.tiers = *std::move(tiers);
  } else if (!request.tiers_file.empty()) {
    absl::StatusOr<std::vector<TierSpec>> tiers = LoadTierFile(request.tiers_file);
    if (!tiers.ok()) return tiers.status();
    scenario.tiers = *std::move(tiers);
  }
  if (request.prefetch != "auto") scenario.prefetch_enabled = request.prefetch == "on";

  absl::StatusOr<policy::PolicyParams> params = ParsePolicyParams(request.policy_params);
  if (!params.ok()) return params.status();
  absl::StatusOr<std::unique_ptr<policy::PlacementPolicy>> policy =
      policy::MakePlacementPolicy(request.policy, *params);
  if (!policy.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--policy: ", policy.status().message()));
  }

  absl::StatusOr<Trace> trace = LoadTraceFile(request.trace_path);
  if (!trace.ok()) return trace.status();

  ReplayOptions options;
  options.prefetch_enabled = scenario.prefetch_enabled;
  options.record_events = request.want_events;
  absl::StatusOr<ReplayResult> result =
      Replay(scenario.tiers, trace->pages, trace->accesses, **policy, options);
  if (!result.ok()) return result.status();

  const RunLabel label{scenario.name, trace->workload, request.policy, trace->quantization_scheme,
                       scenario.prefetch_enabled};
  ReplayOutput out;
  if (request.format == "json") {
    out.report = ResultJson(label, result->metrics, scenario.tiers) + "\n";
  } else {
    out.report = absl::StrCat(ResultCsvHeader(), "\n",
                              ResultCsvRow(label, result->metrics, scenario.tiers), "\n");
  }
  if (request.want_events) out.events = EventLogJsonl(*result, scenario.tiers, trace->pages);
  return out;
}

}  // namespace kvtier::replay
