// What the broker does to the kernel socket before it hands it out, read back
// on the granted descriptor itself; how it creates (and refuses to create)
// Unix socket paths; and who it grants to by unit, executable, cgroup and
// group. Real kernel, real sockbrokerd, clients dropped to uid/gid 65534.
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

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using sbtest::Broker;
using sbtest::TempDir;

constexpr uid_t kDaemonUid = 1;  // Debian's "daemon": a second unprivileged uid
constexpr gid_t kDaemonGid = 1;

// ---------------------------------------------------------------------------
// Helpers

using sbtest::Acquired;
using sbtest::acquire_as_nobody;
using sbtest::ChildSetup;
const auto& read_text = sbtest::read_file;

long read_sysctl(const std::string& path) {
  std::ifstream in(path);
  long value = -1;
  in >> value;
  return value;
}

// Names in a directory, to show the broker left nothing behind (no private
// ".sockbroker-*" directory, no stray socket).
std::set<std::string> entries(const std::string& directory) {
  std::set<std::string> out;
  for (const auto& entry : fs::directory_iterator(directory)) out.insert(entry.path().filename().string());
  return out;
}

// Unique per process and per call: when the whole binary runs in one process
// every test shares one network namespace (abstract names) and one cgroup tree.
std::string unique_name(const std::string& stem) {
  static std::atomic<int> counter{0};
  return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

json int_option(int fd, int level, int option) {
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(fd, level, option, &value, &length) != 0) return std::string("getsockopt: ") + std::strerror(errno);
  return value;
}

json device_option(int fd) {
  char name[IFNAMSIZ + 1] = {};
  socklen_t length = IFNAMSIZ;
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &length) != 0) {
    return std::string("getsockopt: ") + std::strerror(errno);
  }
  return std::string(name);  // NUL-terminated by the kernel; "" when unbound
}

// SO_RCVBUF and SO_SNDBUF, as the kernel keeps them (doubled).
json buffer_sizes(int fd) {
  return json{{"rcvbuf", int_option(fd, SOL_SOCKET, SO_RCVBUF)}, {"sndbuf", int_option(fd, SOL_SOCKET, SO_SNDBUF)}};
}

// Serves one stream connection on fd: answers "pong:" + what it read. Returns
// what it saw of the peer, for the test to check.
json serve_one(int fd) {
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
json v6only_and_serve(int fd) {
  return json{{"v6only", int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY)}, {"served", serve_one(fd)}};
}

// What a ping (sent by `exchange` from a thread of this process) got back
// while nobody held `name`, answering it in `probe`.
struct Pinged {
  Acquired grant;
  std::string answer;
};
Pinged ping_while_served(const Broker& broker, const std::string& name, const std::function<std::string()>& exchange,
                         const sbtest::GrantProbe& probe = [](int fd) -> json { return serve_one(fd); }) {
  Pinged out;
  std::thread client([&] { out.answer = exchange(); });
  out.grant = acquire_as_nobody(broker, name, probe);
  client.join();
  return out;
}

