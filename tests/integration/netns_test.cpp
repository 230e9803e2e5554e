// netns = "request" sockets against the real kernel: a container runtime's
// identity asks for a socket in a network namespace it sends along, and the
// broker binds it there (and nowhere else), comes back to its own namespace,
// and keeps nothing. The test process's private namespace (SBTEST_PREPARE) is
// the broker's; namespaces A, B, ... are made by unshare and held by descriptor.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <sockbroker/client.hpp>

#include "datagram.hpp"
#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;
using sockbroker::UniqueFd;

constexpr uid_t kRuntime = sbtest::kNobody;  // the policy's runtime identity
constexpr uid_t kStranger = 4242;            // any other uid

// No max_grants_per_client: the runtime asks 1,000 times below, over the
// default 256, and must never be refused for grants it handed on.
std::string policy() {
  return sbtest::PolicyBuilder()
      .socket("web", "0.0.0.0:80")
      .set_string("netns", "request")
      .allow_toml({{"user", "65534"}})
      .socket("api", "127.0.0.1:8080")
      .allow_toml({{"user", "65534"}});
}

using sbtest::inode_of;

std::uint64_t netns_inode_of_pid(pid_t pid) {
  struct stat st {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

// A fresh network namespace with lo up, alive as long as `fd` is open. Made by
// stepping into it and back, so no process has to live in it.
struct Netns {
  UniqueFd fd;
  std::uint64_t inode = 0;
  // "/proc/TESTPID/fd/N": a path naming it, for programs (root only).
  [[nodiscard]] std::string path() const {
    return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd.get());
  }
};

Netns make_netns() {
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(home);
  EXPECT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  Netns ns;
  ns.fd.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ns.inode = inode_of(ns.fd.get());
  EXPECT_EQ(sbtest::bring_loopback_up(), "");
  if (::setns(home.get(), CLONE_NEWNET) != 0) std::abort();  // the rest of the test would run in the wrong place
  return ns;
}

// The network namespace a socket belongs to (SIOCGSKNS), by inode.
std::uint64_t socket_netns(int sock) {
  UniqueFd ns(::ioctl(sock, SIOCGSKNS));
  return ns ? inode_of(ns.get()) : 0;
}

// Whether a TCP connect to ip:port succeeds from inside `netns` (a root child
// entered into it). netns < 0: from the test's (the broker's) namespace.
bool connects_in(int netns, const char* ip, std::uint16_t port, const char* source = nullptr) {
  auto result = sbtest::run_as(0, 0, [&](int) {
    if (netns >= 0 && ::setns(netns, CLONE_NEWNET) != 0) return 2;
    UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (source != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &local.sin_addr);
      if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return 3;
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, ip, &to.sin_addr);
    return ::connect(sock.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 ? 0 : 1;
  });
  return result.exit_code == 0;
}

// What a runtime (a process of `uid`) gets when it asks for `name` in netns_fd
// (-1: without a namespace): the granted socket, passed back to the test
// process, or the error code and the broker's message.
struct Asked {
  UniqueFd socket;
  int code = 0;
  std::string message;
};

Asked ask_as(uid_t uid, const std::string& control, const std::string& name, int netns_fd) {
  int pair[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd mine(pair[0]), theirs(pair[1]);
  auto child = sbtest::run_as(uid, uid, [&](int report_fd) {
    auto client = sockbroker::Client::connect(control);
    if (!client) {
      sbtest::report(report_fd, client.error().message);
      return 100;
    }
    auto grant = netns_fd >= 0 ? client->acquire_in_netns(name, netns_fd) : client->acquire(name);
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return -grant.error().code;
    }
    const std::byte ok[8]{};
    return sockbroker::proto::send_datagram(theirs.get(), ok, grant->fd.get()) ? 0 : 101;
  });
  Asked out;
  out.message = child.output;
  if (child.exit_code != 0) {
    out.code = -child.exit_code;
    return out;
  }
  std::byte buffer[16];
  auto received = sockbroker::proto::receive_datagram(mine.get(), buffer, MSG_DONTWAIT);
  if (received && received->fds.size() == 1) out.socket = std::move(received->fds[0]);
  return out;
}

std::uint16_t local_port(int sock) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (::getsockname(sock, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  return ntohs(reinterpret_cast<sockaddr_in&>(address).sin_port);
}

// The peer address of the next connection on a listening socket (waits 5 s).
std::string accept_peer(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return "<nothing to accept>";
  sockaddr_in peer{};
  socklen_t length = sizeof peer;
  UniqueFd conn(::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC));
  if (!conn) return std::string("<accept: ") + std::strerror(errno) + ">";
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &peer.sin_addr, text, sizeof text);
  return text;
}

