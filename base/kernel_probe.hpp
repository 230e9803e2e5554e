// What the running kernel offers that sockbroker uses where it can, each asked
// with a system call or two on a throwaway socket. The broker asks at start-up
// (to say how it will identify callers), `sockbroker doctor` to tell an
// operator which protections this kernel gives (client/cli/doctor_features.cpp).
#pragma once

// Newer than some installed kernel headers (include/uapi/asm-generic/socket.h).
#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS 83
#endif

namespace sockbroker::kernel_probe {

// A Unix socket's peer as a pidfd, taken at connect (SO_PEERPIDFD, Linux 6.5).
[[nodiscard]] bool gives_peer_pidfd();

// A Unix socket's peer's supplementary groups, taken at connect
// (SO_PEERGROUPS, Linux 4.13).
[[nodiscard]] bool gives_peer_groups();

// A Unix socket that refuses descriptors at the kernel (SO_PASSRIGHTS,
// Linux 6.16).
[[nodiscard]] bool can_refuse_passed_rights();

// Whether systemd's own hierarchy is cgroup v2, decided (and cached) as
// libsystemd does: v2 alone, or the hybrid layout (a tmpfs with v2 at
// unified/, or at systemd/ for v232). The hierarchy does not change under a
// running process.
[[nodiscard]] bool unified_cgroups();

}  // namespace sockbroker::kernel_probe
