// The real sockbrokerd against real unprivileged clients in a private network
// namespace: grants on low ports, denials, limits, hostile datagrams.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstring>
#include <random>
#include <thread>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

// The three sockets, the control socket open to every uid.
const std::string kWebPolicy = sbtest::web_dns_admin().broker("control_mode", sbtest::toml_string("0666"));

// Serves one TCP connection on fd: reads what comes, answers "pong:" + it.
int serve_one_tcp(int fd, int report_fd) {
  if (std::string error = sbtest::answer_pong(fd); !error.empty()) {
    sbtest::report(report_fd, error);
    return 10;
  }
  return 0;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using AuditFile = sbtest::BrokerTest;
using AuditFlush = sbtest::BrokerTest;

TEST(Broker, StreamGrantOnPort80ServesARealConnection) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  // The broker listens from start-up: this connection queues in the kernel
  // until the service, started later, accepts it.
  std::thread client([&] { EXPECT_EQ(sbtest::tcp_exchange(80, "ping"), "pong:ping"); });
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire("web", broker->control());
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return 1;
    }
    if (grant->name != "web" || grant->type != "stream" || grant->family != AF_INET || grant->address != "0.0.0.0:80") {
      sbtest::report(report_fd, "unexpected grant " + grant->address);
      return 2;
    }
    if (auto s = sockbroker::lockdown(); !s) return 3;
    return serve_one_tcp(grant->fd.get(), report_fd);
  });
  client.join();
  EXPECT_EQ(child.exit_code, 0) << child.output;

  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0]["socket"], "web");
  EXPECT_EQ(grants[0]["rule"], 0);
  EXPECT_EQ(grants[0]["peer"]["uid"], sbtest::kNobody);
  EXPECT_EQ(grants[0]["peer"]["gid"], sbtest::kNogroup);
  EXPECT_EQ(grants[0]["local_addr"]["sa_family"], "AF_INET");
  EXPECT_EQ(grants[0]["local_addr"]["sin_addr"], "0.0.0.0");
  EXPECT_EQ(grants[0]["local_addr"]["sin_port"], 80);
  EXPECT_EQ(grants[0]["type"], "stream");
  EXPECT_EQ(grants[0]["reuse_port"], false);
  EXPECT_TRUE(grants[0]["ts"].is_string());
}

TEST(Broker, DatagramGrantOnPort53AnswersAQuery) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  std::string answer;
  std::thread querier([&] {
    // Retry: the datagram is only queued once the broker has bound (it has), and
    // the answer comes when the child has acquired and read it.
    answer = sbtest::udp_exchange(53, "query", 5000);
  });
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire("dns", broker->control());
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return 1;
    }
    if (auto s = sockbroker::lockdown(); !s) return 3;
    char buffer[256];
    sockaddr_storage from{};
    socklen_t from_length = sizeof from;
    ssize_t n = ::recvfrom(grant->fd.get(), buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
    if (n <= 0) return 4;
    std::string reply = "answer:" + std::string(buffer, static_cast<std::size_t>(n));
    ::sendto(grant->fd.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_length);
    return 0;
  });
  querier.join();
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_EQ(answer, "answer:query");
}

TEST(Broker, UnixPathGrantHasThePolicyOwnerAndMode) {
  SBTEST_PREPARE();
  TempDir dir;
  std::string path = dir.file("run/app.sock");
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("app", path)
                                       .set_string("socket_user", "nobody")
                                       .set_string("socket_group", "nogroup")
                                       .set_string("socket_mode", "0660")
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, sbtest::kNobody);
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  std::string answer;
  std::thread client([&] { answer = sbtest::unix_exchange(path, "ping"); });
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire("app", broker->control());
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return 1;
    }
    if (grant->family != AF_UNIX || grant->address != path) return 2;
    if (auto s = sockbroker::lockdown(); !s) return 3;
    return serve_one_tcp(grant->fd.get(), report_fd);
  });
  client.join();
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_EQ(answer, "pong:ping");
}

