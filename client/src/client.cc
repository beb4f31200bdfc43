// kvtier::Client: typed calls over the generated stubs. Each call builds its own
// grpc::ClientContext, so one Client serves many threads.
#include "kvtier/client.h"

#include <grpcpp/grpcpp.h>

#include <bit>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/src/offload_chunker.h"
#include "client/src/payload_assembler.h"
#include "client/src/retry.h"
#include "client/src/status_convert.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier {

using client_internal::FromGrpcStatus;
using client_internal::RetryUnavailable;

int32_t DTypeBytes(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT16:
    case v1::DTYPE_BFLOAT16:
      return 2;
    case v1::DTYPE_FLOAT32:
      return 4;
    default:
      return 0;
  }
}

std::string Float32Bytes(absl::Span<const float> values) {
  static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");
  std::string bytes(values.size() * sizeof(float), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

absl::StatusOr<RowGeometry> RowGeometry::FromProto(const v1::Geometry& geometry) {
  RowGeometry g;
  g.num_layers = geometry.num_layers();
  g.num_kv_heads = geometry.num_kv_heads();
  g.head_dim = geometry.head_dim();
  g.dtype_bytes = DTypeBytes(geometry.dtype());
  g.index_only = geometry.index_only();
  if (g.num_layers <= 0) return absl::InvalidArgumentError("geometry.num_layers: must be > 0");
  if (g.num_kv_heads <= 0) return absl::InvalidArgumentError("geometry.num_kv_heads: must be > 0");
  if (g.head_dim <= 0) return absl::InvalidArgumentError("geometry.head_dim: must be > 0");
  if (g.dtype_bytes == 0)
    return absl::InvalidArgumentError("geometry.dtype: unspecified or unknown");
  return g;
}

std::string NormalizeTarget(const std::string& target) {
  constexpr absl::string_view kUnix = "unix://";
  if (absl::StartsWith(target, kUnix) && target.size() > kUnix.size() &&
      target[kUnix.size()] != '/') {
    // "unix://rel/path": gRPC would read "rel" as an authority; "unix:rel/path" is relative.
    return absl::StrCat("unix:", target.substr(kUnix.size()));
  }
  if (absl::StartsWith(target, "/")) return absl::StrCat("unix:", target);
  return target;
}

class Client::Impl {
 public:
  explicit Impl(std::shared_ptr<grpc::Channel> channel)
      : channel_(channel),
        stub_(v1::KvTier::NewStub(channel)),
        health_(grpc::health::v1::Health::NewStub(channel)) {}

  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::KvTier::Stub> stub_;
  const std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

namespace {

absl::Time Deadline(const ClientOptions& options, const CallOptions& call) {
  return absl::Now() +
         (call.deadline > absl::ZeroDuration() ? call.deadline : options.default_deadline);
}

// Runs a unary RPC `rpc(context, response)` with the client's retry policy.
template <typename Response, typename Rpc>
absl::StatusOr<Response> Unary(const ClientOptions& options, const CallOptions& call, Rpc rpc) {
  const absl::Time deadline = Deadline(options, call);
  Response response;
  absl::Status status = RetryUnavailable(options.retry, deadline, [&](bool*) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    response.Clear();
    return FromGrpcStatus(rpc(&context, &response));
  });
  if (!status.ok()) return status;
  return response;
}

const google::protobuf::RepeatedField<int64_t>& Order(const v1::RepairSummary& s) {
  return s.chosen();
}
const google::protobuf::RepeatedField<int64_t>& Order(const v1::PromoteSummary& s) {
  return s.positions();
}

// Reads a `summary`, `chunk`*, `done` stream into `out` (a RepairResult or PromoteResult).
// Sets *may_retry = false once a message was received. INTERNAL when the stream breaks that
// shape.
template <typename Response, typename Result>
absl::Status CollectStream(grpc::ClientContext* context, grpc::ClientReader<Response>* reader,
                           const RowGeometry& geometry, Result* out, bool* may_retry) {
  enum class Expect { kSummary, kChunkOrDone, kNothing };
  Expect expect = Expect::kSummary;
  std::unique_ptr<client_internal::PayloadAssembler> assembler;
  absl::Status protocol;
  Response message;
  while (protocol.ok() && reader->Read(&message)) {
    *may_retry = false;
    out->bytes_received += message.ByteSizeLong();
    switch (message.kind_case()) {
      case Response::kSummary:
        if (expect != Expect::kSummary) {
          protocol = absl::InternalError("stream: summary is not the first message");
          break;
        }
        out->summary = std::move(*message.mutable_summary());
        out->payload.positions.assign(Order(out->summary).begin(), Order(out->summary).end());
        assembler = std::make_unique<client_internal::PayloadAssembler>(
            geometry, out->summary.payload_chunks(), out->summary.payload_bytes(), &out->payload);
        protocol = assembler->Start();
        expect = Expect::kChunkOrDone;
        break;
      case Response::kChunk:
        if (expect != Expect::kChunkOrDone) {
          protocol = absl::InternalError(expect == Expect::kSummary
                                             ? "stream: payload chunk before the summary"
                                             : "stream: payload chunk after done");
          break;
        }
        protocol = assembler->Add(message.chunk());
        break;
      case Response::kDone:
        if (expect != Expect::kChunkOrDone) {
          protocol =
              absl::InternalError(expect == Expect::kSummary ? "stream: done before the summary"
                                                             : "stream: done sent twice");
          break;
        }
        out->timings = std::move(*message.mutable_done()->mutable_timings());
        protocol = assembler->Finish();
        expect = Expect::kNothing;
        break;
      default:
        protocol = absl::InternalError("stream: message with no kind set");
        break;
    }
  }
  if (!protocol.ok()) {
    context->TryCancel();
    reader->Finish().IgnoreError();
    return protocol;
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;
  if (expect != Expect::kNothing) {
    return absl::InternalError(expect == Expect::kSummary ? "stream: ended with no summary"
                                                          : "stream: ended without done");
  }
  return absl::OkStatus();
}

absl::Status CheckPayloadGeometry(const RowGeometry& geometry, v1::ReturnMode mode) {
  if (mode == v1::RETURN_MODE_POSITIONS) return absl::OkStatus();
  if (geometry.num_layers <= 0 || geometry.num_kv_heads <= 0 || geometry.head_dim <= 0 ||
      geometry.dtype_bytes <= 0) {
    return absl::InvalidArgumentError(
        "geometry: the session's row geometry is needed to reassemble the payload");
  }
  return absl::OkStatus();
}

// Runs a Repair or Promote call: `open(context)` starts the server stream, which is collected
// into a `Result`. Retried (on UNAVAILABLE) only until the stream's first message arrives.
template <typename Result, typename Open>
absl::StatusOr<Result> CollectCall(const ClientOptions& options, const CallOptions& call,
                                   const RowGeometry& geometry, v1::ReturnMode mode, Open open) {
  if (absl::Status s = CheckPayloadGeometry(geometry, mode); !s.ok()) return s;
  const absl::Time deadline = Deadline(options, call);
  Result result;
  absl::Status status = RetryUnavailable(options.retry, deadline, [&](bool* may_retry) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    result = Result();
    auto reader = open(&context);
    return CollectStream(&context, reader.get(), geometry, &result, may_retry);
  });
  if (!status.ok()) return status;
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("target: empty");
  if (options.default_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default_deadline: must be positive");
  }
  if (options.retry.max_attempts < 1) {
    return absl::InvalidArgumentError("retry.max_attempts: must be >= 1");
  }
  if (options.retry.initial_backoff < absl::ZeroDuration() ||
      options.retry.max_backoff < options.retry.initial_backoff) {
    return absl::InvalidArgumentError("retry: need 0 <= initial_backoff <= max_backoff");
  }
  if (options.retry.jitter < 0 || options.retry.jitter >= 1) {
    return absl::InvalidArgumentError("retry.jitter: must be in [0, 1)");
  }
  if (options.offload_chunk_bytes == 0) {
    return absl::InvalidArgumentError("offload_chunk_bytes: must be positive");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError("max_message_bytes: must be positive");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      NormalizeTarget(options.target), grpc::InsecureChannelCredentials(), args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("target: cannot use ", options.target));
  }
  return std::unique_ptr<Client>(new Client(options, std::make_unique<Impl>(channel)));
}

Client::Client(const ClientOptions& options, std::unique_ptr<Impl> impl)
    : options_(options), impl_(std::move(impl)) {}

Client::~Client() = default;

absl::Status Client::Health(const std::string& service, const CallOptions& call) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  absl::StatusOr<grpc::health::v1::HealthCheckResponse> response =
      Unary<grpc::health::v1::HealthCheckResponse>(
          options_, call, [&](grpc::ClientContext* context, auto* out) {
            return impl_->health_->Check(context, request, out);
          });
  if (!response.ok()) return response.status();
  if (response->status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(
        "health: ", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response->status())));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SessionInfo> Client::OpenSession(const v1::OpenSessionRequest& request,
                                                    const CallOptions& call) {
  absl::StatusOr<v1::OpenSessionResponse> response =
      Unary<v1::OpenSessionResponse>(options_, call, [&](grpc::ClientContext* context, auto* out) {
        return impl_->stub_->OpenSession(context, request, out);
      });
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_session());
}

