// What the tests of granted sockets share (socket_options_test.cpp,
// unix_socket_test.cpp, identity_rules_test.cpp): reading options back on a
// granted descriptor, serving one connection on it, exchanges over each
// family, and giving a client a cgroup (and so a systemd unit) without
// systemd.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <net/if.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include <sockbroker/client.hpp>

#include "harness.hpp"


namespace sbgrant {


namespace fs = std::filesystem;
using json = nlohmann::json;
using sbtest::Broker;
using sbtest::TempDir;

inline constexpr uid_t kDaemonUid = 1;  // Debian's "daemon": a second unprivileged uid
inline constexpr gid_t kDaemonGid = 1;

// ---------------------------------------------------------------------------
// Helpers

using sbtest::Acquired;
using sbtest::acquire_as_nobody;
using sbtest::ChildSetup;
inline const auto& read_text = sbtest::read_file;

inline long read_sysctl(const std::string& path) {
  std::ifstream in(path);
  long value = -1;
  in >> value;
  return value;
}

// Names in a directory, to show the broker left nothing behind (no private
// ".sockbroker-*" directory, no stray socket).
inline std::set<std::string> entries(const std::string& directory) {
  std::set<std::string> out;
  for (const auto& entry : fs::directory_iterator(directory)) out.insert(entry.path().filename().string());
  return out;
}

// Unique per process and per call: when the whole binary runs in one process
// every test shares one network namespace (abstract names) and one cgroup tree.
inline std::string unique_name(const std::string& stem) {
  static std::atomic<int> counter{0};
  return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

inline json int_option(int fd, int level, int option) {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(fd, level, option, &value, &length) != 0) return std::string("getsockopt: ") + std::strerror(errno);
  return value;
}

inline json device_option(int fd) {
  char name[IFNAMSIZ + 1] = {};
  socklen_t length = IFNAMSIZ;
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &length) != 0) {
    return std::string("getsockopt: ") + std::strerror(errno);
  }
  return std::string(name);  // NUL-terminated by the kernel; "" when unbound
}

// SO_RCVBUF and SO_SNDBUF, as the kernel keeps them (doubled).
inline json buffer_sizes(int fd) {
  return json{{"rcvbuf", int_option(fd, SOL_SOCKET, SO_RCVBUF)}, {"sndbuf", int_option(fd, SOL_SOCKET, SO_SNDBUF)}};
}

// Serves one stream connection on fd: answers "pong:" + what it read. Returns
// what it saw of the peer, for the test to check.
inline json serve_one(int fd) {
  sockaddr_storage peer{};
  if (std::string error = sbtest::answer_pong(fd, &peer); !error.empty()) return json{{"error", error}};
  json out{{"served", true}, {"peer_family", peer.ss_family}};
  if (peer.ss_family == AF_INET6) {
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, text, sizeof text);
    out["peer_address"] = text;
  }
  return out;
}

// IPV6_V6ONLY, then one connection served.
inline json v6only_and_serve(int fd) {
  return json{{"v6only", int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY)}, {"served", serve_one(fd)}};
}

// What a ping (sent by `exchange` from a thread of this process) got back
// while nobody held `name`, answering it in `probe`.
struct Pinged {
  Acquired grant;
  std::string answer;
};
inline Pinged ping_while_served(const Broker& broker, const std::string& name, const std::function<std::string()>& exchange,
                         const sbtest::GrantProbe& probe = [](int fd) -> json { return serve_one(fd); }) {
  Pinged out;
  std::thread client([&] { out.answer = exchange(); });
  out.grant = acquire_as_nobody(broker, name, probe);
  client.join();
  return out;
}

// One exchange with an already-prepared address; "<connect failed>" if refused.
inline std::string exchange_with(int family, const sockaddr* address, socklen_t length, const std::string& send) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "<socket failed>";
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string out = "<connect failed>";
  if (::connect(fd, address, length) == 0) {
    out.clear();
    if (::send(fd, send.data(), send.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(send.size())) {
      ::shutdown(fd, SHUT_WR);
      char buffer[256];
      for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) out.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

inline std::string tcp6_exchange(std::uint16_t port, const std::string& send) {
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_port = htons(port);
  address.sin6_addr = in6addr_loopback;
  return exchange_with(AF_INET6, reinterpret_cast<sockaddr*>(&address), sizeof address, send);
}

inline std::string abstract_exchange(const std::string& name, const std::string& send) {
  const sbtest::AbstractAddress address = sbtest::abstract_address(name);
  return exchange_with(AF_UNIX, address.get(), address.length, send);
}

// connect(2) to a Unix path as uid/gid: 0 or the errno it failed with.
inline int unix_connect_errno_as(uid_t uid, gid_t gid, const std::string& path) {
  auto child = sbtest::run_as(uid, gid, [&](int) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address = sbtest::unix_address(path);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 ? 0 : errno;
    ::close(fd);
    return rc;
  });
  return child.exit_code;
}

// A Unix socket this test process binds itself: another service's socket, live
// or (once closed) stale.
inline int bind_unix(const std::string& path, int type) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un address = sbtest::unix_address(path);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
  }
  return fd;
}

// The bind_failed event for `socket`, or null.
inline json bind_failed_for(const Broker& broker, const std::string& socket) {
  for (auto& event : broker.wait_for_events("bind_failed")) {
    if (event.value("socket", "") == socket) return event;
  }
  return nullptr;
}