TEST(Broker, DeniedCallerGetsDeniedAndTheAuditSaysWhy) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire("admin", broker->control());
    if (grant) return 1;
    sbtest::report(report_fd, grant.error().message);
    return grant.error().code == SOCKBROKER_E_DENIED ? 0 : 2;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_NE(child.output.find("uid 65534"), std::string::npos) << child.output;
  EXPECT_NE(child.output.find("gid 65534"), std::string::npos) << child.output;

  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["socket"], "admin");
  EXPECT_EQ(denials[0]["reason"], "no_rule_matched");
  EXPECT_EQ(denials[0]["peer"]["uid"], sbtest::kNobody);
  EXPECT_EQ(denials[0]["local_addr"]["sin_port"], 443);
}

TEST(Broker, RootIsGrantedEverySocket) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  auto grant = sockbroker::acquire("admin", broker->control());
  ASSERT_TRUE(grant) << grant.error().message;
  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_TRUE(grants[0]["rule"].is_null());  // granted as root, not by a rule
}

TEST(Broker, UnknownNameIsReportedAsUnknown) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire("nosuch", broker->control());
    if (grant) return 1;
    sbtest::report(report_fd, grant.error().message);
    return grant.error().code == SOCKBROKER_E_UNKNOWN ? 0 : 2;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "unknown_socket");
}

TEST(Broker, UnreachableBrokerIsUnavailable) {
  SBTEST_PREPARE();
  TempDir dir;
  auto grant = sockbroker::acquire("web", dir.file("control.sock"));
  ASSERT_FALSE(grant);
  EXPECT_EQ(grant.error().code, SOCKBROKER_E_UNAVAILABLE);
  EXPECT_NE(grant.error().message.find(dir.file("control.sock")), std::string::npos);
}

TEST(Broker, SocketThatCannotBeBoundIsReportedAndTheOthersServe) {
  SBTEST_PREPARE();
  // Occupy 127.0.0.1:443 before the broker starts.
  sockbroker::UniqueFd squatter;
  ASSERT_EQ(sbtest::bind_tcp(INADDR_LOOPBACK, 443, {}, &squatter), 0);
  ASSERT_EQ(::listen(squatter.get(), 1), 0);

  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["socket"], "admin");
  EXPECT_NE(failed[0]["error"].get<std::string>().find("in use"), std::string::npos) << failed[0].dump();

  auto admin = sockbroker::acquire("admin", broker->control());
  ASSERT_FALSE(admin);
  EXPECT_EQ(admin.error().code, SOCKBROKER_E_BIND);
  auto web = sockbroker::acquire("web", broker->control());
  EXPECT_TRUE(web) << web.error().message;
}

TEST(Broker, LockdownRefusesBindListenAndIoUringIgnoresReusePortAndServesTheGrant) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  std::string answer;
  std::thread client([&] { answer = sbtest::tcp_exchange(80, "ping"); });
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire("web", broker->control());
    if (!grant) return 1;
    if (::sockbroker_lockdown(0) != 0) return 2;

    int fresh = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_port = htons(8080);
    if (::bind(fresh, reinterpret_cast<sockaddr*>(&any), sizeof any) == 0 || errno != EPERM) {
      sbtest::report(report_fd, "bind was not refused with EPERM");
      return 3;
    }
    if (::listen(fresh, 1) == 0 || errno != EPERM) {
      sbtest::report(report_fd, "listen on an unbound socket was not refused with EPERM");
      return 4;
    }
    char params[120] = {};
    if (::syscall(425 /* io_uring_setup */, 4, params) >= 0 || errno != EPERM) {
      sbtest::report(report_fd, "io_uring_setup was not refused with EPERM");
      return 5;
    }
    // SO_REUSEPORT succeeds without effect: whether a socket is in a group is
    // the policy's to say, and a process that cannot bind joins none.
    int one = 1, set = -1;
    socklen_t length = sizeof set;
    if (::setsockopt(fresh, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::getsockopt(fresh, SOL_SOCKET, SO_REUSEPORT, &set, &length) != 0 || set != 0) {
      sbtest::report(report_fd, "SO_REUSEPORT did not succeed without effect");
      return 6;
    }
    return serve_one_tcp(grant->fd.get(), report_fd) == 0 ? 0 : 7;
  });
  client.join();
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_EQ(answer, "pong:ping");
}

