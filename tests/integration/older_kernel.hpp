// A kernel older than the running one, as one process sees it: a seccomp
// filter answers the calls that would find the named features as a kernel
// without them does (ENOPROTOOPT for a socket option it does not know, ENOSYS
// for Landlock, EINVAL for an ioctl it does not have). Everything else runs
// on the real kernel. The brokers started with
// SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD=1 use it, and so does
// `integration_tests --as-older-kernel FEATURES PROGRAM [ARG...]`.
#pragma once

#include <string>

namespace sbtest {

enum OlderKernelFeature : unsigned {
  kWithoutPeerPidfd = 1U << 0,   // SO_PEERPIDFD, Linux 6.5
  kWithoutPeerGroups = 1U << 1,  // SO_PEERGROUPS, Linux 4.13
  kWithoutPassRights = 1U << 2,  // SO_PASSRIGHTS, Linux 6.16
  kWithoutLandlock = 1U << 3,    // every Landlock call, as a kernel built without it
  kWithoutNotifAddfd = 1U << 4,  // SECCOMP_IOCTL_NOTIF_ADDFD, Linux 5.9
};

// "peer_pidfd,landlock" -> the bits; 0 and *error set for an unknown name.
[[nodiscard]] unsigned parse_older_kernel_features(const std::string& names, std::string* error);

// Installs the filter on the calling thread. Root may do so without
// no_new_privs (`keep_privileges`), which would change what a later exec
// grants; others get no_new_privs. False (with *error) on failure.
[[nodiscard]] bool hide_kernel_features(unsigned features, bool keep_privileges, std::string* error);

// `--as-older-kernel FEATURES PROGRAM [ARG...]`: hides FEATURES, then execs PROGRAM.
int as_older_kernel(int argc, char** argv);

}  // namespace sbtest
