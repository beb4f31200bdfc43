// What the operator commands (health, sessions, tiers, stats, watch) share: their JSON form,
// their tables, and how they report failures.
#ifndef KVTIER_TOOLS_KVTIERCTL_OUTPUT_H_
#define KVTIER_TOOLS_KVTIERCTL_OUTPUT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "kvtier/v1/kvtier.pb.h"
#include "kvtierctl/kvtierctl.pb.h"

namespace kvtier::ctl {

// `message` as one line of protobuf JSON: proto field names (session_id, not sessionId) and
// every field, zeros included (64-bit integers are JSON strings, as protobuf's JSON mapping
// says). Returns "{}" only if the message cannot be printed, which a valid message cannot.
std::string ToJson(const google::protobuf::Message& message);

// Prints ToJson(message) and a newline on stdout.
void PrintJson(const google::protobuf::Message& message);

// Prints "kvtierctl COMMAND: CODE: MESSAGE" (the gRPC code's name, then the server's message)
// on stderr and returns 1, the exit status of an RPC failure.
int RpcFailure(const std::string& command, const absl::Status& status);

// Prints "kvtierctl COMMAND: PROBLEM" and "usage: USAGE" on stderr and returns 2, the exit
// status of a usage error.
int UsageFailure(const std::string& command, const std::string& problem, const std::string& usage);

// 1536 -> "1.5 KiB"; below 1 KiB, "123 B".
std::string HumanBytes(uint64_t bytes);

// "4L 8Q 2KV d32 f16" (layers, query heads, KV heads, head_dim, dtype), with " index-only"
// for an index-only session.
std::string GeometrySummary(const v1::Geometry& geometry);

// Each tier of `stats` with its use in percent.
TierReport TierUseOf(const v1::StatsResponse& stats);

// A table of the tiers: name, bytes, capacity, use, segments; one line per tier after a header.
std::string TierTable(const google::protobuf::RepeatedPtrField<TierUse>& tiers);

// A table of the sessions, one line per session after a header, in the given order; at most
// `limit` lines (negative: all) and then "... N more".
std::string SessionTable(absl::Span<const v1::SessionInfo> sessions, int64_t limit = -1);

// "2024-05-01T12:00:00" in the local time zone; "-" for 0.
std::string LocalTime(int64_t unix_ms);

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_OUTPUT_H_
