// What a reload changes on live sockets, and failed sockets retried with
// backoff (issue "The broker restarts, upgrades and reloads without losing a
// socket", points 3 and 4).
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Background;
using sbtest::Broker;
using sbtest::TempDir;

// "web" on 127.0.0.1:80 for nobody; callers add settings (.set).
sbtest::PolicyBuilder web_policy() {
  return sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody");
}

// The kernel socket's identity and options, as a holder sees them.
sbtest::GrantProbe inode_and_buffer() {
  return [](int fd) {
    int size = 0;
    socklen_t length = sizeof size;
    ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &length);
    return nlohmann::json{{"inode", sbtest::inode_of(fd)}, {"rcvbuf", size}};
  };
}

std::vector<std::string> holder(const Broker& broker) {
  return {sbtest::programs().sockbroker, "--control", broker.control(), "run", "-s", "web", "--",
          sbtest::programs().self, "--echo-server", "H"};
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using FailedSocket = sbtest::BrokerTest;
using ReloadInPlace = sbtest::BrokerTest;

TEST_F(ReloadInPlace, BacklogAndBuffersChangeOnTheLiveSocketAndItsHolderServesOn) {
  TempDir dir;
  auto broker = Broker::start(dir, web_policy().set("backlog", "16").set("receive_buffer", "65536"));
  ASSERT_TRUE(broker);
  Background serving(sbtest::kNobody, sbtest::kNogroup, holder(*broker));
  ASSERT_TRUE(serving.wait_for_output("ready")) << serving.output();
  auto before = sbtest::acquire_as_nobody(*broker, "web", inode_and_buffer());
  ASSERT_TRUE(before.granted) << before.message;

  dir.write("policy.toml", web_policy().set("backlog", "64").set("receive_buffer", "131072"));
  auto reloaded = sbtest::cli_as_root(*broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
  EXPECT_NE(reloaded.output.find("0 rebound"), std::string::npos) << reloaded.output;
  EXPECT_NE(reloaded.output.find("1 changed in place"), std::string::npos) << reloaded.output;
  EXPECT_NE(reloaded.output.find("changed in place: web: backlog, receive_buffer"), std::string::npos)
      << reloaded.output;

  auto after = sbtest::acquire_as_nobody(*broker, "web", inode_and_buffer());
  ASSERT_TRUE(after.granted) << after.message;
  EXPECT_EQ(after.probe["inode"], before.probe["inode"]) << "the same kernel socket";
  EXPECT_EQ(after.probe["rcvbuf"], 2 * 131072) << "the new receive buffer (the kernel doubles it)";
  EXPECT_EQ(sbtest::tcp_exchange(80, ""), "H\n") << "the holder still serves";
  EXPECT_EQ(::kill(serving.pid(), 0), 0) << "and was not shut down";
}

TEST_F(ReloadInPlace, AUnixPathsOwnerAndModeChangeOnTheSameFile) {
  TempDir dir;
  const std::string path = dir.file("run/app.sock");
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("app", path).set_string("socket_mode", "0600").allow_user("nobody"));
  ASSERT_TRUE(broker);
  struct stat before {};
  ASSERT_EQ(::lstat(path.c_str(), &before), 0);
  ASSERT_EQ(before.st_mode & 07777, 0600u);

  dir.write("policy.toml", sbtest::PolicyBuilder()
                               .socket("app", path)
                               .set_string("socket_mode", "0660")
                               .set_string("socket_group", "nogroup")
                               .allow_user("nobody"));
  auto reloaded = sbtest::cli_as_root(*broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
  EXPECT_NE(reloaded.output.find("changed in place: app: socket_group, socket_mode"), std::string::npos)
      << reloaded.output;
  struct stat after {};
  ASSERT_EQ(::lstat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the same socket file";
  EXPECT_EQ(after.st_mode & 07777, 0660u);
  EXPECT_EQ(after.st_gid, sbtest::kNogroup);
}

TEST_F(ReloadInPlace, AnAddressChangeShutsItsHoldersDownAndSaysWhich) {
  TempDir dir;
  auto broker = Broker::start(dir, web_policy());
  ASSERT_TRUE(broker);
  Background serving(sbtest::kNobody, sbtest::kNogroup, holder(*broker));
  ASSERT_TRUE(serving.wait_for_output("ready")) << serving.output();
  const pid_t holder_pid = broker->wait_for_events("grant").at(0)["peer"]["pid"];

  dir.write("policy.toml", sbtest::PolicyBuilder().socket("web", "127.0.0.1:8080").allow_user("nobody"));
  auto reloaded = sbtest::cli_as_root(*broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
  EXPECT_NE(reloaded.output.find("rebound: web: listen changed; bound afresh; 1 holder(s) shut down (pid " +
                                 std::to_string(holder_pid) + ")"),
            std::string::npos)
      << reloaded.output;
  auto events = broker->wait_for_events("reload");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["changed"], nlohmann::json({"web"}));
}

TEST_F(FailedSocket, IsRetriedWithBackoffAndServesOnceTheAddressIsFree) {
  TempDir dir;
  // Someone else holds the address when the broker starts.
  sockbroker::UniqueFd squatter;
  ASSERT_EQ(sbtest::bind_tcp(INADDR_LOOPBACK, 80, {}, &squatter), 0);
  ASSERT_EQ(::listen(squatter.get(), 1), 0);
  auto broker = Broker::start(dir, web_policy());
  ASSERT_TRUE(broker);
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_EQ(failed.size(), 1u);

  auto listed = sbtest::cli_as_root(*broker, {"list"});
  EXPECT_NE(listed.output.find("failed"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("(attempt "), std::string::npos) << "the list says when it is tried again:\n"
                                                                  << listed.output;
  auto revoked = sbtest::cli_as_root(*broker, {"revoke", "web"});
  EXPECT_EQ(revoked.exit_code, 71) << "revoke of a socket that is still failed says so:\n" << revoked.output;
  auto reloaded = sbtest::cli_as_root(*broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 71) << reloaded.output;
  EXPECT_NE(reloaded.output.find("not bound: web: "), std::string::npos) << reloaded.output;

  // Once the address is free the broker binds it by itself, audits it, and serves.
  squatter.reset();
  ASSERT_TRUE(sbtest::wait_until([&] { return sbtest::grants(*broker, "web"); }, std::chrono::seconds(10),
                                 std::chrono::milliseconds(200)))
      << broker->log();
  auto binds = broker->wait_for_events("bind");
  ASSERT_FALSE(binds.empty()) << "the bind that finally worked is audited";
  EXPECT_GE(binds.back()["attempts"].get<int>(), 2) << binds.back().dump();
  // Audited: the failure at start, and the operator's revoke and reload, each
  // a new first attempt; the broker's own retries are not, one by one.
  EXPECT_EQ(broker->wait_for_events("bind_failed").size(), 3u);
}

}  // namespace
