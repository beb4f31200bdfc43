#include "tools/replay/trace.h"

#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "tools/replay/json.h"

namespace kvtier::replay {
namespace {

using google::protobuf::Value;

const Value* Field(const google::protobuf::Struct& object, const char* name, Value::KindCase kind) {
  const auto it = object.fields().find(name);
  if (it == object.fields().end() || it->second.kind_case() != kind) return nullptr;
  return &it->second;
}

}  // namespace

absl::StatusOr<Trace> ParseTrace(std::string_view json, std::string_view what_view) {
  const std::string what(what_view);
  absl::StatusOr<Value> doc = ParseJson(json, what);
  if (!doc.ok()) return doc.status();
  if (doc->kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON object"));
  }
  const google::protobuf::Struct& root = doc->struct_value();
  const Value* workload = Field(root, "workload", Value::kStringValue);
  const Value* quant = Field(root, "quant", Value::kStringValue);
  const Value* pages = Field(root, "pages", Value::kListValue);
  const Value* accesses = Field(root, "accesses", Value::kListValue);
  if (workload == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"workload\" must be a string"));
  }
  if (quant == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"quant\" must be a string"));
  }
  if (pages == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"pages\" must be an array"));
  }
  if (accesses == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"accesses\" must be an array"));
  }
  absl::StatusOr<double> penalty = DecodePenaltyMs(quant->string_value());
  if (!penalty.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"quant\": ", penalty.status().message()));
  }

  Trace trace;
  trace.workload = workload->string_value();
  trace.quantization_scheme = quant->string_value();
  absl::flat_hash_map<int64_t, uint32_t> position;
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  const auto& page_rows = pages->list_value().values();
  if (page_rows.size() > kMaxInt) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": too many pages"));
  }
  for (int i = 0; i < page_rows.size(); ++i) {
    const Value& row = page_rows[i];
    int64_t index = 0;
    int64_t size = 0;
    if (row.kind_case() != Value::kListValue || row.list_value().values_size() != 6 ||
        !JsonInteger(row.list_value().values(0), 0, kMaxInt, index) ||
        !JsonInteger(row.list_value().values(5), 1, int64_t{1} << 50, size)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": pages[", i,
          "] must be [index, layer, token_start, token_end, head_group, size_bytes] with a "
          "non-negative integer index and a positive integer size_bytes"));
    }
    if (!position.emplace(index, static_cast<uint32_t>(trace.pages.size())).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": pages[", i, "]: page index ", index, " appears twice"));
    }
    trace.pages.push_back(ReplayPage{absl::StrCat("page-", index), size, *penalty});
  }
  const auto& access_list = accesses->list_value().values();
  trace.accesses.reserve(access_list.size());
  for (int i = 0; i < access_list.size(); ++i) {
    int64_t index = 0;
    if (!JsonInteger(access_list[i], 0, kMaxInt, index)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": accesses[", i, "] must be a non-negative integer page index"));
    }
    const auto it = position.find(index);
    if (it == position.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": accesses[", i, "] names page ", index, ", which is not in pages"));
    }
    trace.accesses.push_back(it->second);
  }
  return trace;
}

absl::StatusOr<Trace> LoadTraceFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  return ParseTrace(*text, path);
}

}  // namespace kvtier::replay
