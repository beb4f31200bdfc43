#include "tools/case_player/case_player.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvtier::case_player {
namespace {

absl::Status Annotate(const absl::Status& status, absl::string_view step) {
  return absl::Status(status.code(), absl::StrCat(step, ": ", status.message()));
}

absl::StatusOr<v1::Selector> SelectorOf(const std::string& name) {
  if (name == "repairkv") return v1::SELECTOR_REPAIRKV;
  if (name == "oldest") return v1::SELECTOR_OLDEST;
  return absl::InvalidArgumentError(absl::StrCat("case selector \"", name, "\" is not known"));
}

absl::StatusOr<CaseOutcome> OffloadAndRepair(Client& client, const golden::Case& c,
                                             const std::string& session_id,
                                             const RowGeometry& geometry, v1::Selector selector,
                                             const CallOptions& call) {
  // Case keys are [layer][kv_head][row][head_dim]; the API wants [layer][row][kv_head][dim].
  const size_t layers = static_cast<size_t>(c.num_layers);
  const size_t heads = static_cast<size_t>(c.num_kv_heads);
  const size_t rows = static_cast<size_t>(c.num_rows);
  const size_t dim = static_cast<size_t>(c.head_dim);
  if (c.keys.size() != layers * heads * rows * dim || c.positions.size() != rows) {
    return absl::InvalidArgumentError("case keys/positions do not match its geometry");
  }
  std::vector<float> keys(c.keys.size());
  for (size_t l = 0; l < layers; ++l) {
    for (size_t h = 0; h < heads; ++h) {
      for (size_t r = 0; r < rows; ++r) {
        const float* src = &c.keys[((l * heads + h) * rows + r) * dim];
        std::memcpy(&keys[((l * rows + r) * heads + h) * dim], src, dim * sizeof(float));
      }
    }
  }
  const std::vector<uint8_t> values(keys.size() * sizeof(float), 0);
  OffloadBatch batch;
  batch.positions = c.positions;
  batch.layer_begin = 0;
  batch.layer_end = c.num_layers;
  batch.keys = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(keys.data()),
                                   keys.size() * sizeof(float));
  batch.values = values;
  batch.importance = c.importance;
  if (absl::StatusOr<v1::OffloadResponse> r = client.Offload(session_id, geometry, batch, call);
      !r.ok()) {
    return Annotate(r.status(), "Offload");
  }

  v1::RepairRequest request;
  request.set_session_id(session_id);
  request.set_budget(c.budget);
  request.set_burst_left(c.burst_left);
  request.set_burst_right(c.burst_right);
  request.set_selector(selector);
  request.set_return_mode(v1::RETURN_MODE_POSITIONS);
  v1::Signal* signal = request.mutable_signal();
  signal->set_num_tokens(c.signal_tokens);
  signal->set_query_dtype(v1::DTYPE_FLOAT32);
  signal->set_queries(Float32Bytes(c.queries));
  if (!c.lse_active.empty()) signal->set_lse_active(Float32Bytes(c.lse_active));
  absl::StatusOr<RepairResult> repair = client.Repair(request, geometry, call);
  if (!repair.ok()) return Annotate(repair.status(), "Repair");
  CaseOutcome outcome;
  outcome.chosen.assign(repair->summary.chosen().begin(), repair->summary.chosen().end());
  outcome.sorted.assign(repair->summary.sorted().begin(), repair->summary.sorted().end());
  return outcome;
}

}  // namespace

absl::StatusOr<CaseOutcome> PlayCase(Client& client, const golden::Case& c,
                                     const CallOptions& call) {
  absl::StatusOr<v1::Selector> selector = SelectorOf(c.selector);
  if (!selector.ok()) return selector.status();

  v1::OpenSessionRequest open;
  v1::Geometry* g = open.mutable_geometry();
  g->set_num_layers(c.num_layers);
  g->set_num_q_heads(c.num_q_heads);
  g->set_num_kv_heads(c.num_kv_heads);
  g->set_head_dim(c.head_dim);
  g->set_dtype(v1::DTYPE_FLOAT32);  // the expected output holds only for float32
  absl::StatusOr<v1::SessionInfo> session = client.OpenSession(open, call);
  if (!session.ok()) return Annotate(session.status(), "OpenSession");
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
  absl::StatusOr<CaseOutcome> outcome =
      geometry.ok() ? OffloadAndRepair(client, c, session->session_id(), *geometry, *selector, call)
                    : absl::StatusOr<CaseOutcome>(geometry.status());
  absl::StatusOr<v1::ReleaseResponse> released = client.ReleaseSession(session->session_id(), call);
  if (!outcome.ok()) return outcome;
  if (!released.ok()) return Annotate(released.status(), "Release");
  return outcome;
}

std::string OutcomeJson(const CaseOutcome& outcome) {
  return absl::StrCat("{\"chosen\": [", absl::StrJoin(outcome.chosen, ", "), "], \"sorted\": [",
                      absl::StrJoin(outcome.sorted, ", "), "]}");
}

}  // namespace kvtier::case_player