// ip(8), in the namespace at netns_path if given (`ip -n` takes names only).
int run_ip(const std::vector<std::string>& args, std::string* output, const std::string& netns_path = {}) {
  std::vector<std::string> argv;
  if (!netns_path.empty()) argv = {"/usr/bin/nsenter", "--net=" + netns_path};
  argv.push_back(std::filesystem::exists("/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip");
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = sbtest::run_command_as(0, 0, argv);
  if (output != nullptr) *output = result.output;
  return result.exit_code;
}

// A namespace mounted at `path` as `ip netns add` does (a bind mount of the
// nsfs file on an empty file), unmounted and removed when this goes.
class MountedNetns {
 public:
  MountedNetns(const Netns& ns, std::string path) : path_(std::move(path)) {
    UniqueFd target(::open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0444));
    EXPECT_TRUE(target) << path_ << ": " << std::strerror(errno);
    const std::string source = "/proc/self/fd/" + std::to_string(ns.fd.get());
    mounted_ = ::mount(source.c_str(), path_.c_str(), nullptr, MS_BIND, nullptr) == 0;
    EXPECT_TRUE(mounted_) << "mount --bind " << source << " " << path_ << ": " << std::strerror(errno);
  }
  ~MountedNetns() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    ::unlink(path_.c_str());
  }
  MountedNetns(const MountedNetns&) = delete;
  MountedNetns& operator=(const MountedNetns&) = delete;

 private:
  std::string path_;
  bool mounted_ = false;
};

}  // namespace

TEST(Netns, GrantIsBoundInsideTheRequestedNamespaceOnly) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  Netns a = make_netns(), b = make_netns();
  ASSERT_NE(a.inode, b.inode);

  Asked web = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  ASSERT_TRUE(web.socket) << web.code << ": " << web.message;
  EXPECT_EQ(socket_netns(web.socket.get()), a.inode) << "the socket belongs to namespace A";
  EXPECT_EQ(local_port(web.socket.get()), 80);

  EXPECT_TRUE(connects_in(a.fd.get(), "127.0.0.1", 80)) << "listening inside A";
  EXPECT_FALSE(connects_in(b.fd.get(), "127.0.0.1", 80)) << "not in B";
  EXPECT_FALSE(connects_in(-1, "127.0.0.1", 80)) << "not in the broker's namespace";
  // The connection made inside A waits in the granted socket's queue.
  EXPECT_EQ(accept_peer(web.socket.get()), "127.0.0.1");

  // The broker never holds such a socket: nothing is bound in its namespace at start-up either.
  EXPECT_NE(broker->log().find("bound per grant"), std::string::npos) << broker->log();

  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0]["netns"], a.inode) << grants[0].dump();
  EXPECT_EQ(grants[0]["peer"]["uid"], kRuntime) << "the requester is the peer";
  EXPECT_EQ(grants[0]["socket"], "web");
}

TEST(Netns, SecondGrantInAHeldNamespaceIsAddressInUseOtherNamespacesAreGranted) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  Netns a = make_netns(), b = make_netns();

  Asked first = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  ASSERT_TRUE(first.socket) << first.message;
  Asked in_b = ask_as(kRuntime, broker->control(), "web", b.fd.get());
  ASSERT_TRUE(in_b.socket) << in_b.message;
  EXPECT_EQ(socket_netns(in_b.socket.get()), b.inode);

  Asked again = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  EXPECT_FALSE(again.socket);
  EXPECT_EQ(again.code, SOCKBROKER_E_BIND) << again.message;
  EXPECT_NE(again.message.find("address in use"), std::string::npos) << again.message;
  EXPECT_NE(again.message.find("0.0.0.0:80"), std::string::npos) << "names the address: " << again.message;
  EXPECT_NE(again.message.find(std::to_string(a.inode)), std::string::npos) << "names the namespace: " << again.message;
  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "bind_failed");
  EXPECT_EQ(denials[0]["netns"], a.inode);

  // Once A's holder lets go, A can be granted again; the broker kept serving throughout.
  first.socket.reset();
  Asked after = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  EXPECT_TRUE(after.socket) << after.message;
  Asked api = ask_as(kRuntime, broker->control(), "api", -1);
  EXPECT_TRUE(api.socket) << api.message;
}

