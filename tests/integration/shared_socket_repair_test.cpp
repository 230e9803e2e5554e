// One holder of a shared socket must not break it for everyone: a listener
// shut down for reading listens again (TCP) or is bound afresh (Unix), a
// datagram socket a holder connected is disconnected, each with a `relisten`
// audit event, whether the broker notices it on its own (while the holder
// lives) or at the next grant (after it has gone).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::Pipe;
using sbtest::TempDir;

int accepting(int fd) {
  int value = -1;
  socklen_t length = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) != 0) return -errno;
  return value;
}

// 0, or the errno of a TCP connect to 127.0.0.1:port from this process. The
// kernel completes the handshake into the backlog: no one need accept.
int tcp_connect(std::uint16_t port) {
  sockbroker::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address = sbtest::ipv4_address(port);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 ? 0 : errno;
}

int unix_connect(const std::string& path) {
  sockbroker::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address = sbtest::unix_address(path);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 ? 0 : errno;
}

// Acquires `name` as nobody, does `harm` to it, and exits: harm's status.
int harm_and_exit(const Broker& broker, const std::string& name, const std::function<int(int fd)>& harm) {
  return sbtest::run_as_nobody([&](int report_fd) {
           auto client = sockbroker::Client::connect(broker.control());
           if (!client) return 1;
           auto grant = client->acquire(name);
           if (!grant) {
             sbtest::report(report_fd, grant.error().message);
             return 2;
           }
           return harm(grant->fd.get());
         })
      .exit_code;
}

std::vector<nlohmann::json> relistens(const Broker& broker, std::size_t at_least = 1) {
  std::vector<nlohmann::json> found;
  sbtest::wait_until(
      [&] {
        found.clear();
        for (auto& e : broker.audit_events()) {
          if (e.value("event", "") == "relisten") found.push_back(e);
        }
        return found.size() >= at_least;
      },
      std::chrono::seconds(5), std::chrono::milliseconds(20));
  return found;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

TEST_F(Adversarial, AHolderThatShutsASharedListenerDownBreaksItForNoOne) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin());
  ASSERT_TRUE(broker);
  Pipe broken, go;
  // A locked-down holder: shutdown(2) is not a call the lockdown refuses.
  sbtest::Child holder(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    auto grant = client->acquire("web");
    if (!grant) return 2;
    if (auto locked = sockbroker::lockdown(); !locked) {
      sbtest::report(report_fd, "lockdown: " + locked.error().message);
      return 3;
    }
    const int fd = grant->fd.get();
    if (::shutdown(fd, SHUT_RD) != 0) {
      sbtest::report(report_fd, std::string("shutdown: ") + std::strerror(errno));
      return 4;
    }
    sbtest::notify(broken);
    if (!sbtest::await(go)) return 6;
    // The broker has made it listen again: the same descriptor accepts.
    std::string error = sbtest::answer_pong(fd);
    if (!error.empty()) sbtest::report(report_fd, error);
    return error.empty() ? 0 : 7;
  });
  ASSERT_TRUE(sbtest::await(broken));

  // Noticed on the broker's own while the holder lives: no grant needed.
  auto events = relistens(*broker);
  ASSERT_EQ(events.size(), 1u) << broker->log();
  EXPECT_EQ(events[0]["socket"], "web");
  EXPECT_EQ(events[0]["found"], "not_listening");
  EXPECT_EQ(events[0]["action"], "listen");
  EXPECT_EQ(events[0]["ok"], true);
  EXPECT_EQ(events[0]["noticed"], "check");
  EXPECT_EQ(events[0]["holders"], nlohmann::json::array({holder.pid()}));
  EXPECT_NE(broker->log().find("socket \"web\": not listening"), std::string::npos) << broker->log();

  sbtest::notify(go);
  EXPECT_EQ(sbtest::tcp_exchange(80, "ping"), "pong:ping") << "the holder that broke it serves again";
  auto result = holder.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;

  // And the next grant is a listening socket a client reaches.
  auto next = sbtest::acquire_as_nobody(*broker, "web", [](int fd) -> nlohmann::json { return accepting(fd); });
  ASSERT_TRUE(next.granted) << next.message;
  EXPECT_EQ(next.probe, 1);
  EXPECT_EQ(tcp_connect(80), 0);
  EXPECT_EQ(relistens(*broker).size(), 1u);
}

TEST_F(Adversarial, ASharedListenerLeftShutDownIsRepairedAtTheNextGrant) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin());
  ASSERT_TRUE(broker);
  EXPECT_EQ(harm_and_exit(*broker, "web", [](int fd) { return ::shutdown(fd, SHUT_RDWR) == 0 ? 0 : 10; }), 0);
  auto next = sbtest::acquire_as_nobody(*broker, "web", [](int fd) -> nlohmann::json { return accepting(fd); });
  ASSERT_TRUE(next.granted) << next.message;
  EXPECT_EQ(next.probe, 1) << "granted listening";
  EXPECT_EQ(tcp_connect(80), 0);
  auto events = relistens(*broker);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["action"], "listen");
  EXPECT_EQ(events[0]["ok"], true);
  // The holder may be seen gone before the check: then the grant found it.
  EXPECT_TRUE(events[0]["noticed"] == "grant" || events[0]["noticed"] == "check") << events[0].dump();
  auto listing = sbtest::cli_as_root(*broker, {"list", "--json"});
  EXPECT_NE(listing.output.find("\"bound\""), std::string::npos) << listing.output;
}

