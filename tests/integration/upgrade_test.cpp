// Upgrade in place: SIGUSR2 or `sockbroker upgrade` make the running broker
// execute its binary from disk again. The pid, the control socket, every
// bound socket, every lease and the counters stay; services serving meanwhile
// see no refused or hung connection. If the new image cannot be executed, the
// old one serves on.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::inode_of_granted;
using sbtest::start_worker;

using sbtest::Background;
using sbtest::Broker;
using sbtest::cli_as;
using sbtest::TempDir;

std::string web_and_pool() {
  return sbtest::PolicyBuilder()
      .socket("web", "127.0.0.1:80")
      .allow_user("nobody")
      .socket("pool", "127.0.0.1:81")
      .set("reuse_port", "true")
      .set("max_grants", "1")
      .allow_user("nobody");
}

std::uint64_t upgrades(const Broker& broker) {
  auto client = sockbroker::Client::connect(broker.control());
  if (!client) return 0;
  auto status = client->status();
  return status ? status->upgrades : 0;
}

// A connection attempt every 2 ms on `port` while it runs: how many failed.
class Prober {
 public:
  explicit Prober(std::uint16_t port)
      : thread_([this, port] {
          while (!stop_) {
            if (sbtest::tcp_exchange(port, "", 2000).empty()) ++failures_;
            ++attempts_;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
        }) {}
  ~Prober() { finish(); }
  void finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] int failures() const { return failures_; }
  [[nodiscard]] int attempts() const { return attempts_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> failures_{0}, attempts_{0};
  std::thread thread_;
};

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using UpgradeInPlace = sbtest::BrokerTest;

TEST_F(UpgradeInPlace, KeepsThePidSocketsLeasesAndCountersAndRefusesNoConnection) {
  TempDir dir;
  auto broker = Broker::start(dir, web_and_pool());
  ASSERT_TRUE(broker);
  const pid_t pid = broker->pid();
  const std::uint64_t web = inode_of_granted(*broker, "web");
  ASSERT_NE(web, 0u);
  auto a = start_worker(*broker, "web", "A");
  auto b = start_worker(*broker, "pool", "B");
  ASSERT_TRUE(a->wait_for_output("ready")) << a->output();
  ASSERT_TRUE(b->wait_for_output("ready")) << b->output();

  Prober on_web(80), on_pool(81);
  // Windows, not waits: connections are tried throughout, and none may fail.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto upgraded = cli_as(0, 0, *broker, {"upgrade"});
  EXPECT_EQ(upgraded.exit_code, 0) << upgraded.output << broker->log();
  EXPECT_NE(upgraded.output.find("upgraded in place"), std::string::npos) << upgraded.output;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  on_web.finish();
  on_pool.finish();
  EXPECT_EQ(on_web.failures(), 0) << "of " << on_web.attempts();
  EXPECT_EQ(on_pool.failures(), 0) << "of " << on_pool.attempts();

  EXPECT_EQ(broker->pid(), pid);
  EXPECT_EQ(::kill(pid, 0), 0) << "the same process serves";
  EXPECT_EQ(upgrades(*broker), 1u);
  EXPECT_EQ(inode_of_granted(*broker, "web"), web) << "the same kernel socket";
  // The pool's one grant is still held by B: the lease came along.
  auto pool = sbtest::acquire_as_nobody(*broker, "pool", [](int) -> nlohmann::json { return 0; });
  EXPECT_FALSE(pool.granted);
  EXPECT_NE(pool.message.find("max_grants"), std::string::npos) << pool.message;
  EXPECT_TRUE(broker->wait_for_log("adopted 2 socket(s), 2 holder(s)")) << broker->log();
  EXPECT_TRUE(broker->wait_for_log("confined: as the image this one upgraded")) << broker->log();
  EXPECT_FALSE(broker->wait_for_events("upgrade").empty());

  // SIGUSR2 does the same; B's supervisor, which lost its watching connection,
  // is connected again and still told of a revoke.
  // B's supervisor lost its watching connection at each upgrade and connects
  // again (after 100 ms): a revoke made meanwhile is kept for it and told
  // when it watches again.
  auto heard_again = [&](std::size_t times) {
    const std::string out = b->output();
    std::size_t n = 0;
    for (auto at = out.find("revocations are heard"); at != std::string::npos;
         at = out.find("revocations are heard", at + 1)) {
      ++n;
    }
    return n >= times;
  };
  ASSERT_TRUE(sbtest::wait_until([&] { return heard_again(1); }, std::chrono::seconds(10))) << b->output();
  ASSERT_EQ(::kill(pid, SIGUSR2), 0);
  EXPECT_TRUE(sbtest::wait_until([&] { return upgrades(*broker) == 2; }, std::chrono::seconds(5)));
  ASSERT_EQ(cli_as(0, 0, *broker, {"revoke", "pool"}).exit_code, 0);  // most likely before it reconnects
  EXPECT_EQ(b->wait(), 75) << b->output();
  EXPECT_EQ(broker->stop(), 0) << broker->log();
}

TEST_F(UpgradeInPlace, OnlyAdministratorsMayAskForIt) {
  TempDir dir;
  auto broker = Broker::start(dir, web_and_pool());
  ASSERT_TRUE(broker);
  auto refused = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"upgrade"});
  EXPECT_EQ(refused.exit_code, 77) << refused.output;
  EXPECT_EQ(upgrades(*broker), 0u);
}