TEST(Netns, RefusedRequestsBindNothingAnywhere) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  Netns c = make_netns();

  Asked stranger = ask_as(kStranger, broker->control(), "web", c.fd.get());
  EXPECT_EQ(stranger.code, SOCKBROKER_E_DENIED) << stranger.message;
  EXPECT_NE(stranger.message.find("uid 4242"), std::string::npos) << stranger.message;

  UniqueFd file(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file);
  Asked not_ns = ask_as(kRuntime, broker->control(), "web", file.get());
  EXPECT_EQ(not_ns.code, SOCKBROKER_E_INVALID) << not_ns.message;
  // What the descriptor is comes from /proc (its link, its mount), never from
  // the file itself, which a FUSE server could make the broker wait on.
  EXPECT_NE(not_ns.message.find("a file or directory (on "), std::string::npos) << not_ns.message;
  EXPECT_NE(not_ns.message.find("), not a network namespace"), std::string::npos) << not_ns.message;

  UniqueFd mount_ns(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(mount_ns);
  Asked wrong_kind = ask_as(kRuntime, broker->control(), "web", mount_ns.get());
  EXPECT_EQ(wrong_kind.code, SOCKBROKER_E_INVALID) << wrong_kind.message;
  EXPECT_NE(wrong_kind.message.find("mount namespace, not a network namespace"), std::string::npos)
      << wrong_kind.message;

  Asked without = ask_as(kRuntime, broker->control(), "web", -1);
  EXPECT_EQ(without.code, SOCKBROKER_E_INVALID) << without.message;
  EXPECT_NE(without.message.find("carried none"), std::string::npos) << without.message;

  EXPECT_FALSE(connects_in(c.fd.get(), "127.0.0.1", 80)) << "nothing bound in the namespace sent";
  EXPECT_FALSE(connects_in(-1, "127.0.0.1", 80)) << "nothing bound in the broker's";

  auto denials = broker->wait_for_events("deny", 4);
  ASSERT_EQ(denials.size(), 4u);
  EXPECT_EQ(denials[0]["reason"], "no_rule_matched");
  EXPECT_EQ(denials[0]["netns"], c.inode) << "a denial names the namespace asked for: " << denials[0].dump();
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
}

