// Reading and validating policy files: TOML (toml++) -> Policy + diagnostics.
// Shared by sockbrokerd (start-up, reload) and `sockbroker check`.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "diagnostic.hpp"
#include "policy.hpp"

namespace sockbroker::policy {

inline constexpr const char* kDefaultPolicyFile = "/etc/sockbroker/policy.toml";
inline constexpr const char* kDefaultPolicyDir = "/etc/sockbroker/policy.d";

struct LoadOptions {
  bool strict = false;  // warnings count as errors
  // Inspect the file system: the directories of Unix socket paths must be
  // ones only root can change (unix_path_safety.hpp). Off only where the text
  // is not a real policy (the fuzzer).
  bool check_file_system = true;
};

struct LoadResult {
  std::optional<Policy> policy;  // set when there are no errors
  std::vector<Diagnostic> diagnostics;  // errors and warnings, in file order
};

// paths: files, or directories meaning their *.toml in lexical order. Empty
// means the defaults: kDefaultPolicyFile, then kDefaultPolicyDir if it exists.
// A missing file given explicitly is an error.
[[nodiscard]] LoadResult load_policy(const std::vector<std::string>& paths, const LoadOptions& options = {});

// One document already in memory (tests, fuzzing). file_name is used in diagnostics.
[[nodiscard]] LoadResult load_policy_text(std::string_view text, std::string_view file_name,
                                          const LoadOptions& options = {});

}  // namespace sockbroker::policy
