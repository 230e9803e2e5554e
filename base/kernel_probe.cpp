#include "kernel_probe.hpp"

#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <sockbroker/fd.hpp>

namespace sockbroker::kernel_probe {
namespace {

struct SocketPair {
  UniqueFd one, other;
};

SocketPair unix_pair() {
  int pair[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return {};
  return {UniqueFd(pair[0]), UniqueFd(pair[1])};
}

bool is_cgroup2(const char* path) {
  struct statfs fs {};
  return ::statfs(path, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC;
}

}  // namespace

bool gives_peer_pidfd() {
  auto pair = unix_pair();
  if (!pair.one) return false;
  int raw_pidfd = -1;
  socklen_t length = sizeof raw_pidfd;
  if (::getsockopt(pair.one.get(), SOL_SOCKET, SO_PEERPIDFD, &raw_pidfd, &length) != 0) return false;
  ::close(raw_pidfd);
  return true;
}

bool gives_peer_groups() {
  auto pair = unix_pair();
  if (!pair.one) return false;
  gid_t groups[1];
  socklen_t length = sizeof groups;
  // ERANGE: the peer has more groups than fit; the option exists all the same.
  return ::getsockopt(pair.one.get(), SOL_SOCKET, SO_PEERGROUPS, groups, &length) == 0 || errno == ERANGE;
}

bool can_refuse_passed_rights() {
  auto pair = unix_pair();
  if (!pair.one) return false;
  const int pass_rights = 0;
  return ::setsockopt(pair.one.get(), SOL_SOCKET, SO_PASSRIGHTS, &pass_rights, sizeof pass_rights) == 0;
}

bool unified_cgroups() {
  static const bool unified = [] {
    if (is_cgroup2("/sys/fs/cgroup/")) return true;
    struct statfs fs {};
    if (::statfs("/sys/fs/cgroup/", &fs) != 0 || fs.f_type != TMPFS_MAGIC) return false;
    return is_cgroup2("/sys/fs/cgroup/unified/") || is_cgroup2("/sys/fs/cgroup/systemd/");
  }();
  return unified;
}

}  // namespace sockbroker::kernel_probe
