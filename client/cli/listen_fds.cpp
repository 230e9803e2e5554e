#include "listen_fds.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace sockbroker::cli {

Status place_descriptors(std::vector<Grant>& grants) {
  const int n = static_cast<int>(grants.size());
  for (auto& grant : grants) {
    int moved = ::fcntl(grant.fd.get(), F_DUPFD_CLOEXEC, kListenFdsStart + n);
    if (moved < 0) return errno_error("fcntl(F_DUPFD_CLOEXEC)");
    grant.fd.reset(moved);
  }
  for (int i = 0; i < n; ++i) {
    // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec.
    if (::dup2(grants[static_cast<std::size_t>(i)].fd.get(), kListenFdsStart + i) < 0) return errno_error("dup2");
  }
  return Ok{};
}

Status set_listen_environment(const std::vector<Grant>& grants, pid_t pid) {
  if (grants.empty()) {
    ::unsetenv("LISTEN_PID");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("LISTEN_FDNAMES");
    return Ok{};
  }
  std::string names;
  for (const auto& grant : grants) names += (names.empty() ? "" : ":") + grant.name;
  if (::setenv("LISTEN_PID", std::to_string(pid).c_str(), 1) != 0 ||
      ::setenv("LISTEN_FDS", std::to_string(grants.size()).c_str(), 1) != 0 ||
      ::setenv("LISTEN_FDNAMES", names.c_str(), 1) != 0) {
    return errno_error("setenv");
  }
  return Ok{};
}

}  // namespace sockbroker::cli
