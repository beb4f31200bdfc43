// Loader for the golden repair cases in ../shared/reference/repair/ (README there): one
// folder per case with case.json and raw little-endian arrays.
#ifndef KVTIER_TOOLS_GOLDEN_GOLDEN_CASE_H_
#define KVTIER_TOOLS_GOLDEN_GOLDEN_CASE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::golden {

struct Case {
  std::string name;
  std::string selector;  // "repairkv" or "oldest" (as in case.json)
  int32_t num_layers = 0;
  int32_t num_q_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t signal_tokens = 0;
  int32_t num_rows = 0;
  int32_t budget = 0;
  int32_t burst_left = 0;
  int32_t burst_right = 0;
  std::vector<int64_t> positions;  // [row]
  std::vector<float> keys;         // [layer][kv_head][row][head_dim], as in the file
  std::vector<float> queries;      // [layer][q_head][token][head_dim]
  std::vector<float> lse_active;   // empty or [layer][q_head][token]
  std::vector<float> importance;   // empty or [row]
  std::vector<int64_t> expected_chosen;
  std::vector<int64_t> expected_sorted;
  std::vector<int64_t> needle_positions;
};

// Reads `dir`/case.json and the files it names. NOT_FOUND when a file is missing,
// DATA_LOSS when a file's size does not match the geometry, INVALID_ARGUMENT on bad JSON.
absl::StatusOr<Case> LoadCase(const std::string& dir);

// Folders under `reference_dir` that hold a case.json, sorted by name.
std::vector<std::string> ListCases(const std::string& reference_dir);

// Default reference folder: $KVTIER_REFERENCE_DIR if set, else the compiled-in
// <source>/../shared/reference/repair.
std::string DefaultReferenceDir();

}  // namespace kvtier::golden

#endif  // KVTIER_TOOLS_GOLDEN_GOLDEN_CASE_H_
