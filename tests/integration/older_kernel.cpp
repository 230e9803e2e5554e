#include "older_kernel.hpp"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <sstream>

namespace sbtest {
namespace {

// include/uapi/asm-generic/socket.h: newer than some installed headers.
constexpr int kSoPeerGroups = 59;
constexpr int kSoPeerPidfd = 77;
constexpr int kSoPassRights = 83;

struct Named {
  const char* name;
  unsigned bit;
};
constexpr Named kNames[] = {{"peer_pidfd", kWithoutPeerPidfd},
                            {"peer_groups", kWithoutPeerGroups},
                            {"pass_rights", kWithoutPassRights},
                            {"landlock", kWithoutLandlock},
                            {"notif_addfd", kWithoutNotifAddfd}};

}  // namespace

unsigned parse_older_kernel_features(const std::string& names, std::string* error) {
  unsigned out = 0;
  std::stringstream in(names);
  for (std::string name; std::getline(in, name, ',');) {
    bool known = false;
    for (const auto& n : kNames) {
      if (name == n.name) {
        out |= n.bit;
        known = true;
      }
    }
    if (!known) {
      *error = "unknown feature '" + name + "' (peer_pidfd, peer_groups, pass_rights, landlock, notif_addfd)";
      return 0;
    }
  }
  return out;
}

bool hide_kernel_features(unsigned features, bool keep_privileges, std::string* error) {
  scmp_filter_ctx filter = ::seccomp_init(SCMP_ACT_ALLOW);
  bool ok = filter != nullptr && ::seccomp_attr_set(filter, SCMP_FLTATR_CTL_NNP, keep_privileges ? 0 : 1) == 0;
  auto socket_option = [&](unsigned bit, int syscall, int option) {
    if (ok && (features & bit) != 0) {
      ok = ::seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOPROTOOPT), syscall, 2, SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET),
                              SCMP_A2(SCMP_CMP_EQ, static_cast<scmp_datum_t>(option))) == 0;
    }
  };
  socket_option(kWithoutPeerPidfd, SCMP_SYS(getsockopt), kSoPeerPidfd);
  socket_option(kWithoutPeerGroups, SCMP_SYS(getsockopt), kSoPeerGroups);
  socket_option(kWithoutPassRights, SCMP_SYS(setsockopt), kSoPassRights);
  if (ok && (features & kWithoutLandlock) != 0) {
    for (int syscall : {SCMP_SYS(landlock_create_ruleset), SCMP_SYS(landlock_add_rule), SCMP_SYS(landlock_restrict_self)}) {
      ok = ok && ::seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOSYS), syscall, 0) == 0;
    }
  }
  if (ok && (features & kWithoutNotifAddfd) != 0) {
    // ioctl's request is an unsigned int: compare the low 32 bits only.
    ok = ::seccomp_rule_add(filter, SCMP_ACT_ERRNO(EINVAL), SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, SECCOMP_IOCTL_NOTIF_ADDFD)) == 0;
  }
  ok = ok && ::seccomp_load(filter) == 0;
  ::seccomp_release(filter);
  if (!ok) *error = "cannot install the filter that hides kernel features";
  return ok;
}

int as_older_kernel(int argc, char** argv) {
  if (argc < 4) {
    std::fputs("usage: integration_tests --as-older-kernel FEATURES PROGRAM [ARG...]\n", stderr);
    return 64;
  }
  std::string error;
  const unsigned features = parse_older_kernel_features(argv[2], &error);
  if (features == 0 || !hide_kernel_features(features, ::geteuid() == 0, &error)) {
    std::fprintf(stderr, "--as-older-kernel: %s\n", error.c_str());
    return 126;
  }
  ::execv(argv[3], argv + 3);
  std::perror("--as-older-kernel: execv");
  return 127;
}

}  // namespace sbtest
