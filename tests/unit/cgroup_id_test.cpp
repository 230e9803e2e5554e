// cgroup_id_of (peer_identity.cpp): the id PIDFD_GET_INFO gives for a pidfd is
// the inode number of the process's cgroup v2 directory, the key under which
// the broker remembers a cgroup's path and unit. On kernels before 6.13 it
// gives nothing, and the broker reads /proc/PID/cgroup as before.
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "peer_identity.hpp"

namespace sockbroker::broker {
namespace {

constexpr long kCgroup2Magic = 0x63677270;  // CGROUP2_SUPER_MAGIC

// Where systemd's cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified)
// or /sys/fs/cgroup/unified (hybrid); "" if neither is.
std::string cgroup2_mount() {
  for (const char* dir : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    struct statfs fs {};
    if (::statfs(dir, &fs) == 0 && fs.f_type == kCgroup2Magic) return dir;
  }
  return "";
}

// This process's cgroup v2 path: the "0::" line of /proc/self/cgroup.
std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return "";
}

bool kernel_at_least(int major, int minor) {
  utsname name{};
  if (::uname(&name) != 0) return false;
  int have_major = 0, have_minor = 0;
  if (std::sscanf(name.release, "%d.%d", &have_major, &have_minor) != 2) return false;
  return have_major > major || (have_major == major && have_minor >= minor);
}

TEST(CgroupId, IsTheInodeOfTheCallersCgroupDirectory) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  ASSERT_TRUE(pidfd) << "pidfd_open: " << std::strerror(errno);
  const std::string mount = cgroup2_mount();
  const auto id = cgroup_id_of(pidfd.get());
  if (mount.empty() || !kernel_at_least(6, 13)) {
    EXPECT_FALSE(id) << "no cgroup v2 hierarchy, or no PIDFD_GET_INFO: /proc is read instead";
    return;
  }
  ASSERT_TRUE(id) << "Linux 6.13 or later with cgroup v2 at " << mount << ": PIDFD_GET_INFO should answer";
  struct stat st {};
  const std::string dir = mount + own_cgroup();
  ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir << ": " << std::strerror(errno);
  EXPECT_EQ(*id, static_cast<std::uint64_t>(st.st_ino)) << dir;
}

TEST(CgroupId, OfAProcessThatHasGoneIsNothing) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  ASSERT_TRUE(pidfd) << "pidfd_open: " << std::strerror(errno);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(cgroup_id_of(pidfd.get())) << "a reaped process has no cgroup to tell";
  // And a failure for that reason does not turn the ioctl off for everyone.
  UniqueFd self(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  ASSERT_TRUE(self);
  if (!cgroup2_mount().empty() && kernel_at_least(6, 13)) {
    EXPECT_TRUE(cgroup_id_of(self.get()));
  }
}

}  // namespace
}  // namespace sockbroker::broker