// Whether `socket` was bound: its "bind" event came and no "bind_failed" did
// (waiting only for the event that is expected).
inline bool bound(const Broker& broker, const std::string& socket) {
  bool bind_seen = false;
  for (int i = 0; i < 200 && !bind_seen; ++i) {
    for (auto& event : broker.audit_events()) {
      if (event.value("socket", "") != socket) continue;
      if (event.value("event", "") == "bind_failed") return false;
      bind_seen = bind_seen || event.value("event", "") == "bind";
    }
    if (!bind_seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return bind_seen;
}

// The log line mentioning all of `needles`, or "".
inline std::string log_line_with(const std::string& log, const std::vector<std::string>& needles) {
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    bool all = true;
    for (const auto& needle : needles) all = all && line.find(needle) != std::string::npos;
    if (all) return line;
  }
  return "";
}

// ---------------------------------------------------------------------------
// cgroups: how a test gives a client a systemd unit without systemd.
//
// Measured on this machine (Debian 12, libsystemd 252, hybrid cgroups: tmpfs
// at /sys/fs/cgroup, "name=systemd" v1 at /sys/fs/cgroup/systemd, cgroup2 at
// /sys/fs/cgroup/unified, PID 1 not systemd and in "/"):
//  - sd_pid_get_unit() and sd_pid_get_cgroup() read the cgroup2 line ("0::")
//    of /proc/PID/cgroup, NOT the name=systemd one: libsystemd sees cgroup2 at
//    /sys/fs/cgroup/unified and concludes "systemd uses the unified hierarchy"
//    (CGROUP_UNIFIED_SYSTEMD). A process moved only into
//    /sys/fs/cgroup/systemd/x.slice/web.service still gets -ENODATA and "/".
//  - A process in the cgroup2 root gets sd_pid_get_unit() = -ENODATA and
//    sd_pid_get_cgroup() = "/"; one in <cgroup2>/x.slice/web.service gets
//    "web.service" and "/x.slice/web.service" (no shift: PID 1 is in "/").
//  - A process in <cgroup2>/x.slice alone has no unit (slices are skipped,
//    then nothing is left): -ENXIO.
// So the tests place clients in the cgroup2 hierarchy.
inline std::string cgroup2_root() {
  struct statfs fs {};
  if (::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return "/sys/fs/cgroup";
  if (::statfs("/sys/fs/cgroup/unified", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return "/sys/fs/cgroup/unified";
  return "";
}

// A cgroup2 directory created for one test and removed afterwards (once the
// processes moved into it have been reaped).
class TestCgroup {
 public:
  // relative: e.g. "sbtest-123-1.slice/web.service"; created with its parents.
  explicit TestCgroup(const std::string& relative) : root_(cgroup2_root()) {
    if (root_.empty()) return;
    std::string partial;
    std::istringstream parts(relative);
    for (std::string part; std::getline(parts, part, '/');) {
      partial += "/" + part;
      if (::mkdir((root_ + partial).c_str(), 0755) != 0) {
        ADD_FAILURE() << "mkdir " << root_ + partial << ": " << std::strerror(errno);
        return;
      }
      created_.push_back(root_ + partial);
    }
    path_ = partial;
  }
  ~TestCgroup() {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
      // A reaped task can keep a cgroup busy for a moment while it is released.
      bool removed = false;
      for (int i = 0; i < 200 && !removed; ++i) {
        removed = ::rmdir(it->c_str()) == 0 || errno == ENOENT;
        if (!removed) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!removed) ADD_FAILURE() << "rmdir " << *it << ": " << std::strerror(errno);
    }
  }
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  [[nodiscard]] bool ok() const { return !path_.empty(); }
  // As the broker sees it (sd_pid_get_cgroup): "/sbtest-123-1.slice/web.service".
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string procs() const { return root_ + path_ + "/cgroup.procs"; }

 private:
  std::string root_;
  std::string path_;
  std::vector<std::string> created_;
};

inline ChildSetup in_cgroup(const TestCgroup& cgroup, uid_t uid = sbtest::kNobody, gid_t gid = sbtest::kNogroup) {
  ChildSetup setup;
  setup.uid = uid;
  setup.gid = gid;
  setup.cgroup_procs = cgroup.procs();
  return setup;
}

// In the cgroup2 root: in no unit, wherever the test itself runs (a CI job may
// run it inside a unit of its own).
inline ChildSetup in_root_cgroup() {
  ChildSetup setup;
  setup.cgroup_procs = cgroup2_root() + "/cgroup.procs";
  return setup;
}

inline ChildSetup with_groups(gid_t gid, std::vector<gid_t> groups) {
  ChildSetup setup;
  setup.gid = gid;
  setup.groups = std::move(groups);
  return setup;
}

inline Acquired acquire_with(const Broker& broker, const std::string& name, const ChildSetup& setup) {
  return sbtest::acquire_as(setup, broker, name);
}

// Decision number `index` (0-based, in audit order) of kind `event` ("grant",
// "deny") about `socket`, waiting up to 2 s for it to be written; null if it
// never comes. By number, so that an earlier decision is never mistaken for it.
inline json nth_decision(const Broker& broker, const std::string& event, const std::string& socket, std::size_t index) {
  for (int i = 0; i < 200; ++i) {
    std::size_t seen = 0;
    for (auto& e : broker.audit_events()) {
      if (e.value("event", "") != event || e.value("socket", "") != socket) continue;
      if (seen++ == index) return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return nullptr;
}

// Unit and cgroup rules cannot be tested without a cgroup2 hierarchy to place
// clients in; under SOCKBROKER_TEST_REQUIRE_ROOT=1 (CI) that must not pass silently.
#define SBTEST_REQUIRE_CGROUP2()                                                   \
  do {                                                                             \
    if (cgroup2_root().empty()) SBTEST_SKIP_OR_FAIL("no writable cgroup2 hierarchy"); \
  } while (0)


}  // namespace sbgrant
