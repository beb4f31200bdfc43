#include "tools/synthetic/synthetic_client.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/time/clock.h"

namespace kvtier::synthetic {

absl::StatusOr<v1::SessionInfo> OpenSession(Client& client, const SyntheticKv& kv,
                                            uint32_t ttl_seconds) {
  return client.OpenSession(OpenSessionRequestFor(kv, ttl_seconds));
}

v1::OpenSessionRequest OpenSessionRequestFor(const SyntheticKv& kv, uint32_t ttl_seconds) {
  v1::OpenSessionRequest request;
  v1::Geometry* g = request.mutable_geometry();
  g->set_num_layers(kv.options().num_layers);
  g->set_num_q_heads(kv.options().num_q_heads);
  g->set_num_kv_heads(kv.options().num_kv_heads);
  g->set_head_dim(kv.options().head_dim);
  g->set_dtype(v1::DTYPE_FLOAT16);
  request.set_ttl_seconds(ttl_seconds);
  return request;
}

absl::StatusOr<OffloadedRange> OffloadRows(Client& client, const std::string& session_id,
                                           const RowGeometry& geometry, const SyntheticKv& kv,
                                           int32_t layer_begin, int32_t layer_end,
                                           absl::Span<const size_t> rows,
                                           std::vector<uint16_t>* keys,
                                           std::vector<uint16_t>* values) {
  OffloadedRange range;
  range.layer_begin = layer_begin;
  range.layer_end = layer_end;
  const absl::Time start = absl::Now();
  const size_t elements =
      static_cast<size_t>(layer_end - layer_begin) * rows.size() * kv.LayerRowElements();
  // An index-only session takes keys only.
  keys->resize(elements);
  values->resize(geometry.index_only ? 0 : elements);
  kv.FillKeys(layer_begin, layer_end, rows, absl::MakeSpan(*keys));
  if (!geometry.index_only) kv.FillValues(layer_begin, layer_end, rows, absl::MakeSpan(*values));
  std::vector<int64_t> positions(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) positions[i] = kv.positions()[rows[i]];
  OffloadBatch batch;
  batch.positions = positions;
  batch.layer_begin = layer_begin;
  batch.layer_end = layer_end;
  batch.keys = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(keys->data()),
                                   elements * sizeof(uint16_t));
  batch.values = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(values->data()),
                                     values->size() * sizeof(uint16_t));
  const absl::Time sent = absl::Now();
  absl::StatusOr<v1::OffloadResponse> response = client.Offload(session_id, geometry, batch);
  range.call_time = absl::Now() - sent;
  range.fill_time = sent - start;
  if (!response.ok()) return response.status();
  range.response = std::move(*response);
  return range;
}

absl::Status OffloadAllRows(Client& client, const std::string& session_id,
                            const RowGeometry& geometry, const SyntheticKv& kv,
                            int32_t layers_per_call,
                            absl::FunctionRef<void(const OffloadedRange&)> on_range) {
  std::vector<size_t> rows(kv.positions().size());
  std::iota(rows.begin(), rows.end(), size_t{0});
  std::vector<uint16_t> keys, values;
  const int32_t num_layers = kv.options().num_layers;
  for (int32_t lb = 0; lb < num_layers; lb += layers_per_call) {
    const int32_t le = std::min(num_layers, lb + layers_per_call);
    absl::StatusOr<OffloadedRange> range =
        OffloadRows(client, session_id, geometry, kv, lb, le, rows, &keys, &values);
    if (!range.ok()) return range.status();
    on_range(*range);
  }
  return absl::OkStatus();
}

}  // namespace kvtier::synthetic
