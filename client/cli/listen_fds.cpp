#include "listen_fds.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <string_view>

extern char** environ;

namespace sockbroker::cli {

Handoff::Handoff(const std::vector<Grant>& grants) : scratch(grants.size(), -1) {
  fds.reserve(grants.size());
  for (const auto& grant : grants) fds.push_back(grant.fd.get());
}

Status place_descriptors(Handoff& handoff) {
  const int n = static_cast<int>(handoff.fds.size());
  for (std::size_t i = 0; i < handoff.fds.size(); ++i) {
    handoff.scratch[i] = ::fcntl(handoff.fds[i], F_DUPFD_CLOEXEC, kListenFdsStart + n);
    if (handoff.scratch[i] < 0) return errno_error("fcntl(F_DUPFD_CLOEXEC)");
  }
  for (int i = 0; i < n; ++i) {
    // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec,
    // and the copies above the range close there.
    if (::dup2(handoff.scratch[static_cast<std::size_t>(i)], kListenFdsStart + i) < 0) return errno_error("dup2");
  }
  return Ok{};
}

ListenEnvironment::ListenEnvironment(const std::vector<Grant>& grants) {
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    if (variable.starts_with("LISTEN_PID=") || variable.starts_with("LISTEN_FDS=") ||
        variable.starts_with("LISTEN_FDNAMES=")) {
      continue;
    }
    envp_.push_back(*entry);
  }
  if (!grants.empty()) {
    std::string names;
    for (const auto& grant : grants) names += (names.empty() ? "" : ":") + grant.name;
    added_.push_back("LISTEN_FDS=" + std::to_string(grants.size()));
    added_.push_back("LISTEN_FDNAMES=" + names);
    for (auto& variable : added_) envp_.push_back(variable.data());
    envp_.push_back(listen_pid_.data());
  }
  envp_.push_back(nullptr);
}

void ListenEnvironment::set_pid(pid_t pid) {
  constexpr std::string_view kName = "LISTEN_PID=";
  char* out = std::copy(kName.begin(), kName.end(), listen_pid_.begin());
  // 32 bytes hold the name and any pid_t; the last one stays '\0'.
  *std::to_chars(out, listen_pid_.end() - 1, pid).ptr = '\0';
}

}  // namespace sockbroker::cli
