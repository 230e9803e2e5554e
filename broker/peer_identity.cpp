#include "peer_identity.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

#include "kernel_probe.hpp"
#include "pidfd_info.hpp"

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

// sd_pid_get_unit's answer, and whether it is a property of the cgroup (a unit,
// or none: ENODATA, ENXIO) rather than of a failed read (the process gone).
struct UnitAnswer {
  std::optional<std::string> unit;
  bool of_cgroup = false;
};

UnitAnswer unit_from_libsystemd(pid_t pid) {
  char* unit = nullptr;
  const int r = ::sd_pid_get_unit(pid, &unit);
  if (r < 0 || unit == nullptr) return {std::nullopt, r == -ENODATA || r == -ENXIO};
  std::string out(unit);
  std::free(unit);
  return {std::move(out), true};
}

std::optional<std::string> cgroup_from_libsystemd(pid_t pid) {
  char* cgroup = nullptr;
  if (::sd_pid_get_cgroup(pid, &cgroup) < 0 || cgroup == nullptr) return std::nullopt;
  std::string out(cgroup);
  std::free(cgroup);
  return out;
}

// What sd_pid_get_cgroup() returns when systemd's hierarchy is v2: the path on
// the "0::" line of /proc/PID/cgroup. It reads the file a character at a time
// through stdio; one read(2) here costs a fraction of that on every connection.
// Anything unusual (cgroup v1 only, a file longer than the buffer) is left to
// libsystemd.
std::optional<std::string> cgroup_of(pid_t pid) {
  if (!kernel_probe::unified_cgroups()) return cgroup_from_libsystemd(pid);
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/cgroup", static_cast<int>(pid));
  UniqueFd file(::open(path, O_RDONLY | O_CLOEXEC));
  if (!file) return std::nullopt;  // the process is gone: as libsystemd (ESRCH)
  std::array<char, 4096> text;  // only [0, size) is read
  std::size_t size = 0;
  // A /proc file made in one go (seq_file single_open) arrives whole in the
  // first read when it fits, so a short read is the end (libsystemd's
  // read_virtual_file relies on the same): no second read to learn EOF.
  for (;;) {
    const std::size_t wanted = text.size() - size;
    ssize_t n = ::read(file.get(), text.data() + size, wanted);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    size += static_cast<std::size_t>(n);
    if (n == 0 || static_cast<std::size_t>(n) < wanted) break;
    if (size == text.size()) return cgroup_from_libsystemd(pid);
  }
  std::string_view lines(text.data(), size);
  while (!lines.empty()) {
    const std::size_t end = lines.find('\n');
    std::string_view line = lines.substr(0, end);
    lines = end == std::string_view::npos ? std::string_view() : lines.substr(end + 1);
    if (line.starts_with("0::")) return std::string(line.substr(3));
  }
  return std::nullopt;
}

// The unit of a process is a function of its cgroup path (and of PID 1's,
// which does not change): libsystemd reads /proc/PID/cgroup and /proc/1/cgroup
// through stdio, a character at a time, on every call. So it is asked once per
// cgroup, and only remembered when the process was still in that cgroup after
// libsystemd read it (a process that moved in between proves nothing). A
// process can only move within the cgroups delegated to it, all of which
// belong to the same unit, so it cannot plant a wrong answer for anyone.
// Bounded: past the limit the memory starts afresh. Only the broker's loop
// thread reads peers.
constexpr std::size_t kMaxRememberedCgroups = 4096;

std::optional<std::string> unit_of(pid_t pid, const std::optional<std::string>& cgroup) {
  if (!cgroup || !kernel_probe::unified_cgroups()) return unit_from_libsystemd(pid).unit;
  static std::unordered_map<std::string, std::optional<std::string>> units;
  if (auto it = units.find(*cgroup); it != units.end()) return it->second;
  UnitAnswer answer = unit_from_libsystemd(pid);
  if (answer.of_cgroup && cgroup_of(pid) == cgroup) {
    if (units.size() >= kMaxRememberedCgroups) units.clear();
    units.emplace(*cgroup, answer.unit);
  }
  return std::move(answer.unit);
}

