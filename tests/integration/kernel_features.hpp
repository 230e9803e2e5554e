// Kernel features, asked of the running kernel, for the tests whose
// expectations depend on them: README's kernel table says what the broker
// does without each.
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

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

// The running kernel's Landlock ABI version; 0 when Landlock cannot be used.
inline int kernel_landlock_abi() {
  constexpr unsigned kCreateRulesetVersion = 1U << 0;  // LANDLOCK_CREATE_RULESET_VERSION
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

// Whether the brokers this test starts find their callers by pid: the kernel
// has no SO_PEERPIDFD, or the harness hides it from them
// (SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD=1).
inline bool brokers_find_callers_by_pid() {
  const char* emulated = std::getenv("SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD");
  return (emulated != nullptr && std::string(emulated) == "1") || !kernel_has_peer_pidfd();
}

}  // namespace sbtest
