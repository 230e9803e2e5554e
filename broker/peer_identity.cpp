#include "peer_identity.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <string>

// Older kernel headers than the kernel: values from include/uapi/asm-generic/socket.h.
#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace sockbroker::broker {
namespace {

// Bounded: NGROUPS_MAX is 65536; nobody needs a broker grant by their 65537th group.
constexpr std::size_t kMaxPeerGroups = 65536;

Result<std::vector<gid_t>> peer_groups(int connection) {
  std::vector<gid_t> groups(32);
  for (;;) {
    socklen_t length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(connection, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length) == 0) {
      groups.resize(length / sizeof(gid_t));
      return groups;
    }
    // ERANGE tells the size needed in length.
    if (errno != ERANGE || length / sizeof(gid_t) > kMaxPeerGroups) return errno_error("getsockopt(SO_PEERGROUPS)");
    groups.resize(length / sizeof(gid_t));
  }
}

std::optional<std::string> executable_of(pid_t pid) {
  std::array<char, 4096> target{};
  std::string link = "/proc/" + std::to_string(pid) + "/exe";
  ssize_t n = ::readlink(link.c_str(), target.data(), target.size() - 1);
  if (n <= 0) return std::nullopt;
  return std::string(target.data(), static_cast<std::size_t>(n));
}

std::optional<std::string> unit_of(pid_t pid) {
  char* unit = nullptr;
  if (::sd_pid_get_unit(pid, &unit) < 0 || unit == nullptr) return std::nullopt;
  std::string out(unit);
  std::free(unit);
  return out;
}

std::optional<std::string> cgroup_of(pid_t pid) {
  char* cgroup = nullptr;
  if (::sd_pid_get_cgroup(pid, &cgroup) < 0 || cgroup == nullptr) return std::nullopt;
  std::string out(cgroup);
  std::free(cgroup);
  return out;
}

// The pidfd pins the process the kernel saw connect; it turns readable once
// that very process has exited (a successor on its pid does not count). poll
// needs no privilege over the caller: pidfd_send_signal(pidfd, 0) would, and
// fails with EPERM for another uid's process unless the broker keeps CAP_KILL,
// which systemd/sockbroker.service does not give it. A zombie counts as gone,
// and so does a poll that fails: what we read is then not used (fail closed).
bool still_alive(int pidfd) {
  pollfd probe{pidfd, POLLIN, 0};
  return ::poll(&probe, 1, 0) == 0;
}

}  // namespace

Result<Peer> read_peer(int connection) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return errno_error("getsockopt(SO_PEERCRED)");
  }
  Peer out;
  policy::PeerIdentity& peer = out.identity;
  peer.pid = cred.pid;
  peer.uid = cred.uid;
  peer.gid = cred.gid;
  auto groups = peer_groups(connection);
  if (!groups) return std::move(groups).error();
  peer.groups = std::move(*groups);

  int raw_pidfd = -1;
  length = sizeof raw_pidfd;
  if (::getsockopt(connection, SOL_SOCKET, SO_PEERPIDFD, &raw_pidfd, &length) != 0) {
    // Without a pidfd (Linux < 6.5) we cannot prove the pid is the caller's:
    // leave unit/executable/cgroup unset so rules that need them fail closed.
    return out;
  }
  out.pidfd.reset(raw_pidfd);
  if (cred.pid <= 0) return out;

  auto unit = unit_of(cred.pid);
  auto executable = executable_of(cred.pid);
  auto cgroup = cgroup_of(cred.pid);
  if (!still_alive(out.pidfd.get())) return out;  // what we read may belong to a successor
  peer.unit = std::move(unit);
  peer.executable = std::move(executable);
  peer.cgroup = std::move(cgroup);
  return out;
}

}  // namespace sockbroker::broker
