// The C API, driven by a client written in C (c_client.c).
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include <sockbroker/client.h>

#include "c_client.h"
#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

std::string web_and_admin() {
  return sbtest::PolicyBuilder().socket("web", "0.0.0.0:80").allow_user("nobody").socket("admin", "127.0.0.1:443");
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using CApi = sbtest::BrokerTest;

TEST_F(CApi, AcquireLockdownAndServeFromC) {
  sbtest::TempDir dir;
  auto broker = sbtest::Broker::start(dir, web_and_admin());
  ASSERT_TRUE(broker);
  std::string answer;
  std::thread client([&] { answer = sbtest::tcp_exchange(80, "hi"); });
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    char error[512] = "";
    int rc = c_client_serve_one(broker->control().c_str(), "web", error, sizeof error);
    sbtest::report(report_fd, error);
    return rc == 0 ? 0 : 1;
  });
  client.join();
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_EQ(answer, "hello from C");
}

TEST_F(CApi, ErrorsAreDistinctCodesWithTheBrokersExplanation) {
  sbtest::TempDir dir;
  auto broker = sbtest::Broker::start(dir, web_and_admin());
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    char error[512] = "";
    int rc = c_client_serve_one(broker->control().c_str(), "admin", error, sizeof error);
    sbtest::report(report_fd, error);
    return rc == SOCKBROKER_E_DENIED ? 0 : 1;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_NE(child.output.find("uid 65534"), std::string::npos) << child.output;

  EXPECT_EQ(::sockbroker_acquire(broker->control().c_str(), "nosuch", 0), SOCKBROKER_E_UNKNOWN);
  EXPECT_EQ(::sockbroker_acquire(broker->control().c_str(), nullptr, 0), SOCKBROKER_E_INVALID);
  EXPECT_EQ(::sockbroker_acquire(broker->control().c_str(), "web", 1), SOCKBROKER_E_INVALID);
  EXPECT_EQ(::sockbroker_acquire(dir.file("absent.sock").c_str(), "web", 0), SOCKBROKER_E_UNAVAILABLE);
  EXPECT_EQ(::sockbroker_acquire_netns(broker->control().c_str(), "web", -1, 0), SOCKBROKER_E_INVALID);
  EXPECT_NE(std::string(::sockbroker_last_error()).find("no network namespace descriptor"), std::string::npos)
      << ::sockbroker_last_error();

  // Every code is distinct and has its own sentence.
  std::set<std::string> sentences;
  for (int code : {SOCKBROKER_E_UNAVAILABLE, SOCKBROKER_E_UNKNOWN, SOCKBROKER_E_DENIED, SOCKBROKER_E_QUOTA,
                   SOCKBROKER_E_BIND, SOCKBROKER_E_PROTOCOL, SOCKBROKER_E_INVALID, SOCKBROKER_E_SYSTEM}) {
    EXPECT_LT(code, 0);
    sentences.insert(::sockbroker_strerror(code));
  }
  EXPECT_EQ(sentences.size(), 8u);
}

TEST_F(CApi, KeptOpenConnectionServesManyGrants) {
  sbtest::TempDir dir;
  auto broker = sbtest::Broker::start(dir, web_and_admin());
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  auto child = sbtest::run_as_nobody([&](int) { return c_client_kept_open(broker->control().c_str(), "web", 500) == 0 ? 0 : 1; });
  EXPECT_EQ(child.exit_code, 0);
  EXPECT_EQ(broker->wait_for_events("grant", 500).size(), 500u);
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
}

}  // namespace