// One exchange with an already-prepared address; "<connect failed>" if refused.
std::string exchange_with(int family, const sockaddr* address, socklen_t length, const std::string& send) {
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

std::string tcp6_exchange(std::uint16_t port, const std::string& send) {
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_port = htons(port);
  address.sin6_addr = in6addr_loopback;
  return exchange_with(AF_INET6, reinterpret_cast<sockaddr*>(&address), sizeof address, send);
}

std::string abstract_exchange(const std::string& name, const std::string& send) {
  const sbtest::AbstractAddress address = sbtest::abstract_address(name);
  return exchange_with(AF_UNIX, address.get(), address.length, send);
}

// connect(2) to a Unix path as uid/gid: 0 or the errno it failed with.
int unix_connect_errno_as(uid_t uid, gid_t gid, const std::string& path) {
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
int bind_unix(const std::string& path, int type) {
  int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un address = sbtest::unix_address(path);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
  }
  return fd;
}

// The bind_failed event for `socket`, or null.
json bind_failed_for(const Broker& broker, const std::string& socket) {
  for (auto& event : broker.wait_for_events("bind_failed")) {
    if (event.value("socket", "") == socket) return event;
  }
  return nullptr;
}

// Whether `socket` was bound: its "bind" event came and no "bind_failed" did
// (waiting only for the event that is expected).
bool bound(const Broker& broker, const std::string& socket) {
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
std::string log_line_with(const std::string& log, const std::vector<std::string>& needles) {
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
std::string cgroup2_root() {
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

ChildSetup in_cgroup(const TestCgroup& cgroup, uid_t uid = sbtest::kNobody, gid_t gid = sbtest::kNogroup) {
  ChildSetup setup;
  setup.uid = uid;
  setup.gid = gid;
  setup.cgroup_procs = cgroup.procs();
  return setup;
}

// In the cgroup2 root: in no unit, wherever the test itself runs (a CI job may
// run it inside a unit of its own).
ChildSetup in_root_cgroup() {
  ChildSetup setup;
  setup.cgroup_procs = cgroup2_root() + "/cgroup.procs";
  return setup;
}

ChildSetup with_groups(gid_t gid, std::vector<gid_t> groups) {
  ChildSetup setup;
  setup.gid = gid;
  setup.groups = std::move(groups);
  return setup;
}

Acquired acquire_with(const Broker& broker, const std::string& name, const ChildSetup& setup) {
  return sbtest::acquire_as(setup, broker, name);
}

// Decision number `index` (0-based, in audit order) of kind `event` ("grant",
// "deny") about `socket`, waiting up to 2 s for it to be written; null if it
// never comes. By number, so that an earlier decision is never mistaken for it.
json nth_decision(const Broker& broker, const std::string& event, const std::string& socket, std::size_t index) {
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
#define SBTEST_REQUIRE_CGROUP2()                                                                          \
  do {                                                                                                    \
    if (cgroup2_root().empty()) {                                                                         \
      if (sockbroker_skips_are_forbidden()) {                                                             \
        FAIL() << "no writable cgroup2 hierarchy, and SOCKBROKER_TEST_REQUIRE_ROOT=1 forbids skipping";  \
      }                                                                                                   \
      GTEST_SKIP() << "no writable cgroup2 hierarchy found";                                              \
    }                                                                                                     \
  } while (0)

// ---------------------------------------------------------------------------
// Socket options, read back on the granted descriptor

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using GroupRule = sbtest::BrokerTest;
using Identity = sbtest::BrokerTest;
using SocketOptions = sbtest::BrokerTest;
using UnixSocket = sbtest::BrokerTest;

TEST_F(SocketOptions, BacklogIsTheListenQueueLength) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.short]
listen = "127.0.0.1:8101"
backlog = 77
[[socket.short.allow]]
user = "nobody"

[socket.default]
listen = "127.0.0.1:8102"
[[socket.default.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  // No getsockopt for the backlog, but TCP_INFO on a listening socket reports
  // sk_max_ack_backlog in tcpi_sacked (what ss shows as Send-Q).
  auto backlog = [](int fd) -> json {
    tcp_info info{};
    socklen_t length = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return std::strerror(errno);
    return json{{"state", info.tcpi_state}, {"max_backlog", info.tcpi_sacked}};
  };
  auto shortq = acquire_as_nobody(*broker, "short", backlog);
  ASSERT_TRUE(shortq.granted) << shortq.message;
  EXPECT_EQ(shortq.probe["state"], TCP_LISTEN) << shortq.probe;
  EXPECT_EQ(shortq.probe["max_backlog"], 77) << shortq.probe;

  // The default (511), capped by the namespace's somaxconn as listen(2) does.
  auto fallback = acquire_as_nobody(*broker, "default", backlog);
  ASSERT_TRUE(fallback.granted) << fallback.message;
  long somaxconn = read_sysctl("/proc/sys/net/core/somaxconn");
  EXPECT_EQ(fallback.probe["max_backlog"], std::min(511L, somaxconn)) << fallback.probe;

  // The same through ss(8), which an operator would use.
  for (const char* ss : {"/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"}) {
    if (::access(ss, X_OK) != 0) continue;
    auto listed = sbtest::run_command_as(0, 0, {ss, "-Hltn", "sport = :8101"});
    ASSERT_EQ(listed.exit_code, 0) << listed.output;
    std::istringstream fields(listed.output);
    std::string state, recv_q, send_q;
    fields >> state >> recv_q >> send_q;
    EXPECT_EQ(state, "LISTEN") << listed.output;
    EXPECT_EQ(send_q, "77") << listed.output;
    break;
  }
}

TEST_F(SocketOptions, BufferSizesReadBackDoubledAsTheKernelKeepsThem) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.buffers]
listen = "127.0.0.1:8103"
receive_buffer = 65536
send_buffer = 131072
[[socket.buffers.allow]]
user = "nobody"

[socket.dgram]
listen = "127.0.0.1:8103"
type = "datagram"
receive_buffer = 100000
[[socket.dgram.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto stream = acquire_as_nobody(*broker, "buffers", buffer_sizes);
  ASSERT_TRUE(stream.granted) << stream.message;
  EXPECT_EQ(stream.probe["rcvbuf"], 2 * 65536) << stream.probe;
  EXPECT_EQ(stream.probe["sndbuf"], 2 * 131072) << stream.probe;

  auto dgram = acquire_as_nobody(*broker, "dgram", buffer_sizes);
  ASSERT_TRUE(dgram.granted) << dgram.message;
  EXPECT_EQ(dgram.probe["rcvbuf"], 2 * 100000) << dgram.probe;

  // Nothing was clamped, so nothing is reported.
  EXPECT_EQ(log_line_with(broker->log(), {"clamped"}), "") << broker->log();
}

TEST_F(SocketOptions, BufferAboveTheSysctlMaximumIsClampedAndTheBrokerSaysSo) {
  // Read, never changed: the host's limits are not the test's to touch.
  const long rmem_max = read_sysctl("/proc/sys/net/core/rmem_max");
  const long wmem_max = read_sysctl("/proc/sys/net/core/wmem_max");
  ASSERT_GT(rmem_max, 0);
  ASSERT_GT(wmem_max, 0);
  if (rmem_max > INT_MAX / 2 - 4096 || wmem_max > INT_MAX / 2 - 4096) {
    if (sockbroker_skips_are_forbidden()) {
      FAIL() << "rmem_max/wmem_max are too large to exceed with an int, and SOCKBROKER_TEST_REQUIRE_ROOT=1 "
                "forbids skipping";
    }
    GTEST_SKIP() << "rmem_max/wmem_max are too large to exceed with an int";
  }
  const long receive = rmem_max + 4096;
  const long send = wmem_max * 2;
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.big]
listen = "127.0.0.1:8104"
receive_buffer = )" + std::to_string(receive) + R"(
send_buffer = )" + std::to_string(send) + R"(
[[socket.big.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto big = acquire_as_nobody(*broker, "big", buffer_sizes);
  // Clamped, not refused: the socket is bound and granted.
  ASSERT_TRUE(big.granted) << big.message;
  EXPECT_EQ(big.probe["rcvbuf"], 2 * rmem_max) << big.probe;
  EXPECT_EQ(big.probe["sndbuf"], 2 * wmem_max) << big.probe;

  const std::string log = broker->log();
  std::string receive_line = log_line_with(log, {"\"big\"", "receive_buffer", std::to_string(receive), "clamped",
                                                 std::to_string(rmem_max), "net.core.rmem_max"});
  EXPECT_NE(receive_line, "") << log;
  std::string send_line = log_line_with(log, {"\"big\"", "send_buffer", std::to_string(send), "clamped",
                                              std::to_string(wmem_max), "net.core.wmem_max"});
  EXPECT_NE(send_line, "") << log;
  EXPECT_NE(receive_line.find("warn"), std::string::npos) << receive_line;
}

TEST_F(SocketOptions, V6OnlyTrueServesIPv6AndRefusesIPv4) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.six]
listen = "[::]:8105"
v6only = true
[[socket.six.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  // Nothing listens on IPv4 port 8105: the connection is refused outright.
  EXPECT_EQ(sbtest::tcp_exchange(8105, "ping", 1000), "<connect failed>");

  auto pinged = ping_while_served(*broker, "six", [&] { return tcp6_exchange(8105, "ping"); }, v6only_and_serve);
  const Acquired& six = pinged.grant;
  ASSERT_TRUE(six.granted) << six.message;
  EXPECT_EQ(six.probe["v6only"], 1) << six.probe;
  EXPECT_EQ(pinged.answer, "pong:ping");
}

TEST_F(SocketOptions, V6OnlyFalseAlsoAcceptsIPv4On127001) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.dual]
listen = "[::]:8106"
v6only = false
[[socket.dual.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  // From IPv4 127.0.0.1.
  auto pinged = ping_while_served(*broker, "dual", [&] { return sbtest::tcp_exchange(8106, "ping"); }, v6only_and_serve);
  const Acquired& dual = pinged.grant;
  ASSERT_TRUE(dual.granted) << dual.message;
  EXPECT_EQ(dual.probe["v6only"], 0) << dual.probe;
  EXPECT_EQ(pinged.answer, "pong:ping");
  // The IPv4 client reached the IPv6 socket as a v4-mapped address.
  EXPECT_EQ(dual.probe["served"]["peer_family"], AF_INET6) << dual.probe;
  EXPECT_EQ(dual.probe["served"]["peer_address"], "::ffff:127.0.0.1") << dual.probe;
}

TEST_F(SocketOptions, FastOpenQueueLengthReadsBackAndDefaultsToOff) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.tfo]
listen = "127.0.0.1:8107"
fast_open = 5
[[socket.tfo.allow]]
user = "nobody"

[socket.plain]
listen = "127.0.0.1:8108"
[[socket.plain.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto fastopen = [](int fd) -> json { return int_option(fd, IPPROTO_TCP, TCP_FASTOPEN); };
  auto tfo = acquire_as_nobody(*broker, "tfo", fastopen);
  ASSERT_TRUE(tfo.granted) << tfo.message;
  EXPECT_EQ(tfo.probe, 5);
  auto plain = acquire_as_nobody(*broker, "plain", fastopen);
  ASSERT_TRUE(plain.granted) << plain.message;
  EXPECT_EQ(plain.probe, 0);
}

TEST_F(SocketOptions, FreeBindLetsANonLocalAddressBindAndWithoutItTheEntryFails) {
  TempDir dir;
  // 192.0.2.1 is TEST-NET-1, on no interface here. Binding is local only;
  // nothing is ever sent there.
  auto broker = Broker::start(dir, R"(
[socket.free]
listen = "192.0.2.1:8109"
free_bind = true
[[socket.free.allow]]
user = "nobody"

[socket.strict]
listen = "192.0.2.1:8110"
[[socket.strict.allow]]
user = "nobody"

[socket.plain]
listen = "127.0.0.1:8111"
[[socket.plain.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto options = [](int fd) -> json {
    sockaddr_in bound{};
    socklen_t length = sizeof bound;
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0) {
      ::inet_ntop(AF_INET, &bound.sin_addr, text, sizeof text);
    }
    return json{{"freebind", int_option(fd, IPPROTO_IP, IP_FREEBIND)},
                {"transparent", int_option(fd, IPPROTO_IP, IP_TRANSPARENT)},
                {"device", device_option(fd)},
                {"bound", std::string(text) + ":" + std::to_string(ntohs(bound.sin_port))}};
  };
  auto free = acquire_as_nobody(*broker, "free", options);
  ASSERT_TRUE(free.granted) << free.message;
  EXPECT_EQ(free.probe["freebind"], 1) << free.probe;
  EXPECT_EQ(free.probe["bound"], "192.0.2.1:8109") << free.probe;

  // Without free_bind the same kind of address cannot be bound: a failed entry,
  // in the log and the audit, and acquire says so; the others serve.
  json failed = bind_failed_for(*broker, "strict");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("192.0.2.1:8110"), std::string::npos) << failed;
  EXPECT_NE(failed["error"].get<std::string>().find(std::strerror(EADDRNOTAVAIL)), std::string::npos) << failed;
  EXPECT_NE(log_line_with(broker->log(), {"\"strict\"", "192.0.2.1:8110"}), "") << broker->log();
  auto strict = acquire_as_nobody(*broker, "strict");
  EXPECT_FALSE(strict.granted);
  EXPECT_EQ(strict.code, SOCKBROKER_E_BIND) << strict.message;

  // Options nobody asked for are off.
  auto plain = acquire_as_nobody(*broker, "plain", options);
  ASSERT_TRUE(plain.granted) << plain.message;
  EXPECT_EQ(plain.probe["freebind"], 0) << plain.probe;
  EXPECT_EQ(plain.probe["transparent"], 0) << plain.probe;
  EXPECT_EQ(plain.probe["device"], "") << plain.probe;
}

TEST_F(SocketOptions, TransparentReadsBack) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.tproxy]
listen = "127.0.0.1:8112"
transparent = true
[[socket.tproxy.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto tproxy =
      acquire_as_nobody(*broker, "tproxy", [](int fd) -> json { return int_option(fd, IPPROTO_IP, IP_TRANSPARENT); });
  ASSERT_TRUE(tproxy.granted) << tproxy.message;
  EXPECT_EQ(tproxy.probe, 1);
}

TEST_F(SocketOptions, IPv6FreeBindAndTransparentReadBack) {
  TempDir dir;
  // 2001:db8::/32 is the IPv6 documentation prefix, on no interface here.
  auto broker = Broker::start(dir, R"(
[socket.six]
listen = "[2001:db8::1]:8113"
free_bind = true
transparent = true
[[socket.six.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto six = acquire_as_nobody(*broker, "six", [](int fd) -> json {
    return json{{"freebind", int_option(fd, IPPROTO_IPV6, IPV6_FREEBIND)},
                {"transparent", int_option(fd, IPPROTO_IPV6, IPV6_TRANSPARENT)}};
  });
  ASSERT_TRUE(six.granted) << six.message;
  EXPECT_EQ(six.probe["freebind"], 1) << six.probe;
  EXPECT_EQ(six.probe["transparent"], 1) << six.probe;
}

TEST_F(SocketOptions, BindToDeviceReadsBackTheInterface) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.local]
listen = "127.0.0.1:8114"
bind_to_device = "lo"
[[socket.local.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto pinged = ping_while_served(*broker, "local", [&] { return sbtest::tcp_exchange(8114, "ping"); }, [](int fd) -> json {
    return json{{"device", device_option(fd)}, {"served", serve_one(fd)}};
  });
  const Acquired& local = pinged.grant;
  ASSERT_TRUE(local.granted) << local.message;
  EXPECT_EQ(local.probe["device"], "lo") << local.probe;
  EXPECT_EQ(pinged.answer, "pong:ping");  // traffic on lo reaches it
}

// Another uid's bind(2) on the address a policy socket holds, from a process
// that is not locked down (any local user): 0 or the errno it failed with.
int squat_errno_as_nobody(std::uint16_t port, bool reuse_addr, bool reuse_port) {
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    sockbroker::UniqueFd fd;
    if (int err = sbtest::bind_tcp(INADDR_LOOPBACK, port, {.addr = reuse_addr, .port = reuse_port}, &fd); err != 0) {
      return err;
    }
    if (::listen(fd.get(), 1) != 0) return errno;
    sbtest::report(report_fd, "bound and listening on 127.0.0.1:" + std::to_string(port));
    return 0;
  });
  return child.exit_code;
}

// The broker holds ports for services that are down: nobody else may take them
// meanwhile, whatever SO_REUSEADDR/SO_REUSEPORT they set. For a reuse_port
// group with no member granted, only the broker's bound, never-listening port
// holder stands in the way; with SO_REUSEADDR on it, Linux would let any uid
// that sets SO_REUSEADDR bind the port and listen.
TEST_F(SocketOptions, HeldPortsCannotBeTakenByAnotherUid) {
  TempDir dir;
  // Above ip_unprivileged_port_start: a plain user may bind here at all.
  auto broker = Broker::start(dir, R"(
[socket.shared]
listen = "127.0.0.1:8115"
[[socket.shared.allow]]
user = "nobody"

[socket.group]
listen = "127.0.0.1:8116"
reuse_port = true
[[socket.group.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  for (std::uint16_t port : {8115, 8116}) {
    for (bool reuse_addr : {false, true}) {
      for (bool reuse_port : {false, true}) {
        EXPECT_EQ(squat_errno_as_nobody(port, reuse_addr, reuse_port), EADDRINUSE)
            << "port " << port << " SO_REUSEADDR=" << reuse_addr << " SO_REUSEPORT=" << reuse_port;
      }
    }
  }
  // And once a member has come and gone (the broker closed its dup of it),
  // the port is still held.
  auto member = acquire_as_nobody(*broker, "group");
  ASSERT_TRUE(member.granted) << member.message;
  const int expected = baseline + sbtest::kSpareMember;
  ASSERT_EQ(broker->wait_for_fd_count(expected), expected) << broker->fd_listing();
  EXPECT_EQ(squat_errno_as_nobody(8116, true, false), EADDRINUSE);
  EXPECT_EQ(squat_errno_as_nobody(8116, true, true), EADDRINUSE);
}

// ---------------------------------------------------------------------------
// Unix socket paths

TEST_F(UnixSocket, DefaultOwnerIsRootAndDefaultModeIs0666) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  std::string path = dir.file("run/app.sock");
  auto broker = Broker::start(dir, R"(
[socket.app]
listen = ")" + path + R"("
[[socket.app.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  // 0666: anyone may connect, as with systemd's SocketMode= default.
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, path), 0);
  // The private directory the socket was made in is gone; nothing else appeared.
  EXPECT_EQ(entries(dir.file("run")), std::set<std::string>{"app.sock"});
}

TEST_F(UnixSocket, Mode0600OwnedByNobodyAdmitsOnlyNobody) {
  TempDir dir;
  std::string owner_only = dir.file("owner.sock");
  std::string group_only = dir.file("group.sock");
  auto broker = Broker::start(dir, R"(
[socket.owner]
listen = ")" + owner_only + R"("
socket_user = "nobody"
socket_mode = "0600"
[[socket.owner.allow]]
user = "nobody"

[socket.group]
listen = ")" + group_only + R"("
socket_group = "nogroup"
socket_mode = "0660"
[[socket.group.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  struct stat st {};
  ASSERT_EQ(::lstat(owner_only.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, sbtest::kNobody);
  EXPECT_EQ(st.st_gid, 0u);  // socket_group unset: root's group
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(unix_connect_errno_as(sbtest::kNobody, sbtest::kNogroup, owner_only), 0);
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, owner_only), EACCES);

  ASSERT_EQ(::lstat(group_only.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);  // socket_user unset: root
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(unix_connect_errno_as(sbtest::kNobody, sbtest::kNogroup, group_only), 0);  // by its group
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, group_only), EACCES);
}

TEST_F(UnixSocket, SymlinkAtThePathIsRefusedAndLeftAlone) {
  TempDir dir;
  TempDir elsewhere;  // under /tmp: where a followed link would lead
  std::string dangling_target = elsewhere.file("elsewhere");
  std::string file_target = elsewhere.file("precious");
  elsewhere.write("precious", "do not touch\n");
  std::string dangling = dir.file("dangling.sock");
  std::string to_file = dir.file("tofile.sock");
  std::string good = dir.file("good.sock");
  ASSERT_EQ(::symlink(dangling_target.c_str(), dangling.c_str()), 0);
  ASSERT_EQ(::symlink(file_target.c_str(), to_file.c_str()), 0);
  struct stat file_before {};
  ASSERT_EQ(::stat(file_target.c_str(), &file_before), 0);

  auto broker = Broker::start(dir, R"(
[socket.dangling]
listen = ")" + dangling + R"("
[[socket.dangling.allow]]
user = "nobody"

[socket.tofile]
listen = ")" + to_file + R"("
[[socket.tofile.allow]]
user = "nobody"

[socket.good]
listen = ")" + good + R"("
[[socket.good.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  for (const char* name : {"dangling", "tofile"}) {
    json failed = bind_failed_for(*broker, name);
    ASSERT_FALSE(failed.is_null()) << name << ": " << read_text(dir.file("audit.log"));
    EXPECT_NE(failed["error"].get<std::string>().find("symbolic link"), std::string::npos) << failed;
    auto refused = acquire_as_nobody(*broker, name);
    EXPECT_FALSE(refused.granted);
    EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
  }
  // The links still point where they did; nothing was created or changed at
  // their targets.
  EXPECT_EQ(fs::read_symlink(dangling).string(), dangling_target);
  EXPECT_EQ(fs::read_symlink(to_file).string(), file_target);
  struct stat st {};
  EXPECT_NE(::lstat(dangling_target.c_str(), &st), 0);
  ASSERT_EQ(::stat(file_target.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_ino, file_before.st_ino);
  EXPECT_EQ(st.st_mode, file_before.st_mode);
  EXPECT_EQ(read_text(file_target), "do not touch\n");
  EXPECT_EQ(entries(elsewhere.path()), std::set<std::string>{"precious"});

  // The other socket serves.
  auto served = ping_while_served(*broker, "good", [&] { return sbtest::unix_exchange(good, "ping"); });
  ASSERT_TRUE(served.grant.granted) << served.grant.message;
  EXPECT_EQ(served.answer, "pong:ping");
  for (const auto& name : entries(dir.path())) EXPECT_EQ(name.rfind(".sockbroker", 0), std::string::npos) << name;
}

TEST_F(UnixSocket, RegularFileAtThePathIsRefusedAndLeftAlone) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  std::string path = dir.file("run/app.sock");
  dir.write("run/app.sock", "not a socket\n");
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);

  auto broker = Broker::start(dir, R"(
[socket.app]
listen = ")" + path + R"("
[[socket.app.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "app");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("not a socket"), std::string::npos) << failed;
  EXPECT_EQ(failed["local_addr"]["sun_path"], path) << failed;

  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_TRUE(S_ISREG(after.st_mode));
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mode, before.st_mode);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(read_text(path), "not a socket\n");
  EXPECT_EQ(entries(dir.file("run")), std::set<std::string>{"app.sock"});
  auto refused = acquire_as_nobody(*broker, "app");
  EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
}

TEST_F(UnixSocket, StaleSocketIsReplacedAndTheBrokersSocketServes) {
  TempDir dir;
  std::string path = dir.file("app.sock");
  // A previous service bound and listened here, then closed its socket: the
  // file stays behind with no one accepting on it.
  int previous = bind_unix(path, SOCK_STREAM);
  ASSERT_EQ(::listen(previous, 4), 0);
  ASSERT_EQ(::close(previous), 0);
  struct stat stale {};
  ASSERT_EQ(::lstat(path.c_str(), &stale), 0);
  ASSERT_TRUE(S_ISSOCK(stale.st_mode));
  // So that the file below can only be the broker's (its inode number may be
  // the stale one's: the broker unlinks it, then binds, and file systems
  // reuse a freed inode at once).
  ASSERT_NE(stale.st_gid, sbtest::kNogroup);
  ASSERT_NE(stale.st_mode & 07777, 0660u);

  auto broker = Broker::start(dir, R"(
[socket.app]
listen = ")" + path + R"("
socket_mode = "0660"
socket_group = "nogroup"
[[socket.app.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  EXPECT_TRUE(bound(*broker, "app")) << read_text(dir.file("audit.log"));
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);  // a new socket file, the broker's
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  auto served = ping_while_served(*broker, "app", [&] { return sbtest::unix_exchange(path, "ping"); });
  ASSERT_TRUE(served.grant.granted) << served.grant.message;
  EXPECT_EQ(served.answer, "pong:ping");
}

// A datagram socket has no listen(2): a stale one is told from a live one by
// connect(2) being refused too.
TEST_F(UnixSocket, StaleDatagramSocketIsReplacedAndServes) {
  TempDir dir;
  std::string path = dir.file("log.sock");
  ASSERT_EQ(::close(bind_unix(path, SOCK_DGRAM)), 0);
  auto broker = Broker::start(dir, R"(
[socket.log]
listen = ")" + path + R"("
type = "datagram"
[[socket.log.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  EXPECT_TRUE(bound(*broker, "log")) << read_text(dir.file("audit.log"));
  // Queued on the broker's socket before anyone holds it, read by the holder.
  int sender = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = sbtest::unix_address(path);
  EXPECT_EQ(::sendto(sender, "entry", 5, 0, reinterpret_cast<sockaddr*>(&address), sizeof address), 5)
      << std::strerror(errno);
  ::close(sender);
  auto received = acquire_as_nobody(*broker, "log", [](int fd) -> json {
    char buffer[16] = {};
    ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string("<nothing>");
  });
  ASSERT_TRUE(received.granted) << received.message;
  EXPECT_EQ(received.probe, "entry");
}

// Accepts until a connection brings `expected` (the broker's liveness probe may
// be queued first, already closed): the listener still serves its owner.
bool listener_still_serves(int listener, const std::string& path) {
  std::thread client([&] { (void)sbtest::unix_exchange(path, "hello", 2000); });
  bool seen = false;
  for (int i = 0; i < 4 && !seen; ++i) {
    int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) break;
    char buffer[16] = {};
    ssize_t n = ::read(conn, buffer, sizeof buffer);
    seen = n == 5 && std::string(buffer, 5) == "hello";
    ::close(conn);
  }
  client.join();
  return seen;
}

TEST_F(UnixSocket, LiveSocketAtThePathIsRefusedAndKeepsServingItsOwner) {
  TempDir dir;
  std::string path = dir.file("app.sock");
  std::string good = dir.file("good.sock");
  int other = bind_unix(path, SOCK_STREAM);
  ASSERT_EQ(::listen(other, 8), 0);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);

  auto broker = Broker::start(dir, R"(
[socket.app]
listen = ")" + path + R"("
[[socket.app.allow]]
user = "nobody"

[socket.good]
listen = ")" + good + R"("
[[socket.good.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "app");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("another process is listening"), std::string::npos) << failed;
  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_TRUE(listener_still_serves(other, path));
  EXPECT_EQ(acquire_as_nobody(*broker, "app").code, SOCKBROKER_E_BIND);
  EXPECT_TRUE(acquire_as_nobody(*broker, "good").granted);
  EXPECT_EQ(entries(dir.path()).count("app.sock"), 1u);
  for (const auto& name : entries(dir.path())) EXPECT_EQ(name.rfind(".sockbroker", 0), std::string::npos) << name;
  ::close(other);
}

// A listener whose accept queue is full still has an owner: connect(2) says
// EAGAIN, not ECONNREFUSED, and the socket must not be taken for stale.
TEST_F(UnixSocket, LiveSocketWithAFullBacklogIsStillRefused) {
  TempDir dir;
  std::string path = dir.file("busy.sock");
  int other = bind_unix(path, SOCK_STREAM);
  ASSERT_EQ(::listen(other, 0), 0);
  // Fill the queue: with backlog 0 the kernel takes one connection.
  std::vector<int> queued;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un address = sbtest::unix_address(path);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    queued.push_back(fd);
    if (rc != 0 && errno == EAGAIN) break;
  }
  auto broker = Broker::start(dir, R"(
[socket.busy]
listen = ")" + path + R"("
[[socket.busy.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "busy");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("another process is listening"), std::string::npos) << failed;
  for (int fd : queued) ::close(fd);
  EXPECT_TRUE(listener_still_serves(other, path));
  ::close(other);
}

// A socket of another type bound at the path is just as alive: a stream probe
// gets EPROTOTYPE from it, which must not read as "stale".
TEST_F(UnixSocket, LiveSocketOfAnotherTypeIsRefusedAndKeepsWorking) {
  TempDir dir;
  std::string path = dir.file("log.sock");
  int other = bind_unix(path, SOCK_DGRAM);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);

  auto broker = Broker::start(dir, R"(
[socket.log]
listen = ")" + path + R"("
type = "stream"
[[socket.log.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  json failed = bind_failed_for(*broker, "log");
  ASSERT_FALSE(failed.is_null()) << read_text(dir.file("audit.log"));
  EXPECT_NE(failed["error"].get<std::string>().find("another process"), std::string::npos) << failed;
  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);

  // Its owner still receives what is sent to the path.
  int sender = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = sbtest::unix_address(path);
  EXPECT_EQ(::sendto(sender, "log", 3, 0, reinterpret_cast<sockaddr*>(&address), sizeof address), 3)
      << std::strerror(errno);
  char buffer[8] = {};
  EXPECT_EQ(::recv(other, buffer, sizeof buffer, MSG_DONTWAIT), 3);
  ::close(sender);
  ::close(other);
}

TEST_F(UnixSocket, MissingParentDirectoriesAreCreatedRootOwned0755) {
  TempDir dir;
  std::string path = dir.file("a/b/c/app.sock");
  auto broker = Broker::start(dir, R"(
[socket.app]
listen = ")" + path + R"("
socket_user = "nobody"
socket_mode = "0600"
[[socket.app.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  for (const char* sub : {"a", "a/b", "a/b/c"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(dir.file(sub).c_str(), &st), 0) << sub;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << sub;
    EXPECT_EQ(st.st_uid, 0u) << sub;
    EXPECT_EQ(st.st_gid, 0u) << sub;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << sub;
  }
  EXPECT_EQ(entries(dir.file("a/b/c")), std::set<std::string>{"app.sock"});
  // nobody can reach it through the new directories.
  EXPECT_EQ(unix_connect_errno_as(sbtest::kNobody, sbtest::kNogroup, path), 0);
}

// A hardened unit may start the broker with UMask=0077: the directories it
// creates must still be 0755, or no client could reach the socket.
TEST_F(UnixSocket, MissingParentDirectoriesAre0755UnderARestrictiveUmask) {
  TempDir dir;
  std::string path = dir.file("x/y/app.sock");
  mode_t previous = ::umask(077);  // inherited by the broker we fork
  auto broker = Broker::start(dir, R"(
[socket.app]
listen = ")" + path + R"("
[[socket.app.allow]]
user = "nobody"
)");
  ::umask(previous);
  ASSERT_TRUE(broker);
  for (const char* sub : {"x", "x/y"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(dir.file(sub).c_str(), &st), 0) << sub;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << sub;
  }
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_EQ(unix_connect_errno_as(kDaemonUid, kDaemonGid, path), 0);
}

// Near the 107-byte limit the private directory's path would not fit in
// sun_path; the broker binds through /proc/self/fd instead.
TEST_F(UnixSocket, PathNearTheLengthLimitIsCreated) {
  TempDir dir;
  std::string base = "app.sock";
  std::size_t fill = 107 - dir.path().size() - 2 - base.size();
  std::string deep = dir.file(std::string(fill, 'd'));
  std::string path = deep + "/" + base;
  ASSERT_EQ(path.size(), 107u);
  auto broker = Broker::start(dir, R"(
[socket.long]
listen = ")" + path + R"("
[[socket.long.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  EXPECT_TRUE(bound(*broker, "long")) << read_text(dir.file("audit.log"));
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(entries(deep), std::set<std::string>{base});

  auto served = ping_while_served(*broker, "long", [&] { return sbtest::unix_exchange(path, "ping"); });
  ASSERT_TRUE(served.grant.granted) << served.grant.message;
  EXPECT_EQ(served.answer, "pong:ping");
}

TEST_F(UnixSocket, AbstractNameIsGrantedAndReachable) {
  TempDir dir;
  std::string name = unique_name("sbtest-abstract");
  auto broker = Broker::start(dir, R"(
[socket.abs]
listen = "@)" + name + R"("
allow_abstract = true
[[socket.abs.allow]]
user = "nobody"
)");
  ASSERT_TRUE(broker);
  auto pinged = ping_while_served(*broker, "abs", [&] { return abstract_exchange(name, "ping"); }, [](int fd) -> json {
    sockaddr_un bound{};
    socklen_t length = sizeof bound;
    std::string bound_name;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0 &&
        length > offsetof(sockaddr_un, sun_path) + 1 && bound.sun_path[0] == '\0') {
      bound_name.assign(bound.sun_path + 1, length - offsetof(sockaddr_un, sun_path) - 1);
    }
    return json{{"bound", bound_name}, {"served", serve_one(fd)}};
  });
  const Acquired& served = pinged.grant;
  ASSERT_TRUE(served.granted) << served.message;
  EXPECT_EQ(served.family, AF_UNIX);
  EXPECT_EQ(served.address, "@" + name);
  EXPECT_EQ(served.probe["bound"], name) << served.probe;  // no trailing NUL in the name
  EXPECT_EQ(pinged.answer, "pong:ping");
}

// ---------------------------------------------------------------------------
// Identity rules: unit, executable, cgroup

TEST_F(Identity, UnitRuleGrantsInsideTheUnitOnly) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.web]
listen = "127.0.0.1:8201"
[[socket.web.allow]]
unit = "web.service"
)");
  ASSERT_TRUE(broker);

  auto inside = acquire_with(*broker, "web", in_cgroup(web));
  EXPECT_TRUE(inside.granted) << inside.message;
  json grant = nth_decision(*broker, "grant", "web", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["unit"], "web.service") << grant;
  EXPECT_EQ(grant["peer"]["uid"], sbtest::kNobody) << grant;
  EXPECT_EQ(grant["rule"], 0) << grant;

  auto outside = acquire_with(*broker, "web", in_root_cgroup());
  EXPECT_FALSE(outside.granted);
  EXPECT_EQ(outside.code, SOCKBROKER_E_DENIED) << outside.message;
  json deny = nth_decision(*broker, "deny", "web", 0);
  ASSERT_FALSE(deny.is_null());
  EXPECT_EQ(deny["reason"], "no_rule_matched") << deny;
  EXPECT_NE(deny["peer"]["unit"], "web.service") << deny;
}

TEST_F(Identity, ExecutableRuleMatchesTheCallersBinary) {
  TempDir dir;
  // A forked child runs this very binary: its /proc/PID/exe is ours.
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  // The same bytes at another path are another executable.
  const std::string copy = sbtest::programs().self;
  ASSERT_NE(self, copy);
  auto broker = Broker::start(dir, R"(
[socket.mine]
listen = "127.0.0.1:8202"
[[socket.mine.allow]]
executable = ")" + self + R"("

[socket.other]
listen = "127.0.0.1:8203"
[[socket.other.allow]]
executable = ")" + copy + R"("
)");
  ASSERT_TRUE(broker);
  auto mine = acquire_as_nobody(*broker, "mine");
  EXPECT_TRUE(mine.granted) << mine.message;
  json grant = nth_decision(*broker, "grant", "mine", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["exe"], self) << grant;

  auto other = acquire_as_nobody(*broker, "other");
  EXPECT_FALSE(other.granted);
  EXPECT_EQ(other.code, SOCKBROKER_E_DENIED) << other.message;
}

// After exec the caller is the new program: `sockbroker get` asks as itself.
TEST_F(Identity, ExecutableRuleSeesTheProgramAfterExec) {
  TempDir dir;
  const std::string cli = sbtest::programs().sockbroker;
  auto broker = Broker::start(dir, R"(
[socket.cli]
listen = "127.0.0.1:8204"
[[socket.cli.allow]]
executable = ")" + cli + R"("

[socket.notcli]
listen = "127.0.0.1:8205"
[[socket.notcli.allow]]
executable = ")" + sbtest::programs().self + R"("
)");
  ASSERT_TRUE(broker);
  auto granted = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                        {cli, "--control", broker->control(), "get", "cli", "--", "/bin/true"});
  EXPECT_EQ(granted.exit_code, 0) << granted.output;
  json grant = nth_decision(*broker, "grant", "cli", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["exe"], cli) << grant;

  auto denied = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                       {cli, "--control", broker->control(), "get", "notcli", "--", "/bin/true"});
  EXPECT_EQ(denied.exit_code, 77) << denied.output;
}

TEST_F(Identity, CgroupRuleIsAPrefixOnPathBoundaries) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  ASSERT_EQ(web.path(), "/" + slice + "/web.service");
  const std::string partial = "/" + slice.substr(0, slice.size() - 3);  // "/sbtest-….sli"
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.slice]
listen = "127.0.0.1:8206"
[[socket.slice.allow]]
cgroup = "/)" + slice + R"("

[socket.trailing]
listen = "127.0.0.1:8207"
[[socket.trailing.allow]]
cgroup = "/)" + slice + R"(/"

[socket.exact]
listen = "127.0.0.1:8208"
[[socket.exact.allow]]
cgroup = ")" + web.path() + R"("

[socket.partial]
listen = "127.0.0.1:8209"
[[socket.partial.allow]]
cgroup = ")" + partial + R"("
)");
  ASSERT_TRUE(broker);
  const ChildSetup in_web = in_cgroup(web);
  for (const char* name : {"slice", "trailing", "exact"}) {
    auto inside = acquire_with(*broker, name, in_web);
    EXPECT_TRUE(inside.granted) << name << ": " << inside.message;
  }
  // "/x.sli" is a string prefix of "/x.slice/…" but not a path prefix.
  auto sibling = acquire_with(*broker, "partial", in_web);
  EXPECT_FALSE(sibling.granted);
  EXPECT_EQ(sibling.code, SOCKBROKER_E_DENIED) << sibling.message;
  // Outside the slice: denied.
  auto outside = acquire_with(*broker, "slice", in_root_cgroup());
  EXPECT_FALSE(outside.granted);
  EXPECT_EQ(outside.code, SOCKBROKER_E_DENIED) << outside.message;
}

TEST_F(Identity, UserAndUnitInOneRuleMustBothMatch) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.web]
listen = "127.0.0.1:8210"
[[socket.web.allow]]
user = "nobody"
unit = "web.service"
)");
  ASSERT_TRUE(broker);
  auto both = acquire_with(*broker, "web", in_cgroup(web));
  EXPECT_TRUE(both.granted) << both.message;
  auto user_only = acquire_with(*broker, "web", in_root_cgroup());
  EXPECT_EQ(user_only.code, SOCKBROKER_E_DENIED) << user_only.message;
  auto unit_only = acquire_with(*broker, "web", in_cgroup(web, kDaemonUid, kDaemonGid));
  EXPECT_EQ(unit_only.code, SOCKBROKER_E_DENIED) << unit_only.message;
  json deny = nth_decision(*broker, "deny", "web", 1);  // the second denial: daemon's
  ASSERT_FALSE(deny.is_null());
  EXPECT_EQ(deny["peer"]["uid"], kDaemonUid) << deny;
  EXPECT_EQ(deny["peer"]["unit"], "web.service") << deny;  // the unit matched, the user did not
}

// A rule that needs a unit never matches a caller without one: in no unit at
// all, or in a slice only (where sd_pid_get_unit finds nothing).
TEST_F(Identity, UnitRuleFailsClosedForACallerWithoutAUnit) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup bare(slice);
  ASSERT_TRUE(bare.ok());
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.web]
listen = "127.0.0.1:8211"
[[socket.web.allow]]
unit = "web.service"

[socket.sliced]
listen = "127.0.0.1:8212"
[[socket.sliced.allow]]
unit = ")" + slice + R"("
)");
  ASSERT_TRUE(broker);
  std::size_t denials = 0;
  for (const auto& setup : {in_root_cgroup(), in_cgroup(bare)}) {
    auto denied = acquire_with(*broker, "web", setup);
    EXPECT_FALSE(denied.granted);
    EXPECT_EQ(denied.code, SOCKBROKER_E_DENIED) << denied.message;
    json deny = nth_decision(*broker, "deny", "web", denials++);
    ASSERT_FALSE(deny.is_null());
    EXPECT_TRUE(deny["peer"]["unit"].is_null()) << deny;
  }
  // A slice is not the caller's unit either, even when a rule names it.
  auto in_slice = acquire_with(*broker, "sliced", in_cgroup(bare));
  EXPECT_EQ(in_slice.code, SOCKBROKER_E_DENIED) << in_slice.message;
}

// systemd/sockbroker.service bounds the broker's capabilities without
// CAP_KILL, and the broker drops what it was not given. Proving that what /proc
// said still described the caller (not a successor on its pid) must not need
// the right to signal the caller, or every unit, executable and cgroup rule
// would fail closed under the shipped unit.
TEST_F(Identity, UnitRuleWorksForABrokerWithoutCapKill) {
  SBTEST_REQUIRE_CGROUP2();
  const std::string slice = unique_name("sbtest") + ".slice";
  TestCgroup web(slice + "/web.service");
  ASSERT_TRUE(web.ok());
  TempDir dir;
  const std::string policy = R"(
[socket.web]
listen = "127.0.0.1:8213"
[[socket.web.allow]]
unit = "web.service"
)";
  ChildSetup as_root;
  as_root.uid = 0;
  as_root.gid = 0;
  // In a child of its own, so that this test process keeps its bounding set.
  auto outcome = sbtest::run_as(as_root, [&](int report_fd) {
    if (::prctl(PR_CAPBSET_DROP, CAP_KILL, 0, 0, 0) != 0) {
      sbtest::report(report_fd, std::string("PR_CAPBSET_DROP: ") + std::strerror(errno));
      return 10;
    }
    auto broker = Broker::start(dir, policy);
    if (!broker) return 11;
    // What the broker runs with: CapEff from /proc/PID/status, in hex.
    std::istringstream status(read_text("/proc/" + std::to_string(broker->pid()) + "/status"));
    unsigned long long effective = ~0ULL;
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("CapEff:", 0) == 0) effective = std::stoull(line.substr(7), nullptr, 16);
    }
    auto inside = acquire_with(*broker, "web", in_cgroup(web));
    sbtest::report(report_fd, json{{"cap_kill", (effective >> CAP_KILL) & 1U},
                                   {"granted", inside.granted},
                                   {"message", inside.message}}
                                  .dump());
    return 0;
  });
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  json result = json::parse(outcome.output, nullptr, false);
  ASSERT_FALSE(result.is_discarded()) << outcome.output;
  EXPECT_EQ(result["cap_kill"], 0) << "the broker still had CAP_KILL: the test proves nothing";
  EXPECT_EQ(result["granted"], true) << result;
  bool unit_seen = false;
  std::istringstream audit(read_text(dir.file("audit.log")));
  for (std::string line; std::getline(audit, line);) {
    json event = json::parse(line, nullptr, false);
    if (event.is_discarded() || event.value("event", "") != "grant") continue;
    unit_seen = event["peer"]["unit"] == "web.service";
  }
  EXPECT_TRUE(unit_seen) << read_text(dir.file("audit.log"));
}

// ---------------------------------------------------------------------------
// Group rules

TEST_F(GroupRule, NamedGroupMatchesThePrimaryGid) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.dns]
listen = "127.0.0.1:8301"
type = "datagram"
[[socket.dns.allow]]
group = "nogroup"
)");
  ASSERT_TRUE(broker);
  auto nobody = acquire_with(*broker, "dns", ChildSetup{});
  EXPECT_TRUE(nobody.granted) << nobody.message;
  json grant = nth_decision(*broker, "grant", "dns", 0);
  ASSERT_FALSE(grant.is_null());
  EXPECT_EQ(grant["peer"]["gid"], sbtest::kNogroup);
  EXPECT_EQ(grant["rule"], 0);
  // The same uid with another primary group and no supplementary ones.
  auto other = acquire_with(*broker, "dns", with_groups(kDaemonGid, {}));
  EXPECT_EQ(other.code, SOCKBROKER_E_DENIED) << other.message;
}

TEST_F(GroupRule, SupplementaryGroupMatches) {
  TempDir dir;
  auto broker = Broker::start(dir, R"(
[socket.web]
listen = "127.0.0.1:8302"
[[socket.web.allow]]
group = "daemon"

[socket.bygid]
listen = "127.0.0.1:8303"
[[socket.bygid.allow]]
group = 1
)");
  ASSERT_TRUE(broker);
  // Primary nogroup; daemon (gid 1) only as a supplementary group, not first.
  const ChildSetup member = with_groups(sbtest::kNogroup, {7, kDaemonGid});
  for (const char* name : {"web", "bygid"}) {
    auto granted = acquire_with(*broker, name, member);
    EXPECT_TRUE(granted.granted) << name << ": " << granted.message;
  }
  auto stranger = acquire_with(*broker, "web", with_groups(sbtest::kNogroup, {7}));
  EXPECT_EQ(stranger.code, SOCKBROKER_E_DENIED) << stranger.message;
}

}  // namespace