TEST(Broker, TwoHundredClientsAtOnceAllGetTheirGrant) {
  SBTEST_PREPARE();
  TempDir dir;
  // max_clients_per_uid defaults to 64: allow 200 at once for this test.
  auto big = Broker::start(dir, sbtest::web_dns_admin().broker("max_clients_per_uid", "256"));
  ASSERT_TRUE(big);
  const int baseline = big->settled_fd_count();
  constexpr int kClients = 200;
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    std::atomic<int> granted{0};
    std::barrier start(kClients);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&] {
        auto client = sockbroker::Client::connect(big->control());
        start.arrive_and_wait();  // all connected before anyone asks
        if (!client) return;
        auto grant = client->acquire("web");
        if (grant) {
          ++granted;
        } else {
          sbtest::report(report_fd, grant.error().message);
        }
      });
    }
    for (auto& t : threads) t.join();
    sbtest::report(report_fd, "granted " + std::to_string(granted.load()));
    return granted.load() == kClients ? 0 : 1;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_EQ(big->wait_for_events("grant", kClients).size(), static_cast<std::size_t>(kClients));
  EXPECT_EQ(big->wait_for_fd_count(baseline), baseline) << big->fd_listing();
}

// A connection that sends nothing is dropped after request_timeout_ms.
TEST(Broker, IdleClientIsDroppedAndOthersAreServedMeanwhile) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin().broker("request_timeout_ms", "300"));
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  sockbroker::UniqueFd idle = sbtest::connect_control(broker->control());
  ASSERT_TRUE(idle) << std::strerror(errno);

  // Served while the idle one waits; a child, so that its lease ends with it.
  EXPECT_TRUE(sbtest::grants(*broker, "web"));

  auto started = std::chrono::steady_clock::now();
  char byte;
  timeval timeout{5, 0};
  ::setsockopt(idle.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  EXPECT_EQ(::recv(idle.get(), &byte, 1, 0), 0);  // end of stream: the broker hung up
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_LT(waited, std::chrono::seconds(4));
  idle.reset();
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
}

TEST(Broker, KeptOpenConnectionReconnectsAfterTheBrokerDroppedIt) {
  SBTEST_PREPARE();
  TempDir dir;
  // At debug level the broker says when it drops an idle connection.
  auto broker = Broker::start(dir, sbtest::web_dns_admin().broker("request_timeout_ms", "100"), {"--log-level", "debug"});
  ASSERT_TRUE(broker);
  int error = 0;
  sockbroker_conn* conn = ::sockbroker_connect(broker->control().c_str(), &error);
  ASSERT_NE(conn, nullptr) << error;
  int first = ::sockbroker_conn_acquire(conn, "web", 0);
  EXPECT_GE(first, 0) << ::sockbroker_last_error();
  // The broker drops us meanwhile.
  EXPECT_TRUE(broker->wait_for_log("dropping idle connection of pid " + std::to_string(::getpid()) + " "))
      << broker->log();
  int second = ::sockbroker_conn_acquire(conn, "web", 0);
  EXPECT_GE(second, 0) << ::sockbroker_last_error();
  ::sockbroker_disconnect(conn);
  if (first >= 0) ::close(first);
  if (second >= 0) ::close(second);
}

// The broker serves a connection's requests only from the process that
// connected it; a kept-open connection inherited by a forked child
// reconnects there instead of being refused.
TEST(Broker, KeptOpenConnectionReconnectsInAForkedChild) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin());
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    if (!client->list()) return 2;  // used once by the parent
    pid_t pid = ::fork();
    if (pid == 0) {
      auto grant = client->acquire("web");
      if (!grant) sbtest::report(report_fd, "child: " + grant.error().message);
      _exit(grant ? 0 : 3);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 4;
    return client->acquire("web") ? 0 : 5;  // and the parent's own still serves it
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_TRUE(broker->wait_for_events("deny", 0).empty()) << "nothing was refused";
}