// Security review round 2, item 4: a runtime uid sent the broker's own
// namespace (its own /proc/self/ns/net: the runtime runs on the host) for a
// reuse_port request socket on the port of a broker reuse_port socket, and the
// broker, root for both, bound a new member of that group for it: half the
// host socket's connections. Now refused, whoever asks.
TEST(Netns, TheBrokersOwnNamespaceIsRefused) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("host", "127.0.0.1:8443")
                                       .set("reuse_port", "true")
                                       .allow_toml({{"user", "4242"}})
                                       .socket("side", "127.0.0.1:8443")
                                       .set("reuse_port", "true")
                                       .set_string("netns", "request")
                                       .allow_toml({{"user", "65534"}}));
  ASSERT_TRUE(broker);
  const std::uint64_t home = netns_inode_of_pid(broker->pid());

  // The runtime opens its own namespace, which is the broker's.
  auto own = sbtest::run_as(kRuntime, kRuntime, [&](int report_fd) {
    UniqueFd mine(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    auto client = sockbroker::Client::connect(broker->control());
    if (!mine || !client) return 100;
    auto grant = client->acquire_in_netns("side", mine.get());
    if (grant) return 0;
    sbtest::report(report_fd, grant.error().message);
    return -grant.error().code;
  });
  EXPECT_EQ(-own.exit_code, SOCKBROKER_E_DENIED) << own.exit_code << ": " << own.output;
  EXPECT_NE(own.output.find("is the broker's own"), std::string::npos) << own.output;

  // root, sending the same namespace, is refused too.
  UniqueFd same(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(same);
  Asked as_root = ask_as(0, broker->control(), "side", same.get());
  EXPECT_FALSE(as_root.socket);
  EXPECT_EQ(as_root.code, SOCKBROKER_E_DENIED) << as_root.message;

  auto denials = broker->wait_for_events("deny", 2);
  ASSERT_EQ(denials.size(), 2u);
  for (const auto& denial : denials) {
    EXPECT_EQ(denial["reason"], "netns_brokers_own") << denial.dump();
    EXPECT_EQ(denial["netns"], home) << denial.dump();
  }
  // Any other namespace is granted as before.
  Netns a = make_netns();
  Asked in_a = ask_as(kRuntime, broker->control(), "side", a.fd.get());
  ASSERT_TRUE(in_a.socket) << in_a.message;
  EXPECT_EQ(socket_netns(in_a.socket.get()), a.inode);
}

// netns_owner = "requester": a namespace made in a user namespace of the
// requester's own (a rootless container's) qualifies; one root made (another
// container's, /run/netns/NAME readable by everyone) does not.
TEST(Netns, OwnerRequesterTakesOnlyTheRequestersOwnNamespaces) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("web", "0.0.0.0:80")
                                       .set_string("netns", "request")
                                       .set_string("netns_owner", "requester")
                                       .allow_toml({{"user", "65534"}}));
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();

  Netns roots = make_netns();
  Asked theirs = ask_as(kRuntime, broker->control(), "web", roots.fd.get());
  EXPECT_FALSE(theirs.socket);
  EXPECT_EQ(theirs.code, SOCKBROKER_E_DENIED) << theirs.message;
  EXPECT_NE(theirs.message.find("its user namespace is owned by uid 0 (netns_owner allows the requester (uid 65534))"),
            std::string::npos)
      << theirs.message;
  EXPECT_FALSE(connects_in(roots.fd.get(), "127.0.0.1", 80)) << "nothing bound in the namespace refused";

  // The runtime's own: a user namespace and a network namespace made by uid 65534.
  auto own = sbtest::run_as(kRuntime, kRuntime, [&](int report_fd) {
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
      sbtest::report(report_fd, std::string("unshare(CLONE_NEWUSER | CLONE_NEWNET): ") + std::strerror(errno));
      return 100;
    }
    UniqueFd mine(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    auto client = sockbroker::Client::connect(broker->control());
    if (!mine || !client) return 101;
    auto grant = client->acquire_in_netns("web", mine.get());
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return 1;
    }
    return socket_netns(grant->fd.get()) == inode_of(mine.get()) && local_port(grant->fd.get()) == 80 ? 0 : 2;
  });
  EXPECT_EQ(own.exit_code, 0) << own.output;

  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "netns_not_allowed") << denials[0].dump();
  EXPECT_EQ(denials[0]["netns"], roots.inode) << denials[0].dump();
  EXPECT_EQ(broker->wait_for_events("grant").size(), 1u);
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
}

