// PIDFD_GET_INFO (Linux 6.13, include/uapi/linux/pidfd.h), newer than Debian
// 12's kernel headers: struct pidfd_info as first published
// (PIDFD_INFO_SIZE_VER0). The broker asks it for a caller's cgroup id
// (peer_identity.cpp); its seccomp filter allows this one ioctl
// (confinement.cpp).
#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace sockbroker::broker {

struct PidfdInfo {
  std::uint64_t mask;
  std::uint64_t cgroupid;
  std::uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  std::uint32_t spare0[1];
};
static_assert(sizeof(PidfdInfo) == 64, "PIDFD_INFO_SIZE_VER0");

inline constexpr std::uint64_t kPidfdInfoCgroupId = 1U << 2;
inline constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfo);

}  // namespace sockbroker::broker
