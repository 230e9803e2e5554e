// The kernel features `sockbroker doctor` looks for: what each gives the
// broker or `sockbroker run`, what a kernel without it gets instead, and how
// much that matters. One table, in doctor_features.cpp.
#pragma once

#include <string>
#include <vector>

#include "doctor_checks.hpp"

namespace sockbroker::cli {

struct FeatureFinding {
  std::string name;   // "SO_PEERPIDFD"
  std::string since;  // "Linux 6.5"
  bool present = false;
  // ok when present; when absent: missing (what replaces it is as safe),
  // warn (a protection is weaker), bad (the broker cannot work).
  Verdict verdict = Verdict::missing;
  std::string gives;       // what it gives, one line
  std::string assessment;  // what this kernel gets: the feature, or what replaces it and why it is absent
};

// Asks the running kernel, as the calling process sees it (a container's
// seccomp profile can hide a feature the kernel has; that is then said).
[[nodiscard]] std::vector<FeatureFinding> probe_features();

}  // namespace sockbroker::cli
