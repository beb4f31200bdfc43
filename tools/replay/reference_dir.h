// Test-only: where the tier-policy reference data lives. The environment variable
// KVTIER_TIER_REFERENCE_DIR overrides the build's default
// (${PROJECT_SOURCE_DIR}/../shared/reference/tier_policies).
#ifndef KVTIER_TOOLS_REPLAY_REFERENCE_DIR_H_
#define KVTIER_TOOLS_REPLAY_REFERENCE_DIR_H_

#include <cstdlib>
#include <string>

namespace kvtier::replay {

inline std::string TierReferenceDir() {
  if (const char* env = std::getenv("KVTIER_TIER_REFERENCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return KVTIER_DEFAULT_TIER_REFERENCE_DIR;
}

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_REFERENCE_DIR_H_
