// Printing diagnostics the way compilers do, so editors and CI annotate the line.
#include "diagnostic.hpp"

#include <algorithm>

namespace sockbroker::policy {

std::string Diagnostic::format() const {
  std::string out;
  if (!where.file.empty()) {
    out += where.file;
    // Line 0 means the problem concerns the whole file (it could not be read,
    // a directory had no policy in it): "FILE:0:0" would send editors nowhere.
    if (where.line > 0) {
      out += ':' + std::to_string(where.line) + ':' + std::to_string(where.column);
    }
    out += ": ";
  }
  out += severity == Severity::error ? "error: " : "warning: ";
  out += message;
  return out;
}

bool has_errors(const std::vector<Diagnostic>& diagnostics) noexcept {
  return std::any_of(diagnostics.begin(), diagnostics.end(),
                     [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::error; });
}

}  // namespace sockbroker::policy