// A cgroup's path and unit, remembered by the cgroup's id. A cgroup v2 cannot
// be renamed (it has no rename operation) and its id is never given to
// another while the system runs, so an id stands for one path and one unit
// for good: a caller in a known cgroup costs one ioctl (cgroup_id_of) instead of
// reading /proc/PID/cgroup (~4 us here, most of the identity's cost). An
// entry is made only when the process had the same id after its cgroup was
// read as before (it did not move meanwhile); as for `units` above, a
// process moving to and fro between reads could only attach a path of its
// own delegated subtree, of the same unit, to a cgroup of that subtree.
struct CgroupFacts {
  std::string path;
  std::optional<std::string> unit;
};
std::unordered_map<std::uint64_t, CgroupFacts>& cgroups_by_id() {
  static std::unordered_map<std::uint64_t, CgroupFacts> known;
  return known;
}
void remember_cgroup(std::uint64_t id, const std::string& path, const std::optional<std::string>& unit) {
  auto& known = cgroups_by_id();
  if (known.size() >= kMaxRememberedCgroups) known.clear();
  known.insert_or_assign(id, CgroupFacts{path, unit});
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

// The effective uid and gid of a process, from the "Uid:" and "Gid:" lines
// of /proc/PID/status (mode 0444: no privilege over the process needed).
struct EffectiveIds {
  uid_t uid;
  gid_t gid;
};
std::optional<EffectiveIds> effective_ids_of(pid_t pid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  UniqueFd file(::open(path, O_RDONLY | O_CLOEXEC));
  if (!file) return std::nullopt;
  // Uid and Gid come within the first ~500 bytes (after Name, which the
  // kernel escapes and caps at 64 characters); no second read is needed.
  std::array<char, 1024> text;
  ssize_t n;
  do {
    n = ::read(file.get(), text.data(), text.size() - 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return std::nullopt;
  text[static_cast<std::size_t>(n)] = '\0';
  // Each line: "Uid:\treal\teffective\tsaved\tfilesystem".
  auto second_field = [&](const char* key) -> std::optional<unsigned long> {
    const char* line = std::strstr(text.data(), key);
    if (line == nullptr) return std::nullopt;
    unsigned long real = 0, effective = 0;
    if (std::sscanf(line + std::strlen(key), "%lu %lu", &real, &effective) != 2) return std::nullopt;
    return effective;
  };
  const auto uid = second_field("\nUid:");
  const auto gid = second_field("\nGid:");
  if (!uid || !gid) return std::nullopt;
  return EffectiveIds{static_cast<uid_t>(*uid), static_cast<gid_t>(*gid)};
}

// Linux < 6.5 has no SO_PEERPIDFD. The connecting process is then opened by
// the pid SO_PEERCRED recorded at connect, at once (read_peer runs at accept),
// and kept only if the process on that pid runs with the uid and gid that
// connected, as read while the pidfd already pinned it. What a pid cannot
// prove: if the connector exited and the whole pid space wrapped around
// between its connect and this accept (4,194,304 pids under systemd), a
// process of the same uid and gid that got the pid would be taken for it.
// Every request is then also checked to come from that pid
// (Reason::not_the_connector), which the kernel stamps at send time, so a
// process the connector handed the connection to cannot use it either.
// A pid with no process, or a dead one, proves the connector has exited
// (alive, it would hold its pid).
void find_connector_by_pid(const ucred& cred, Peer& out) {
  if (cred.pid <= 0) return;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, cred.pid, 0)));
  if (!pidfd) {
    out.gone = errno == ESRCH;
    return;
  }
  const auto ids = effective_ids_of(cred.pid);
  if (!still_alive(pidfd.get())) {
    out.gone = true;
    return;
  }
  if (!ids || ids->uid != cred.uid || ids->gid != cred.gid) return;
  out.pidfd = std::move(pidfd);
}

}  // namespace

// Asked of the pidfd itself: one ioctl, no /proc file, no pid that could have
// been reused.
std::optional<std::uint64_t> cgroup_id_of(int pidfd) {
  static bool unsupported = false;
  if (unsupported || !kernel_probe::unified_cgroups()) return std::nullopt;
  PidfdInfo info{};
  info.mask = kPidfdInfoCgroupId;
  if (::ioctl(pidfd, kPidfdGetInfo, &info) != 0) {
    // An older kernel (ENOTTY, EINVAL), or a filter or LSM that says no
    // (EPERM): ask no more. ESRCH: this process has gone.
    if (errno == ENOTTY || errno == EINVAL || errno == EPERM) unsupported = true;
    return std::nullopt;
  }
  if ((info.mask & kPidfdInfoCgroupId) == 0) return std::nullopt;
  return info.cgroupid;
}

std::optional<std::string> unit_of_process(pid_t pid, int pidfd) {
  if (pid <= 0 || pidfd < 0) return std::nullopt;
  const auto id = cgroup_id_of(pidfd);
  if (id) {
    if (auto it = cgroups_by_id().find(*id); it != cgroups_by_id().end()) return it->second.unit;
  }
  auto cgroup = cgroup_of(pid);
  auto unit = unit_of(pid, cgroup);
  if (!still_alive(pidfd)) return std::nullopt;
  if (id && cgroup && cgroup_id_of(pidfd) == id) remember_cgroup(*id, *cgroup, unit);
  return unit;
}

Result<ucred> peer_credentials(int connection) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return errno_error("getsockopt(SO_PEERCRED)");
  }
  return cred;
}

Result<Peer> read_peer(int connection, const ucred& cred) {
  socklen_t length = 0;
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
  if (::getsockopt(connection, SOL_SOCKET, SO_PEERPIDFD, &raw_pidfd, &length) == 0) {
    out.pidfd.reset(raw_pidfd);
  } else if (errno == ENOPROTOOPT) {
    // An older kernel: the process is found by pid. Where even that fails,
    // nothing is known of it: its unit, executable and cgroup stay unknown,
    // so rules that need them fail closed, and counted grants are refused
    // (Reason::untrackable).
    find_connector_by_pid(cred, out);
  }
  return out;
}

void resolve_process_identity(policy::PeerIdentity& peer, int pidfd, bool read_executable) {
  if (pidfd < 0 || peer.pid <= 0) return;
  const auto id = cgroup_id_of(pidfd);
  if (id) {
    if (auto it = cgroups_by_id().find(*id); it != cgroups_by_id().end()) {
      // The id came through the pidfd: it is this process's. Only a
      // readlink by pid needs the liveness check after it.
      auto executable = read_executable ? executable_of(peer.pid) : std::nullopt;
      if (read_executable && !still_alive(pidfd)) return;
      peer.unit = it->second.unit;
      peer.cgroup = it->second.path;
      peer.executable = std::move(executable);
      return;
    }
  }
  auto cgroup = cgroup_of(peer.pid);
  auto unit = unit_of(peer.pid, cgroup);
  auto executable = read_executable ? executable_of(peer.pid) : std::nullopt;
  if (!still_alive(pidfd)) return;  // what we read may belong to a successor
  if (id && cgroup && cgroup_id_of(pidfd) == id) remember_cgroup(*id, *cgroup, unit);
  peer.unit = std::move(unit);
  peer.executable = std::move(executable);
  peer.cgroup = std::move(cgroup);
}

}  // namespace sockbroker::broker
