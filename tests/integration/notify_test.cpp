// The broker's sd_notify protocol, read by the test itself on a NOTIFY_SOCKET
// it listens on, as systemd would: READY=1 with STATUS and MAINPID once serving,
// RELOADING=1 with MONOTONIC_USEC around a reload, WATCHDOG=1 at half the
// WatchdogSec interval, STOPPING=1 on SIGTERM.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <sockbroker/fd.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

sbtest::PolicyBuilder web_only() { return sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"); }

// The datagram socket systemd would own, bound at dir/notify.sock.
class NotifyListener {
 public:
  explicit NotifyListener(const TempDir& dir) : path_(dir.file("notify.sock")) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_) << std::strerror(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  }
  [[nodiscard]] const std::string& path() const { return path_; }

  // The next message, or "" after timeout_ms without one.
  std::string next(int timeout_ms = 5000) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return "";
    char buffer[4096];
    ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : "";
  }

  // Messages until one contains `needle` (returned), skipping watchdog pings
  // and anything else; "" if none arrives within timeout_ms.
  std::string until(const std::string& needle, int timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      std::string message = next(static_cast<int>(left.count()) + 1);
      if (message.find(needle) != std::string::npos) return message;
    }
    return "";
  }

 private:
  std::string path_;
  sockbroker::UniqueFd fd_;
};

using sbtest::ScopedEnv;

std::uint64_t field_value(const std::string& message, const std::string& key) {
  auto at = message.find(key + "=");
  if (at == std::string::npos) return 0;
  return std::strtoull(message.c_str() + at + key.size() + 1, nullptr, 10);
}

std::uint64_t monotonic_usec_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Notify = sbtest::BrokerTest;

TEST_F(Notify, ReadyReloadingStoppingAndStatus) {
  TempDir dir;
  NotifyListener systemd(dir);
  ScopedEnv notify("NOTIFY_SOCKET", systemd.path());
  auto broker = Broker::start(dir, web_only());
  ASSERT_TRUE(broker);

  std::string ready = systemd.until("READY=1");
  ASSERT_FALSE(ready.empty()) << "no READY=1; broker log:\n" << broker->log();
  EXPECT_NE(ready.find("STATUS=serving"), std::string::npos) << ready;
  EXPECT_EQ(field_value(ready, "MAINPID"), static_cast<std::uint64_t>(broker->pid())) << ready;

  std::uint64_t before = monotonic_usec_now();
  ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  std::string reloading = systemd.until("RELOADING=1");
  ASSERT_FALSE(reloading.empty()) << broker->log();
  // systemd drops a RELOADING=1 whose MONOTONIC_USEC is older than the reload
  // request it made, so the stamp must be taken when the reload starts.
  std::uint64_t stamp = field_value(reloading, "MONOTONIC_USEC");
  EXPECT_GE(stamp, before) << reloading;
  EXPECT_LE(stamp, monotonic_usec_now()) << reloading;
  std::string reloaded = systemd.until("READY=1");
  EXPECT_NE(reloaded.find("STATUS="), std::string::npos) << reloaded;

  EXPECT_EQ(broker->stop(), 0);
  EXPECT_FALSE(systemd.until("STOPPING=1").empty());
}

TEST_F(Notify, WatchdogPingsAtHalfTheInterval) {
  TempDir dir;
  NotifyListener systemd(dir);
  ScopedEnv notify("NOTIFY_SOCKET", systemd.path());
  ScopedEnv watchdog("WATCHDOG_USEC", "200000");  // 200 ms: a ping every ~100 ms
  auto broker = Broker::start(dir, web_only());
  ASSERT_TRUE(broker);
  ASSERT_FALSE(systemd.until("READY=1").empty()) << broker->log();

  // Idle (no client, no deadline pending) the loop must still wake up to ping.
  auto start = std::chrono::steady_clock::now();
  int pings = 0;
  while (pings < 5) {
    std::string message = systemd.next(1000);
    ASSERT_FALSE(message.empty()) << "no watchdog ping within 1 s after " << pings << "; log:\n" << broker->log();
    if (message == "WATCHDOG=1") ++pings;
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  // Five pings at ~100 ms: well under the 5 × 200 ms that would let systemd
  // kill the broker between two of them.
  EXPECT_LT(elapsed, std::chrono::milliseconds(1000));
  EXPECT_NE(broker->log().find("systemd watchdog"), std::string::npos) << broker->log();
  EXPECT_EQ(broker->stop(), 0);
}

TEST_F(Notify, WatchdogForAnotherPidIsIgnored) {
  TempDir dir;
  NotifyListener systemd(dir);
  ScopedEnv notify("NOTIFY_SOCKET", systemd.path());
  ScopedEnv watchdog("WATCHDOG_USEC", "200000");
  // WATCHDOG_PID names the process systemd watches; a child that inherited
  // the variables (ExecStartPre, a wrapper) must not ping in its place.
  ScopedEnv watchdog_pid("WATCHDOG_PID", "1");
  auto broker = Broker::start(dir, web_only());
  ASSERT_TRUE(broker);
  ASSERT_FALSE(systemd.until("READY=1").empty()) << broker->log();
  EXPECT_EQ(systemd.until("WATCHDOG=1", 600), "");
  EXPECT_EQ(broker->stop(), 0);
}

}  // namespace
