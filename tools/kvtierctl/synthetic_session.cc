#include "tools/kvtierctl/synthetic_session.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::ctl {

absl::Status ReoffloadPositions(Client& client, const std::string& session_id,
                                const RowGeometry& geometry, const synthetic::SyntheticKv& kv,
                                absl::Span<const int64_t> positions) {
  if (positions.empty()) return absl::OkStatus();
  std::vector<size_t> rows;
  rows.reserve(positions.size());
  for (int64_t p : positions) {
    const int64_t row = kv.RowOf(p);
    if (row < 0) return absl::InvalidArgumentError(absl::StrCat("position ", p, " is not a row"));
    rows.push_back(static_cast<size_t>(row));
  }
  std::vector<uint16_t> keys, values;
  absl::StatusOr<synthetic::OffloadedRange> r = synthetic::OffloadRows(
      client, session_id, geometry, kv, 0, kv.options().num_layers, rows, &keys, &values);
  return r.status();
}

bool PayloadMatches(const synthetic::SyntheticKv& kv, const RowPayload& payload) {
  std::vector<size_t> rows;
  for (int64_t p : payload.positions) {
    const int64_t row = kv.RowOf(p);
    if (row < 0) return false;
    rows.push_back(static_cast<size_t>(row));
  }
  const size_t elements =
      static_cast<size_t>(kv.options().num_layers) * rows.size() * kv.LayerRowElements();
  std::vector<uint16_t> keys(elements), values(elements);
  kv.FillKeys(0, kv.options().num_layers, rows, absl::MakeSpan(keys));
  kv.FillValues(0, kv.options().num_layers, rows, absl::MakeSpan(values));
  const size_t bytes = elements * sizeof(uint16_t);
  return payload.keys.size() == bytes && payload.values.size() == bytes &&
         std::memcmp(payload.keys.data(), keys.data(), bytes) == 0 &&
         std::memcmp(payload.values.data(), values.data(), bytes) == 0;
}

std::string CompactRanges(absl::Span<const int64_t> sorted) {
  std::string out;
  size_t i = 0;
  while (i < sorted.size()) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    absl::StrAppend(&out, sorted[i]);
    if (j > i) absl::StrAppend(&out, "-", sorted[j]);
    i = j + 1;
  }
  return out;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return values[std::min(index, values.size() - 1)];
}

std::string P50P95Ms(const std::vector<double>& seconds, int decimals) {
  std::vector<double> ms;
  ms.reserve(seconds.size());
  for (const double s : seconds) ms.push_back(s * 1e3);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f / %.*f", decimals, Percentile(ms, 50), decimals,
                Percentile(ms, 95));
  return buf;
}

int ReportFailure(const char* command, const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "kvtierctl %s: %s: %s\n", command, what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace kvtier::ctl
