// What the broker does to the kernel socket before it hands it out, read back
// on the granted descriptor itself: backlog, buffers, v6only, device, TCP
// options, reuse_port. Real kernel, real sockbrokerd, clients as uid 65534.
#include "granted_socket.hpp"
#include "policy_builder.hpp"

namespace {

using namespace sbgrant;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using SocketOptions = sbtest::BrokerTest;

// ---------------------------------------------------------------------------
// Socket options, read back on the granted descriptor


TEST_F(SocketOptions, BacklogIsTheListenQueueLength) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("short", "127.0.0.1:8101")
                                       .set("backlog", "77")
                                       .allow_user("nobody")
                                       .socket("default", "127.0.0.1:8102")
                                       .allow_user("nobody"));
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
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("buffers", "127.0.0.1:8103")
                                       .set("receive_buffer", "65536")
                                       .set("send_buffer", "131072")
                                       .allow_user("nobody")
                                       .socket("dgram", "127.0.0.1:8103")
                                       .set_string("type", "datagram")
                                       .set("receive_buffer", "100000")
                                       .allow_user("nobody"));
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
  if (rmem_max <= 0 || wmem_max <= 0) {
    // Older kernels (Debian 12's 6.1) show these only in the initial network
    // namespace, and the test runs in a private one.
    SBTEST_SKIP_OR_FAIL("net.core.rmem_max/wmem_max cannot be read in this network namespace");
  }
  if (rmem_max > INT_MAX / 2 - 4096 || wmem_max > INT_MAX / 2 - 4096) {
    SBTEST_SKIP_OR_FAIL("rmem_max/wmem_max are too large to exceed with an int");
  }
  const long receive = rmem_max + 4096;
  const long send = wmem_max * 2;
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("big", "127.0.0.1:8104")
                                       .set("receive_buffer", std::to_string(receive))
                                       .set("send_buffer", std::to_string(send))
                                       .allow_user("nobody"));
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
  auto broker =
      Broker::start(dir, sbtest::PolicyBuilder().socket("six", "[::]:8105").set("v6only", "true").allow_user("nobody"));
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
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("dual", "[::]:8106").set("v6only", "false").allow_user("nobody"));
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
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("tfo", "127.0.0.1:8107")
                                       .set("fast_open", "5")
                                       .allow_user("nobody")
                                       .socket("plain", "127.0.0.1:8108")
                                       .allow_user("nobody"));
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
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("free", "192.0.2.1:8109")
                                       .set("free_bind", "true")
                                       .allow_user("nobody")
                                       .socket("strict", "192.0.2.1:8110")
                                       .allow_user("nobody")
                                       .socket("plain", "127.0.0.1:8111")
                                       .allow_user("nobody"));
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
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("tproxy", "127.0.0.1:8112").set("transparent", "true").allow_user("nobody"));
  ASSERT_TRUE(broker);
  auto tproxy =
      acquire_as_nobody(*broker, "tproxy", [](int fd) -> json { return int_option(fd, IPPROTO_IP, IP_TRANSPARENT); });
  ASSERT_TRUE(tproxy.granted) << tproxy.message;
  EXPECT_EQ(tproxy.probe, 1);
}

TEST_F(SocketOptions, IPv6FreeBindAndTransparentReadBack) {
  TempDir dir;
  // 2001:db8::/32 is the IPv6 documentation prefix, on no interface here.
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("six", "[2001:db8::1]:8113")
                                       .set("free_bind", "true")
                                       .set("transparent", "true")
                                       .allow_user("nobody"));
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
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("local", "127.0.0.1:8114")
                                       .set_string("bind_to_device", "lo")
                                       .allow_user("nobody"));
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
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("shared", "127.0.0.1:8115")
                                       .allow_user("nobody")
                                       .socket("group", "127.0.0.1:8116")
                                       .set("reuse_port", "true")
                                       .allow_user("nobody"));
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

}  // namespace