TEST_F(Adversarial, AnAdministratorsListingDoesNotCallABrokenSocketBound) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin());
  ASSERT_TRUE(broker);
  EXPECT_EQ(harm_and_exit(*broker, "web", [](int fd) { return ::shutdown(fd, SHUT_RD) == 0 ? 0 : 10; }), 0);
  // No grant since: the listing looks first, and lists what it repaired.
  auto listing = sbtest::cli_as_root(*broker, {"list", "--json"});
  ASSERT_EQ(listing.exit_code, 0) << listing.output;
  auto events = relistens(*broker);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0]["noticed"] == "list" || events[0]["noticed"] == "check") << events[0].dump();
  EXPECT_EQ(events[0]["ok"], true);
  EXPECT_EQ(tcp_connect(80), 0);
}

TEST_F(Adversarial, AUnixListenerShutDownByAHolderIsBoundAfresh) {
  TempDir dir;
  const std::string path = dir.file("app.sock");
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("app", path).set_string("socket_mode", "0666").allow_user("nobody"));
  ASSERT_TRUE(broker);
  const auto before = sbtest::acquire_as_nobody(*broker, "app", [](int fd) -> nlohmann::json { return sbtest::inode_of(fd); });
  ASSERT_TRUE(before.granted) << before.message;
  EXPECT_EQ(unix_connect(path), 0);
  // A Unix listener shut down for reading still says SO_ACCEPTCONN 1, but
  // refuses every connection, and listen(2) does not clear it.
  EXPECT_EQ(harm_and_exit(*broker, "app", [](int fd) { return ::shutdown(fd, SHUT_RD) == 0 ? 0 : 10; }), 0);
  auto after = sbtest::acquire_as_nobody(*broker, "app", [](int fd) -> nlohmann::json { return sbtest::inode_of(fd); });
  ASSERT_TRUE(after.granted) << after.message;
  EXPECT_NE(after.probe, before.probe) << "a fresh kernel socket";
  EXPECT_EQ(unix_connect(path), 0) << "connections reach the path again";
  auto events = relistens(*broker);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["found"], "reading_shut");
  EXPECT_EQ(events[0]["action"], "rebind");
  EXPECT_EQ(events[0]["ok"], true);
  EXPECT_EQ(events[0]["local_addr"]["sun_path"], path);
}

TEST_F(Adversarial, ASharedDatagramSocketAHolderConnectedIsDisconnected) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin());
  ASSERT_TRUE(broker);
  // Connected, the one socket every holder shares would take datagrams from
  // 127.0.0.1:9 only.
  EXPECT_EQ(harm_and_exit(*broker, "dns",
                          [](int fd) {
                            sockaddr_in peer = sbtest::ipv4_address(9);
                            return ::connect(fd, reinterpret_cast<sockaddr*>(&peer), sizeof peer) == 0 ? 0 : 10;
                          }),
            0);
  Pipe holding;
  sbtest::Child server(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    auto grant = client->acquire("dns");
    if (!grant) return 2;
    const int fd = grant->fd.get();
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0) {
      sbtest::report(report_fd, "granted connected");
      return 3;
    }
    sbtest::notify(holding);
    char buffer[64];
    length = sizeof peer;
    ssize_t n = ::recvfrom(fd, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&peer), &length);
    if (n <= 0) return 4;
    std::string answer = "pong:" + std::string(buffer, static_cast<std::size_t>(n));
    return ::sendto(fd, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&peer), length) > 0 ? 0 : 5;
  });
  ASSERT_TRUE(sbtest::await(holding));
  EXPECT_EQ(sbtest::udp_exchange(53, "ping"), "pong:ping");
  auto result = server.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  auto events = relistens(*broker);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["socket"], "dns");
  EXPECT_EQ(events[0]["found"], "connected");
  EXPECT_EQ(events[0]["action"], "disconnect");
  EXPECT_EQ(events[0]["ok"], true);
}

TEST_F(Adversarial, ASharedDatagramSocketShutDownForReadingIsBoundAfresh) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::web_dns_admin());
  ASSERT_TRUE(broker);
  // shutdown(SHUT_RD) of an unconnected UDP socket says ENOTCONN, and shuts
  // its reading side all the same: a blocking read then returns 0 at once.
  EXPECT_EQ(harm_and_exit(*broker, "dns", [](int fd) { return ::shutdown(fd, SHUT_RD) != 0 && errno == ENOTCONN ? 0 : 10; }),
            0);
  auto next = sbtest::acquire_as_nobody(*broker, "dns", [](int fd) -> nlohmann::json {
    pollfd probe{fd, POLLRDHUP, 0};
    return ::poll(&probe, 1, 0) == 0;  // nothing to report: readable only when a datagram comes
  });
  ASSERT_TRUE(next.granted) << next.message;
  EXPECT_EQ(next.probe, true);
  auto events = relistens(*broker);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["found"], "reading_shut");
  EXPECT_EQ(events[0]["action"], "rebind");
  EXPECT_EQ(events[0]["ok"], true) << events[0].dump();
}

}  // namespace
