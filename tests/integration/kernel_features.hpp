// Kernel features some tests need, asked of the running kernel. A test that
// needs one skips without it (or fails where SOCKBROKER_TEST_REQUIRE_ROOT=1
// forbids skipping), naming the feature, since what it checks is then not
// what the broker does: README's kernel table says what it does instead.
#pragma once

#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "require_root.hpp"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace sbtest {

// Linux >= 6.5: a pidfd of the peer of a Unix socket.
inline bool kernel_has_peer_pidfd() {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return false;
  int pidfd = -1;
  socklen_t length = sizeof pidfd;
  const bool has = ::getsockopt(pair[0], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &length) == 0;
  if (has) ::close(pidfd);
  ::close(pair[0]);
  ::close(pair[1]);
  return has;
}

inline std::string kernel_release() {
  struct utsname name {};
  return ::uname(&name) == 0 ? name.release : "unknown";
}

}  // namespace sbtest

// For tests of what the broker does knowing who its caller is: unit,
// executable and cgroup rules, reuse_port groups, max_grants and holders.
// Without SO_PEERPIDFD the broker matches none of those rules and refuses
// those sockets, by design.
#define SBTEST_REQUIRE_PEER_PIDFD()                                                                          \
  do {                                                                                                       \
    if (!sbtest::kernel_has_peer_pidfd()) {                                                                  \
      SBTEST_SKIP_OR_FAIL("needs SO_PEERPIDFD (Linux >= 6.5; this kernel is "                                \
                          << sbtest::kernel_release()                                                        \
                          << "): without it the broker knows no caller's unit, executable or cgroup and "   \
                             "refuses reuse_port and max_grants sockets (README, kernel features)");        \
    }                                                                                                        \
  } while (0)