TEST(Broker, PerUidConnectionLimitRefusesTheExtraOnlyAndOthersStillServe) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin().broker("max_clients_per_uid", "2"));
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto a = sockbroker::Client::connect(broker->control());
    auto b = sockbroker::Client::connect(broker->control());
    auto c = sockbroker::Client::connect(broker->control());
    if (!a || !b || !c) return 1;
    if (!a->acquire("web") || !b->acquire("web")) return 2;
    auto refused = c->acquire("web");
    if (refused) return 3;
    sbtest::report(report_fd, refused.error().message);
    return refused.error().code == SOCKBROKER_E_QUOTA ? 0 : 4;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_NE(child.output.find("max_clients_per_uid"), std::string::npos) << child.output;
  auto grant = sockbroker::acquire("web", broker->control());  // root: another uid
  EXPECT_TRUE(grant) << grant.error().message;
  auto limits = broker->wait_for_events("deny");
  ASSERT_FALSE(limits.empty());
  EXPECT_EQ(limits[0]["reason"], "limit");
}

// A connection the client has closed no longer counts against its uid, even
// when it connects again at once: the broker takes the old connection's
// hang-up before the new connection (server.cpp, accept_clients). With a
// limit of 1, serving a request in the same turn as its accept once let the
// next connection in ahead of the hang-up, and it was refused.
TEST(Broker, AClosedConnectionDoesNotCountWhenItsClientConnectsAgainAtOnce) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin().broker("max_clients_per_uid", "1"));
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    for (int i = 0; i < 300; ++i) {
      auto grant = sockbroker::acquire("web", broker->control());  // connect + acquire + close
      if (!grant) {
        sbtest::report(report_fd, "round " + std::to_string(i) + ": " + grant.error().message);
        return 1;
      }
    }
    return 0;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_TRUE(broker->wait_for_events("deny", 0).empty()) << "a connection was refused";
}

// 1,000 hostile datagrams: random bytes, empty, 5 KiB, 64 KiB, some carrying
// 100 descriptors. The broker answers or hangs up, leaks nothing, and serves on.
TEST(Broker, GarbageDatagramsLeakNothingAndServiceContinues) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();

  std::mt19937 random(20261122);
  std::vector<int> spare_fds;
  for (int i = 0; i < 100; ++i) spare_fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (int i = 0; i < 1000; ++i) {
    sockbroker::UniqueFd fd = sbtest::connect_control(broker->control());
    ASSERT_TRUE(fd) << i << ": " << std::strerror(errno);
    std::size_t size;
    switch (i % 5) {
      case 0: size = 0; break;
      case 1: size = 5 * 1024; break;
      case 2: size = 64 * 1024; break;
      default: size = random() % 4096; break;
    }
    std::vector<char> bytes(size);
    for (auto& b : bytes) b = static_cast<char>(random());
    iovec iov{bytes.data(), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * spare_fds.size()));
    if (i % 7 == 0) {  // with 100 descriptors attached
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * spare_fds.size());
      std::memcpy(CMSG_DATA(cmsg), spare_fds.data(), sizeof(int) * spare_fds.size());
    }
    // 64 KiB may exceed the socket's send buffer: that is a send error, not a broker one.
    (void)::sendmsg(fd.get(), &msg, MSG_NOSIGNAL);
  }
  for (int fd : spare_fds) ::close(fd);

  EXPECT_TRUE(sbtest::grants(*broker, "web"));
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
  EXPECT_GT(broker->wait_for_events("bad_request", 100).size(), 100u);
  EXPECT_EQ(::kill(broker->pid(), 0), 0);
}