// netns_path: the namespace must be mounted at a matching path, found by the
// broker as itself (not through a link), in directories only root can change.
TEST(Netns, PathTakesOnlyNamespacesMountedThere) {
  SBTEST_PREPARE();
  TempDir dir;
  const std::string named = dir.file("netns");
  ASSERT_EQ(::mkdir(named.c_str(), 0755), 0);
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("web", "0.0.0.0:80")
                                       .set_string("netns", "request")
                                       .set_string("netns_path", named + "/ctr-*")
                                       .allow_toml({{"user", "65534"}}));
  ASSERT_TRUE(broker);

  Netns a = make_netns(), b = make_netns(), c = make_netns();
  MountedNetns at_a(a, named + "/ctr-a");
  MountedNetns at_b(b, named + "/other-b");
  const std::string link = named + "/ctr-link";
  ASSERT_EQ(::symlink(c.path().c_str(), link.c_str()), 0);

  Asked in_a = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  ASSERT_TRUE(in_a.socket) << in_a.message;
  EXPECT_EQ(socket_netns(in_a.socket.get()), a.inode);

  Asked in_b = ask_as(kRuntime, broker->control(), "web", b.fd.get());
  EXPECT_EQ(in_b.code, SOCKBROKER_E_DENIED) << in_b.message;
  EXPECT_NE(in_b.message.find("it is mounted at no netns_path (\"" + named + "/ctr-*\")"), std::string::npos)
      << in_b.message;
  Asked in_c = ask_as(kRuntime, broker->control(), "web", c.fd.get());
  EXPECT_EQ(in_c.code, SOCKBROKER_E_DENIED) << "a link to it is not a mount of it: " << in_c.message;

  // A directory someone else can change is not searched at all.
  ASSERT_EQ(::chown(named.c_str(), kRuntime, kRuntime), 0);
  in_a.socket.reset();
  Asked changed = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  EXPECT_EQ(changed.code, SOCKBROKER_E_DENIED) << changed.message;
  EXPECT_NE(changed.message.find("\"" + named + "\" is owned by uid 65534, not root"), std::string::npos)
      << changed.message;
  ::unlink(link.c_str());

  auto denials = broker->wait_for_events("deny", 3);
  ASSERT_EQ(denials.size(), 3u);
  for (const auto& denial : denials) EXPECT_EQ(denial["reason"], "netns_not_allowed") << denial.dump();
}

// `ip netns exec NAME sockbroker get --netns /run/netns/NAME ...`: the runtime
// opens the namespace in a mount namespace of its own, whose copy of the
// bind mount the broker's /proc/self/mountinfo does not list. Still a network
// namespace, and still the one mounted at the netns_path the broker sees.
TEST(Netns, NamespaceOpenedInAnotherMountNamespaceIsRecognised) {
  SBTEST_PREPARE();
  TempDir dir;
  const std::string named = dir.file("netns");
  ASSERT_EQ(::mkdir(named.c_str(), 0755), 0);
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("web", "0.0.0.0:80")
                                       .set_string("netns", "request")
                                       .set_string("netns_path", named + "/ctr-*")
                                       .allow_toml({{"user", "65534"}}));
  ASSERT_TRUE(broker);
  Netns a = make_netns();
  MountedNetns at_a(a, named + "/ctr-a");

  auto child = sbtest::run_as(0, 0, [&](int report_fd) {
    if (::unshare(CLONE_NEWNS) != 0) return 100;
    UniqueFd ns(::open((named + "/ctr-a").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns || ::setgroups(0, nullptr) != 0 || ::setgid(kRuntime) != 0 || ::setuid(kRuntime) != 0) return 101;
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 102;
    auto grant = client->acquire_in_netns("web", ns.get());
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return 1;
    }
    return 0;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0]["netns"], a.inode) << grants[0].dump();
}

TEST(Netns, BrokerSocketIgnoresANamespaceSentWithIt) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  Netns a = make_netns();

  Asked api = ask_as(kRuntime, broker->control(), "api", a.fd.get());
  ASSERT_TRUE(api.socket) << api.message;
  EXPECT_EQ(socket_netns(api.socket.get()), netns_inode_of_pid(broker->pid())) << "bound in the broker's namespace";
  EXPECT_EQ(local_port(api.socket.get()), 8080);
  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_FALSE(grants[0].contains("netns")) << grants[0].dump();
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << "the namespace sent was closed\n" << broker->fd_listing();
}

TEST(Netns, ThousandGrantsLeaveTheBrokerInItsOwnNamespace) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  const std::uint64_t home = netns_inode_of_pid(broker->pid());
  ASSERT_NE(home, 0u);
  Netns a = make_netns();

  auto child = sbtest::run_as(kRuntime, kRuntime, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 2;
    for (int i = 0; i < 1000; ++i) {
      auto grant = client->acquire_in_netns("web", a.fd.get());
      if (!grant) {
        sbtest::report(report_fd, "grant " + std::to_string(i) + ": " + grant.error().message);
        return 1;
      }
      // Closed at once: the next bind in A succeeds.
    }
    return 0;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_EQ(netns_inode_of_pid(broker->pid()), home) << "the broker is back in its own namespace";
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
  // And it still binds in its own namespace.
  Asked api = ask_as(kRuntime, broker->control(), "api", -1);
  ASSERT_TRUE(api.socket) << api.message;
  EXPECT_EQ(socket_netns(api.socket.get()), home);
}