// A binary that cannot be executed (here a script, which execveat of a
// close-on-exec descriptor refuses): the old image serves on, nothing lost.
TEST_F(UpgradeInPlace, ANewImageThatCannotBeExecutedLeavesTheOldOneServing) {
  TempDir dir;
  const std::string binary = dir.file("sockbrokerd");
  std::filesystem::copy_file(SOCKBROKERD_PATH, binary);
  ::chmod(binary.c_str(), 0755);
  auto broker = Broker::start(dir, web_and_pool(), {}, {}, binary);
  ASSERT_TRUE(broker);
  const std::uint64_t web = inode_of_granted(*broker, "web");
  // The package manager's way: a new file at the path (the running one stays).
  ASSERT_EQ(::unlink(binary.c_str()), 0);
  {
    std::ofstream script(binary);
    script << "#!/bin/sh\nexit 1\n";
  }
  ::chmod(binary.c_str(), 0755);
  auto upgraded = cli_as(0, 0, *broker, {"upgrade"});
  EXPECT_EQ(upgraded.exit_code, 71) << upgraded.output;
  EXPECT_NE(upgraded.output.find("serves on"), std::string::npos) << upgraded.output;
  EXPECT_EQ(inode_of_granted(*broker, "web"), web);
  EXPECT_EQ(upgrades(*broker), 0u);
  EXPECT_FALSE(broker->wait_for_events("upgrade_failed").empty());
  EXPECT_TRUE(broker->wait_for_log("serving on with this image")) << broker->log();
}

// An image that execs and dies at once (here /bin/false), without systemd:
// the keeper got copies just before the exec and holds the ports until the
// next sockbrokerd takes them, the same kernel sockets, leases and all.
TEST_F(UpgradeInPlace, ANewImageThatDiesAtOnceLosesNothingWithoutSystemd) {
  TempDir dir;
  const std::string binary = dir.file("sockbrokerd");
  std::filesystem::copy_file(SOCKBROKERD_PATH, binary);
  ::chmod(binary.c_str(), 0755);
  auto broker = Broker::start(dir, web_and_pool(), {}, {}, binary);
  ASSERT_TRUE(broker);
  const std::uint64_t web = inode_of_granted(*broker, "web");
  auto b = start_worker(*broker, "pool", "B");
  ASSERT_TRUE(b->wait_for_output("ready")) << b->output();
  ASSERT_EQ(::unlink(binary.c_str()), 0);
  std::filesystem::copy_file("/bin/false", binary);
  ::chmod(binary.c_str(), 0755);

  struct stat control_before {};
  ASSERT_EQ(::stat(broker->control().c_str(), &control_before), 0);

  ASSERT_EQ(::kill(broker->pid(), SIGUSR2), 0);
  EXPECT_EQ(broker->wait_exit(std::chrono::seconds(5)), 1) << broker->log();
  EXPECT_EQ(sbtest::bind_tcp(INADDR_LOOPBACK, 80), EADDRINUSE) << "the keeper holds the port";

  // The next broker, as an operator or a supervisor would start it.
  auto next = Broker::start(dir, web_and_pool());
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->wait_for_log("from the keeper of an upgrade that failed")) << next->log();
  EXPECT_TRUE(next->wait_for_log("adopted 2 socket(s), 1 holder(s) with 1 lease(s)")) << next->log();
  EXPECT_EQ(inode_of_granted(*next, "web"), web) << "the same kernel socket";
  EXPECT_EQ(sbtest::tcp_exchange(81, "", 2000), "B\n") << "the worker served throughout";
  // The keeper's control socket too, not a new one at the same path (which a
  // keeper not yet gone would make look taken by "another broker").
  struct stat control_after {};
  ASSERT_EQ(::stat(next->control().c_str(), &control_after), 0);
  EXPECT_EQ(control_after.st_ino, control_before.st_ino) << next->log();
  EXPECT_TRUE(next->wait_for_log("ready on the control socket the keeper kept")) << next->log();
}

}  // namespace
