// systemd's file descriptor store, played by the test (fake_fd_store.hpp):
// after a restart or a crash, the next broker must serve the very same kernel
// sockets, know who holds what, and never let a port go.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <sockbroker/client.hpp>
#include <sockbroker/fd.hpp>

#include "fake_fd_store.hpp"
#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::inode_of_granted;
using sbtest::start_worker;

using sbtest::Background;
using sbtest::FakeFdStore;
using sbtest::Broker;
using sbtest::start_under;
using sbtest::ScopedEnv;
using sbtest::TempDir;
using sockbroker::UniqueFd;

std::string three_sockets() {
  return sbtest::PolicyBuilder()
      .socket("web", "127.0.0.1:80")
      .allow_user("nobody")
      .socket("pool", "127.0.0.1:81")
      .set("reuse_port", "true")
      .set("max_grants", "2")
      .allow_user("nobody")
      .socket("dns", "127.0.0.1:53")
      .set_string("type", "datagram")
      .allow_user("nobody");
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using FdStore = sbtest::BrokerTest;

// The same kernel sockets after a crash: no port was ever let go, running
// holders keep serving and still count against max_grants.
TEST_F(FdStore, ACrashedBrokersSocketsAndLeasesComeBackFromTheStore) {
  TempDir dir;
  FakeFdStore store(dir);
  auto first = start_under(store, dir, three_sockets());
  ASSERT_TRUE(first);
  const std::uint64_t web_inode = inode_of_granted(*first, "web");
  ASSERT_NE(web_inode, 0u);
  auto a = start_worker(*first, "pool", "A");
  auto b = start_worker(*first, "pool", "B");
  ASSERT_TRUE(a->wait_for_output("ready")) << a->output();
  ASSERT_TRUE(b->wait_for_output("ready")) << b->output();
  // The store follows within 50 ms. A fixed wait: the leases are written into
  // the stored state memfd in place, with no message to wait for.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  store.drain();
  EXPECT_EQ(store.count("state"), 1u) << store.names();
  EXPECT_EQ(store.count("control"), 1u) << store.names();
  EXPECT_EQ(store.count_sockets(), 3u) << store.names();

  first->kill();
  // Between the brokers the port stays bound: nobody else may take it.
  EXPECT_EQ(sbtest::bind_tcp(INADDR_LOOPBACK, 80), EADDRINUSE);
  // Clients that come meanwhile wait in the control socket's queue.
  std::atomic<bool> answered{false};
  std::thread early([&] { answered = sockbroker::Client::connect(dir.file("control.sock")).ok(); });

  auto second = start_under(store, dir, three_sockets(), {}, store.handed());
  early.join();
  ASSERT_TRUE(second);
  EXPECT_TRUE(answered);
  EXPECT_TRUE(second->wait_for_log("adopted 3 socket(s), 2 holder(s) with 2 lease(s)")) << second->log();
  EXPECT_EQ(inode_of_granted(*second, "web"), web_inode) << "the same kernel socket";
  // The two running workers still hold the pool's two grants.
  auto third = sbtest::acquire_as_nobody(*second, "pool", [](int) -> nlohmann::json { return 0; });
  EXPECT_FALSE(third.granted);
  EXPECT_NE(third.message.find("max_grants"), std::string::npos) << third.message;
  std::map<std::string, int> answers;
  for (int i = 0; i < 40; ++i) answers[sbtest::tcp_exchange(81, "", 2000)]++;
  EXPECT_EQ(answers["A\n"] + answers["B\n"], 40);
  // And the new broker keeps the store in step: nothing stored twice. A
  // negative check: whatever it would store again has 200 ms to arrive.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  store.drain();
  EXPECT_EQ(store.count("state"), 1u) << store.names();
  EXPECT_EQ(store.count("control"), 1u) << store.names();
  EXPECT_EQ(store.count_sockets(), 3u) << store.names();
}

// A socket the policy no longer has (or has otherwise) is not adopted: it is
// closed and leaves the store; what the policy has is bound afresh.
TEST_F(FdStore, WhatThePolicyNoLongerSaysIsRefusedAndRemoved) {
  TempDir dir;
  FakeFdStore store(dir);
  auto first = start_under(store, dir, three_sockets());
  ASSERT_TRUE(first);
  sbtest::wait_until([&] {
    store.drain(0);
    return store.count_sockets() == 3;
  });
  ASSERT_EQ(store.count_sockets(), 3u) << store.names();
  first->stop();
  store.drain();

  // web moved to port 8080; dns is gone.
  auto second = start_under(store, dir,
                            sbtest::PolicyBuilder()
                                .socket("web", "127.0.0.1:8080")
                                .allow_user("nobody")
                                .socket("pool", "127.0.0.1:81")
                                .set("reuse_port", "true")
                                .allow_user("nobody"),
                            {}, store.handed());
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->wait_for_log("refused 2")) << second->log();
  // The refused sockets leave the store (and this process's copies of them close).
  sbtest::wait_until([&] {
    store.drain(0);
    return store.count_sockets() == 2 && store.count("state") == 1 && sbtest::bind_tcp(INADDR_LOOPBACK, 80) == 0;
  });
  EXPECT_EQ(store.count_sockets(), 2u) << store.names();
  EXPECT_EQ(store.count("state"), 1u) << store.names();
  // Port 80 and 53 are free again; 8080 is the broker's.
  EXPECT_EQ(sbtest::bind_tcp(INADDR_LOOPBACK, 80), 0);
  EXPECT_NE(inode_of_granted(*second, "web"), 0u);
}

