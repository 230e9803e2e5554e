// A problem found in a policy file, printed as "FILE:LINE:COL: error: message"
// (the form compilers use, so editors can jump to it).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "policy.hpp"

namespace sockbroker::policy {

struct Diagnostic {
  enum class Severity { error, warning };
  Severity severity = Severity::error;
  SourcePos where;
  std::string message;

  [[nodiscard]] std::string format() const;  // "FILE:LINE:COL: error: message"
};

[[nodiscard]] bool has_errors(const std::vector<Diagnostic>& diagnostics) noexcept;

}  // namespace sockbroker::policy
