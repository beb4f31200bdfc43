#include "tools/golden/golden_case.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "golden_case.pb.h"
#include "google/protobuf/util/json_util.h"

namespace kvtier::golden {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path.string()));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path.string()));
  return bytes;
}

// Reads `count` little-endian elements of T from dir/name into out. An empty name with
// `optional` set leaves out empty.
template <typename T>
absl::Status ReadArray(const fs::path& dir, const std::string& name, const char* field,
                       int64_t count, bool optional, std::vector<T>& out) {
  static_assert(std::endian::native == std::endian::little, "golden files are little-endian");
  out.clear();
  if (name.empty()) {
    if (optional) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("case.json: files.", field, " is missing"));
  }
  absl::StatusOr<std::string> bytes = ReadFile(dir / name);
  if (!bytes.ok()) return bytes.status();
  const uint64_t expected = static_cast<uint64_t>(count) * sizeof(T);
  if (bytes->size() != expected) {
    return absl::DataLossError(absl::StrCat((dir / name).string(), " has ", bytes->size(),
                                            " bytes; the geometry needs ", expected));
  }
  out.resize(static_cast<size_t>(count));
  std::memcpy(out.data(), bytes->data(), bytes->size());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Case> LoadCase(const std::string& dir) {
  const fs::path root(dir);
  absl::StatusOr<std::string> json = ReadFile(root / "case.json");
  if (!json.ok()) return json.status();
  GoldenCaseJson message;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto parsed = google::protobuf::util::JsonStringToMessage(*json, &message, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat((root / "case.json").string(), ": ", parsed.ToString()));
  }

  Case c;
  c.name = message.name();
  c.selector = message.selector();
  c.num_layers = message.geometry().num_layers();
  c.num_q_heads = message.geometry().num_q_heads();
  c.num_kv_heads = message.geometry().num_kv_heads();
  c.head_dim = message.geometry().head_dim();
  c.signal_tokens = message.signal_tokens();
  c.num_rows = message.num_rows();
  c.budget = message.budget();
  c.burst_left = message.burst_left();
  c.burst_right = message.burst_right();
  for (int32_t v :
       {c.num_layers, c.num_q_heads, c.num_kv_heads, c.head_dim, c.signal_tokens, c.num_rows}) {
    if (v <= 0) {
      return absl::InvalidArgumentError(absl::StrCat((root / "case.json").string(),
                                                     ": geometry, signal_tokens and num_rows "
                                                     "must be positive"));
    }
  }
  c.expected_chosen.assign(message.expected().chosen().begin(), message.expected().chosen().end());
  c.expected_sorted.assign(message.expected().sorted().begin(), message.expected().sorted().end());
  c.needle_positions.assign(message.needle_positions().begin(), message.needle_positions().end());

  const int64_t rows = c.num_rows;
  const int64_t lht = int64_t{c.num_layers} * c.num_q_heads * c.signal_tokens;
  const GoldenFiles& files = message.files();
  absl::Status s = ReadArray(root, files.positions(), "positions", rows, false, c.positions);
  if (s.ok()) {
    s = ReadArray(root, files.keys(), "keys",
                  int64_t{c.num_layers} * c.num_kv_heads * rows * c.head_dim, false, c.keys);
  }
  if (s.ok()) s = ReadArray(root, files.queries(), "queries", lht * c.head_dim, false, c.queries);
  if (s.ok()) s = ReadArray(root, files.lse_active(), "lse_active", lht, true, c.lse_active);
  if (s.ok()) s = ReadArray(root, files.importance(), "importance", rows, true, c.importance);
  if (!s.ok()) return s;
  return c;
}

std::vector<std::string> ListCases(const std::string& reference_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(reference_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && fs::exists(it->path() / "case.json", ec)) {
      out.push_back(it->path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string DefaultReferenceDir() {
  if (const char* env = std::getenv("KVTIER_REFERENCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return KVTIER_DEFAULT_REFERENCE_DIR;
}

}  // namespace kvtier::golden
