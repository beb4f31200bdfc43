// Small JSON helpers for kvtier-replay: parsing with protobuf's JSON util into a
// google::protobuf::Value, and writing numbers and strings the way the reference
// simulator (Python's json module) writes them, so outputs can be diffed byte for byte.
#ifndef KVTIER_TOOLS_REPLAY_JSON_H_
#define KVTIER_TOOLS_REPLAY_JSON_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"

namespace kvtier::replay {

// Parses any JSON document. INVALID_ARGUMENT with protobuf's message (prefixed by
// `what`, e.g. a file name) on malformed input.
absl::StatusOr<google::protobuf::Value> ParseJson(std::string_view text, std::string_view what);

// Reads a whole file. NOT_FOUND when it cannot be opened.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

// The shortest decimal that round-trips, formatted like Python's repr(float):
// "0.0", "3.116", "0.32308964843750043", "1e-05", "1e+16".
std::string FormatDouble(double value);

// `text` as a JSON string literal (quotes and escapes included).
std::string QuoteJson(std::string_view text);

// Reads an integer-valued JSON number into `out`. False when `value` is not a number, not
// integral, or outside [min, max].
bool JsonInteger(const google::protobuf::Value& value, int64_t min, int64_t max, int64_t& out);

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_JSON_H_