namespace {

// Sends one Offload client stream per attempt, retrying the whole stream on UNAVAILABLE
// (re-offloading a position overwrites it, so a repeat is safe). `start` is called at the
// start of each attempt and returns a generator of the chunks to send (nullptr at the end).
template <typename Start>
absl::StatusOr<v1::OffloadResponse> SendOffloadStream(v1::KvTier::Stub* stub, absl::Time deadline,
                                                      const RetryPolicy& retry, Start start) {
  v1::OffloadResponse response;
  absl::Status status = RetryUnavailable(retry, deadline, [&](bool*) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    response.Clear();
    std::unique_ptr<grpc::ClientWriter<v1::OffloadChunk>> writer =
        stub->Offload(&context, &response);
    auto next = start();
    while (const v1::OffloadChunk* chunk = next()) {
      if (!writer->Write(*chunk)) break;  // the stream is broken; Finish says why
    }
    writer->WritesDone();
    return FromGrpcStatus(writer->Finish());
  });
  if (!status.ok()) return status;
  return response;
}

}  // namespace

absl::StatusOr<v1::OffloadResponse> Client::Offload(const std::string& session_id,
                                                    const RowGeometry& geometry,
                                                    const OffloadBatch& batch,
                                                    const CallOptions& call) {
  if (absl::Status valid = client_internal::ValidateBatch(geometry, batch); !valid.ok()) {
    return valid;
  }
  client_internal::OffloadChunker chunker(session_id, geometry, batch,
                                          options_.offload_chunk_bytes);
  v1::OffloadChunk chunk;
  return SendOffloadStream(impl_->stub_.get(), Deadline(options_, call), options_.retry, [&] {
    chunker.Rewind();
    return [&]() -> const v1::OffloadChunk* { return chunker.Next(&chunk) ? &chunk : nullptr; };
  });
}