TEST(Broker, MalformedRequestGetsAProtocolErrorReply) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  sockbroker::UniqueFd fd = sbtest::connect_control(broker->control());
  ASSERT_TRUE(fd) << std::strerror(errno);
  const char garbage[16] = "not capnproto!";
  ASSERT_EQ(::send(fd.get(), garbage, sizeof garbage, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof garbage));
  char reply[4096];
  timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  EXPECT_GT(::recv(fd.get(), reply, sizeof reply, 0), 0);  // a Failure reply
  EXPECT_EQ(::recv(fd.get(), reply, sizeof reply, 0), 0);  // then the broker hangs up
  fd.reset();
  auto bad = broker->wait_for_events("bad_request");
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0]["peer"]["uid"], 0);
}

TEST(Broker, SigtermStopsCleanlyAndRemovesTheControlPath) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy);
  ASSERT_TRUE(broker);
  std::string control = broker->control();
  EXPECT_EQ(broker->stop(), 0);
  EXPECT_NE(::access(control.c_str(), F_OK), 0);
  bool stopped = false;
  for (auto& e : broker->audit_events()) stopped |= e["event"] == "stop";
  EXPECT_TRUE(stopped);
}

// --audit-flush-ms: when an audit file gets its lines. Batching takes a
// write(2) off every grant; these pin down what it must never cost.
namespace {
std::size_t grant_lines(const Broker& broker) {
  std::size_t n = 0;
  for (auto& e : broker.audit_events()) n += e["event"] == "grant";
  return n;
}
}  // namespace

TEST_F(AuditFlush, ZeroWritesTheLineBeforeTheReplyLeaves) {
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy, {"--audit-flush-ms", "0"});
  ASSERT_TRUE(broker);
  for (std::size_t i = 1; i <= 5; ++i) {
    auto grant = sockbroker::acquire("admin", broker->control());
    ASSERT_TRUE(grant) << grant.error().message;
    EXPECT_EQ(grant_lines(*broker), i) << "read at once, without waiting";
  }
}

TEST_F(AuditFlush, AnIdleBrokerWritesBufferedLinesWithinTheInterval) {
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy, {"--audit-flush-ms", "0"});
  ASSERT_TRUE(broker);
  auto grant = sockbroker::acquire("admin", broker->control());
  ASSERT_TRUE(grant) << grant.error().message;
  // Nothing else happens: only the loop's own deadline can write the line.
  EXPECT_TRUE(sbtest::wait_until([&] { return grant_lines(*broker) == 1; }, std::chrono::seconds(3)))
      << broker->log();
}

TEST_F(AuditFlush, StoppingWritesEveryBufferedLine) {
  TempDir dir;
  auto broker = Broker::start(dir, kWebPolicy, {"--audit-flush-ms", "1000"});
  ASSERT_TRUE(broker);
  for (int i = 0; i < 20; ++i) {
    auto grant = sockbroker::acquire("admin", broker->control());
    ASSERT_TRUE(grant) << grant.error().message;
  }
  EXPECT_EQ(broker->stop(), 0);
  EXPECT_EQ(grant_lines(*broker), 20u);
  auto events = broker->audit_events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["event"], "stop");
}