TEST(Netns, ClientsReachTheContainerWithTheirRealAddress) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  Netns a = make_netns();
  // A veth pair: 10.9.0.2 in the test's namespace (the host), 10.9.0.1 in A
  // (the container). No proxy between them, only the kernel's routing.
  std::string out;
  ASSERT_EQ(run_ip({"link", "add", "sbhost0", "type", "veth", "peer", "name", "sbctr0"}, &out), 0) << out;
  ASSERT_EQ(run_ip({"link", "set", "sbctr0", "netns", a.path()}, &out), 0) << out;
  ASSERT_EQ(run_ip({"addr", "add", "10.9.0.2/24", "dev", "sbhost0"}, &out), 0) << out;
  ASSERT_EQ(run_ip({"link", "set", "sbhost0", "up"}, &out), 0) << out;
  ASSERT_EQ(run_ip({"addr", "add", "10.9.0.1/24", "dev", "sbctr0"}, &out, a.path()), 0) << out;
  ASSERT_EQ(run_ip({"link", "set", "sbctr0", "up"}, &out, a.path()), 0) << out;

  Asked web = ask_as(kRuntime, broker->control(), "web", a.fd.get());
  ASSERT_TRUE(web.socket) << web.message;

  // From the host side of the link (the broker's namespace) to the container's address.
  // The link needs a moment to come up.
  ASSERT_TRUE(sbtest::wait_until([] { return connects_in(-1, "10.9.0.1", 80); }, std::chrono::seconds(5),
                                 std::chrono::milliseconds(20)));
  EXPECT_EQ(accept_peer(web.socket.get()), "10.9.0.2") << "the server sees the client's own address";
  // And from a second address inside A itself.
  ASSERT_EQ(run_ip({"addr", "add", "10.9.0.3/24", "dev", "sbctr0"}, &out, a.path()), 0) << out;
  EXPECT_TRUE(connects_in(a.fd.get(), "10.9.0.1", 80, "10.9.0.3"));
  EXPECT_EQ(accept_peer(web.socket.get()), "10.9.0.3");
}

TEST(Netns, SockbrokerGetNetnsRunsTheProgramWithTheSocket) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  Netns a = make_netns();
  const auto& programs = sbtest::programs();
  // As root (granted every socket): only root can open /proc/TESTPID/fd/N.
  auto run = sbtest::run_command_as(0, 0, {programs.sockbroker, "--control", broker->control(), "get", "--netns",
                                           a.path(), "web", "--", programs.self, "--probe-listen-fds"});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto probe = nlohmann::json::parse(run.output.substr(run.output.find('{')));
  EXPECT_EQ(probe["n"], 1) << run.output;
  EXPECT_EQ(probe["names"][0], "web");
  EXPECT_EQ(probe["fds"][0]["listening_stream"], true);
  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0]["netns"], a.inode) << grants[0].dump();

  auto missing = sbtest::run_command_as(0, 0, {programs.sockbroker, "--control", broker->control(), "get", "--netns",
                                               dir.file("no-such-ns"), "web", "--", "/bin/true"});
  EXPECT_EQ(missing.exit_code, 64) << missing.output;
  EXPECT_NE(missing.output.find("cannot open the network namespace"), std::string::npos) << missing.output;
}

TEST(Netns, CApiAcquiresInANamespace) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  Netns a = make_netns();
  UniqueFd web(::sockbroker_acquire_netns(broker->control().c_str(), "web", a.fd.get(), 0));
  ASSERT_TRUE(web) << ::sockbroker_last_error();
  EXPECT_EQ(socket_netns(web.get()), a.inode);
  EXPECT_EQ(::sockbroker_acquire_netns(broker->control().c_str(), "web", a.fd.get(), 0), SOCKBROKER_E_BIND);
  EXPECT_NE(std::string(::sockbroker_last_error()).find("address in use"), std::string::npos) << ::sockbroker_last_error();
}