// An upgrade in place to an image that dies at once (here /bin/false): the
// process is gone, but systemd's store, kept in step just before the exec,
// hands everything to the broker Restart= starts.
TEST_F(FdStore, AnUpgradeToAnImageThatDiesAtOnceLosesNothingUnderSystemd) {
  TempDir dir;
  FakeFdStore store(dir);
  const std::string binary = dir.file("sockbrokerd");
  std::filesystem::copy_file(SOCKBROKERD_PATH, binary);
  ::chmod(binary.c_str(), 0755);
  auto first = start_under(store, dir, three_sockets(), {}, {}, binary);
  ASSERT_TRUE(first);
  const std::uint64_t web_inode = inode_of_granted(*first, "web");
  auto a = start_worker(*first, "pool", "A");
  ASSERT_TRUE(a->wait_for_output("ready")) << a->output();
  ASSERT_EQ(::unlink(binary.c_str()), 0);
  std::filesystem::copy_file("/bin/false", binary);
  ::chmod(binary.c_str(), 0755);

  ASSERT_EQ(::kill(first->pid(), SIGUSR2), 0);
  EXPECT_EQ(first->wait_exit(std::chrono::seconds(5)), 1) << first->log();
  store.drain();
  EXPECT_EQ(sbtest::bind_tcp(INADDR_LOOPBACK, 80), EADDRINUSE) << "the store holds the port";

  auto second = start_under(store, dir, three_sockets(), {}, store.handed());
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->wait_for_log("adopted 3 socket(s), 1 holder(s) with 1 lease(s)")) << second->log();
  EXPECT_EQ(inode_of_granted(*second, "web"), web_inode);
  EXPECT_EQ(sbtest::tcp_exchange(81, "", 2000), "A\n");
  // The keeper had copies too: it handed them over and left, holding nothing.
  EXPECT_TRUE(second->wait_for_log("the keeper's copies are closed")) << second->log();
}

// Without NOTIFY_SOCKET (or with --no-fd-store) nothing is stored, and the
// broker unlinks its control socket at exit as before.
TEST_F(FdStore, NoStoreWithoutSystemd) {
  TempDir dir;
  FakeFdStore store(dir);
  auto broker = start_under(store, dir, three_sockets(), {"--no-fd-store"});
  ASSERT_TRUE(broker);
  store.drain();
  EXPECT_EQ(store.names(), "");
  broker->stop();
  struct stat st {};
  EXPECT_NE(::stat(dir.file("control.sock").c_str(), &st), 0);
}

}  // namespace