// The trail names every caller: created 0600, in a directory the broker makes
// (root-owned 0755) when it is missing, as a log directory would be.
TEST_F(AuditFile, IsCreated0600InADirectoryMadeWhenMissing) {
  TempDir dir;
  dir.write("policy.toml", kWebPolicy);
  const std::string audit = dir.file("log/sockbroker/audit.log");
  auto broker = Broker::start(dir, kWebPolicy, {"--audit", audit});
  ASSERT_TRUE(broker) << "the broker did not start with --audit in a missing directory";
  struct stat st {};
  ASSERT_EQ(::stat(audit.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(dir.file("log/sockbroker").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST_F(AuditFlush, OutOfRangeIsAUsageError) {
  TempDir dir;
  std::string output;
  EXPECT_EQ(sbtest::run_broker_to_exit(dir, {"--audit-flush-ms", "1001"}, &output), 64) << output;
  EXPECT_NE(output.find("--audit-flush-ms"), std::string::npos) << output;
}

TEST(Broker, ControlSocketHasThePolicyMode) {
  SBTEST_PREPARE();
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin().broker("control_mode", sbtest::toml_string("0660")));
  ASSERT_TRUE(broker);
  struct stat st {};
  ASSERT_EQ(::stat(broker->control().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  // nobody is neither owner nor group of a 0660 root socket: cannot even ask.
  auto child = sbtest::run_as_nobody([&](int) {
    auto grant = sockbroker::acquire("web", broker->control());
    return !grant && grant.error().code == SOCKBROKER_E_UNAVAILABLE ? 0 : 1;
  });
  EXPECT_EQ(child.exit_code, 0);
}

TEST(Broker, InvalidPolicyAtStartExits78WithThePosition) {
  SBTEST_PREPARE();
  TempDir dir;
  dir.write("bad.toml", "[socket.web]\nlisten = \"0.0.0.0:99999\"\n");  // as text: line 2 is checked
  std::string output;
  EXPECT_EQ(sbtest::run_broker_to_exit(dir, {"--policy", dir.file("bad.toml"), "--control", dir.file("c.sock")}, &output), 78);
  EXPECT_NE(output.find(dir.file("bad.toml") + ":2:"), std::string::npos) << output;
}

TEST(Broker, UnusableControlDirectoryExits71) {
  SBTEST_PREPARE();
  TempDir dir;
  dir.write("ok.toml", sbtest::PolicyBuilder().socket("web", "127.0.0.1:80"));
  ASSERT_EQ(::mkdir(dir.file("open").c_str(), 0777), 0);
  ::chmod(dir.file("open").c_str(), 0777);  // writable by all: someone could swap the socket
  std::string output;
  EXPECT_EQ(sbtest::run_broker_to_exit(dir, {"--policy", dir.file("ok.toml"), "--control", dir.file("open/c.sock")}, &output),
            71);
  EXPECT_NE(output.find("writable"), std::string::npos) << output;
}

TEST(Broker, SymlinkedControlDirectoryExits71) {
  SBTEST_PREPARE();
  TempDir dir;
  dir.write("ok.toml", sbtest::PolicyBuilder().socket("web", "127.0.0.1:80"));
  ASSERT_EQ(::mkdir(dir.file("real").c_str(), 0755), 0);
  ASSERT_EQ(::symlink(dir.file("real").c_str(), dir.file("link").c_str()), 0);
  std::string output;
  EXPECT_EQ(sbtest::run_broker_to_exit(dir, {"--policy", dir.file("ok.toml"), "--control", dir.file("link/c.sock")}, &output),
            71);
  EXPECT_NE(output.find("symbolic link"), std::string::npos) << output;
  EXPECT_NE(::access(dir.file("real/c.sock").c_str(), F_OK), 0) << "nothing was created through the link";
}

TEST(Broker, MissingControlDirectoryIsCreatedRootOwned0755) {
  SBTEST_PREPARE();
  TempDir dir;
  dir.write("ok.toml", sbtest::PolicyBuilder().socket("web", "127.0.0.1:80"));
  // Under the unit's UMask=0077: the directory must still be 0755, or no
  // client could reach the socket in it.
  const mode_t old_umask = ::umask(077);
  sbtest::Background broker(0, 0, {SOCKBROKERD_PATH, "--policy", dir.file("ok.toml"), "--control", dir.file("run/c.sock")});
  ::umask(old_umask);
  ASSERT_TRUE(sbtest::wait_until([&] { return ::access(dir.file("run/c.sock").c_str(), F_OK) == 0; }))
      << broker.output();
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("run").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST(Broker, UsageErrorExits64) {
  SBTEST_PREPARE();
  TempDir dir;
  EXPECT_EQ(sbtest::run_broker_to_exit(dir, {"--no-such-flag"}), 64);
}

}  // namespace
