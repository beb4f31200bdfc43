#include "tests/integration_util.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::testing {

synthetic::SyntheticOptions SmallOptions(int64_t rows, uint64_t seed) {
  synthetic::SyntheticOptions o;
  o.num_layers = 4;
  o.num_q_heads = 8;
  o.num_kv_heads = 2;
  o.head_dim = 32;
  o.num_rows = rows;
  o.num_needles = 3;
  o.needle_min_rows = 8;
  o.needle_max_rows = 12;
  o.seed = seed;
  return o;
}

std::unique_ptr<Client> MakeClient(const std::string& target, size_t offload_chunk_bytes) {
  ClientOptions options;
  options.target = target;
  options.default_deadline = absl::Seconds(120);
  options.retry.initial_backoff = absl::Milliseconds(20);
  if (offload_chunk_bytes > 0) options.offload_chunk_bytes = offload_chunk_bytes;
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  return client.ok() ? std::move(*client) : nullptr;
}

namespace {

absl::StatusOr<TestSession> ToTestSession(const absl::StatusOr<v1::SessionInfo>& info) {
  if (!info.ok()) return info.status();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(info->geometry());
  if (!geometry.ok()) return geometry.status();
  return TestSession{info->session_id(), *geometry, *info};
}

}  // namespace

absl::StatusOr<TestSession> OpenSession(Client& client, const synthetic::SyntheticKv& kv,
                                        uint32_t ttl_seconds) {
  return ToTestSession(synthetic::OpenSession(client, kv, ttl_seconds));
}

absl::StatusOr<TestSession> OpenSession(Client& client, const synthetic::SyntheticKv& kv,
                                        const SessionOptions& options) {
  v1::OpenSessionRequest request = synthetic::OpenSessionRequestFor(kv);
  request.set_session_id(options.id);
  request.set_tenant(options.tenant);
  for (const int32_t l : options.scoring_layers) request.mutable_geometry()->add_scoring_layers(l);
  request.mutable_geometry()->set_index_only(options.index_only);
  return ToTestSession(client.OpenSession(request));
}

absl::Status OffloadAll(Client& client, const TestSession& session,
                        const synthetic::SyntheticKv& kv, int32_t layers_per_call) {
  return synthetic::OffloadAllRows(client, session.id, session.geometry, kv, layers_per_call);
}

ExpectedRows ExpectedPayload(const synthetic::SyntheticKv& kv,
                             absl::Span<const int64_t> positions) {
  std::vector<size_t> rows;
  for (int64_t p : positions) {
    if (kv.RowOf(p) < 0) {
      // A position the server should never return: bytes that match no payload, so the
      // caller's comparison fails instead of reading out of bounds.
      const std::string mismatch = absl::StrCat("position ", p, " is not in the synthetic store");
      return ExpectedRows{mismatch, mismatch};
    }
    rows.push_back(static_cast<size_t>(kv.RowOf(p)));
  }
  const size_t elements =
      static_cast<size_t>(kv.options().num_layers) * rows.size() * kv.LayerRowElements();
  std::vector<uint16_t> keys(elements), values(elements);
  kv.FillKeys(0, kv.options().num_layers, rows, absl::MakeSpan(keys));
  kv.FillValues(0, kv.options().num_layers, rows, absl::MakeSpan(values));
  ExpectedRows out;
  out.keys.assign(reinterpret_cast<const char*>(keys.data()), elements * sizeof(uint16_t));
  out.values.assign(reinterpret_cast<const char*>(values.data()), elements * sizeof(uint16_t));
  return out;
}

v1::RepairRequest NeedleRepair(const synthetic::SyntheticKv& kv, const std::string& session_id,
                               int32_t needle, int32_t budget, int32_t num_tokens,
                               v1::ReturnMode mode) {
  v1::RepairRequest request;
  request.set_session_id(session_id);
  request.set_budget(budget);
  request.set_selector(v1::SELECTOR_REPAIRKV);
  request.set_return_mode(mode);
  v1::Signal* signal = request.mutable_signal();
  signal->set_num_tokens(num_tokens);
  signal->set_query_dtype(v1::DTYPE_FLOAT32);
  const std::vector<float> q =
      kv.Queries(needle, num_tokens, 2.0f, 1.0f, static_cast<uint64_t>(needle) + 100);
  signal->mutable_queries()->assign(reinterpret_cast<const char*>(q.data()),
                                    q.size() * sizeof(float));
  return request;
}

bool Contains(absl::Span<const int64_t> positions, absl::Span<const int64_t> needle) {
  absl::flat_hash_set<int64_t> set(positions.begin(), positions.end());
  return std::all_of(needle.begin(), needle.end(), [&](int64_t p) { return set.contains(p); });
}

std::string RunCommand(const std::string& command, int* exit_code) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *exit_code = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace kvtier::testing
