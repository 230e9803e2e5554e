// The broker on a kernel without SO_PEERPIDFD (Linux < 6.5, e.g. Debian 12's
// 6.1), emulated by the harness's filter (SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD):
// it finds the connecting process by the pid SO_PEERCRED recorded, at accept,
// and keeps it only if it still runs as the uid and gid that connected. The
// tests of identity rules, reuse_port groups, quotas and holders run in that
// mode too (ctest's integration_without_peer_pidfd); here is what only that
// mode does.
#include <signal.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include "granted_socket.hpp"
#include "policy_builder.hpp"

namespace {

using WithoutPeerPidfd = sbtest::BrokerTest;
using sbtest::Broker;
using sbtest::TempDir;

constexpr const char* kEmulate = "SOCKBROKER_TEST_KERNEL_WITHOUT_PEER_PIDFD";

TEST_F(WithoutPeerPidfd, TheBrokerSaysHowItFindsItsCallers) {
  sbtest::ScopedEnv old_kernel(kEmulate, "1");
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("web", "127.0.0.1:8301").allow_user("nobody"));
  ASSERT_TRUE(broker);
  EXPECT_TRUE(broker->wait_for_log("no SO_PEERPIDFD (Linux < 6.5)")) << broker->log();
}

// Connects as root with the broker stopped, becomes uid/gid 65534 (or stays
// root), and only then lets the broker accept: the process the broker finds
// on the connector's pid runs as other ids than the connection's.
sbtest::ChildResult acquire_after_changing_ids(const Broker& broker, const std::string& name, bool change_ids) {
  ::kill(broker.pid(), SIGSTOP);
  sbtest::Pipe changed;
  sbtest::Child child(0, 0, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker.control());
    if (!client) {
      sbtest::report(report_fd, "connect: " + client.error().describe());
      return 2;
    }
    if (change_ids && (::setresgid(sbtest::kNogroup, sbtest::kNogroup, sbtest::kNogroup) != 0 ||
                       ::setresuid(sbtest::kNobody, sbtest::kNobody, sbtest::kNobody) != 0)) {
      sbtest::report(report_fd, std::string("setresuid: ") + std::strerror(errno));
      return 2;
    }
    sbtest::notify(changed);
    auto grant = client->acquire(name);
    if (!grant) {
      sbtest::report(report_fd, "refused: " + grant.error().describe());
      return 1;
    }
    sbtest::report(report_fd, "granted");
    return 0;
  });
  const bool notified = sbtest::await(changed);
  ::kill(broker.pid(), SIGCONT);
  sbtest::ChildResult result = child.wait();
  if (!notified) result.output += "\n(the child never said it had connected)";
  return result;
}

// As on an older kernel, with a reuse_port socket root may have: a grant the
// broker must count, so it needs the caller's process.
std::optional<Broker> start_with_a_counted_socket(const TempDir& dir) {
  sbtest::ScopedEnv old_kernel(kEmulate, "1");
  return Broker::start(
      dir, sbtest::PolicyBuilder().socket("web", "0.0.0.0:8302").set("reuse_port", "true").allow_user("root"));
}

TEST_F(WithoutPeerPidfd, AConnectorThatStillRunsAsItConnectedIsTracked) {
  TempDir dir;
  auto broker = start_with_a_counted_socket(dir);
  ASSERT_TRUE(broker);
  auto result = acquire_after_changing_ids(*broker, "web", false);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n" << broker->log();
  auto grants = broker->wait_for_events("grant", 1);
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0]["reuse_port"], true) << grants[0];
}

TEST_F(WithoutPeerPidfd, AConnectorWhoseIdsChangedSinceItConnectedIsNotTakenForIt) {
  TempDir dir;
  auto broker = start_with_a_counted_socket(dir);
  ASSERT_TRUE(broker);
  auto result = acquire_after_changing_ids(*broker, "web", true);
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("cannot track who holds the grant"), std::string::npos) << result.output;
  auto denials = broker->wait_for_events("deny", 1);
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "system") << denials[0];
  // And the broker serves the next caller as usual.
  EXPECT_EQ(acquire_after_changing_ids(*broker, "web", false).exit_code, 0) << broker->log();
}

}  // namespace