absl::StatusOr<v1::OffloadResponse> Client::OffloadChunks(absl::Span<const v1::OffloadChunk> chunks,
                                                          const CallOptions& call) {
  return SendOffloadStream(impl_->stub_.get(), Deadline(options_, call), options_.retry, [&] {
    return [&, next = size_t{0}]() mutable -> const v1::OffloadChunk* {
      return next < chunks.size() ? &chunks[next++] : nullptr;
    };
  });
}

absl::StatusOr<RepairResult> Client::Repair(const v1::RepairRequest& request,
                                            const RowGeometry& geometry, const CallOptions& call) {
  return CollectCall<RepairResult>(
      options_, call, geometry, request.return_mode(),
      [&](grpc::ClientContext* context) { return impl_->stub_->Repair(context, request); });
}

absl::StatusOr<PromoteResult> Client::Promote(const v1::PromoteRequest& request,
                                              const RowGeometry& geometry,
                                              const CallOptions& call) {
  return CollectCall<PromoteResult>(
      options_, call, geometry, request.return_mode(),
      [&](grpc::ClientContext* context) { return impl_->stub_->Promote(context, request); });
}

absl::StatusOr<v1::ReleaseResponse> Client::Release(const v1::ReleaseRequest& request,
                                                    const CallOptions& call) {
  return Unary<v1::ReleaseResponse>(options_, call, [&](grpc::ClientContext* context, auto* out) {
    return impl_->stub_->Release(context, request, out);
  });
}

absl::StatusOr<v1::ReleaseResponse> Client::ReleaseRows(const std::string& session_id,
                                                        absl::Span<const int64_t> positions,
                                                        const CallOptions& call) {
  v1::ReleaseRequest request;
  request.set_session_id(session_id);
  request.mutable_positions()->Add(positions.begin(), positions.end());
  return Release(request, call);
}

absl::StatusOr<v1::ReleaseResponse> Client::ReleaseSession(const std::string& session_id,
                                                           const CallOptions& call) {
  v1::ReleaseRequest request;
  request.set_session_id(session_id);
  request.set_whole_session(true);
  return Release(request, call);
}

absl::StatusOr<v1::BeginPauseResponse> Client::BeginPause(const std::string& session_id,
                                                          const CallOptions& call) {
  v1::BeginPauseRequest request;
  request.set_session_id(session_id);
  return Unary<v1::BeginPauseResponse>(options_, call,
                                       [&](grpc::ClientContext* context, auto* out) {
                                         return impl_->stub_->BeginPause(context, request, out);
                                       });
}

absl::StatusOr<v1::SessionInfo> Client::GetSession(const std::string& session_id,
                                                   const CallOptions& call) {
  v1::GetSessionRequest request;
  request.set_session_id(session_id);
  return Unary<v1::SessionInfo>(options_, call, [&](grpc::ClientContext* context, auto* out) {
    return impl_->stub_->GetSession(context, request, out);
  });
}

absl::StatusOr<std::vector<v1::SessionInfo>> Client::ListSessions(const std::string& tenant,
                                                                  const CallOptions& call) {
  v1::ListSessionsRequest request;
  request.set_tenant(tenant);
  absl::StatusOr<v1::ListSessionsResponse> response =
      Unary<v1::ListSessionsResponse>(options_, call, [&](grpc::ClientContext* context, auto* out) {
        return impl_->stub_->ListSessions(context, request, out);
      });
  if (!response.ok()) return response.status();
  std::vector<v1::SessionInfo> sessions;
  sessions.reserve(static_cast<size_t>(response->sessions_size()));
  for (v1::SessionInfo& s : *response->mutable_sessions()) sessions.push_back(std::move(s));
  return sessions;
}

absl::StatusOr<v1::StatsResponse> Client::Stats(const CallOptions& call) {
  v1::StatsRequest request;
  return Unary<v1::StatsResponse>(options_, call, [&](grpc::ClientContext* context, auto* out) {
    return impl_->stub_->Stats(context, request, out);
  });
}

}  // namespace kvtier
