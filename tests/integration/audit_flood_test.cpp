// A uid that floods the broker with refusals cannot flood the audit trail or
// the log: its lines are rate-limited (audit_rate_per_uid, audit_burst_per_uid)
// and what is dropped is counted, in `status` and in `suppressed` events, while
// every other uid is still audited in full.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include <sockbroker/client.hpp>

#include "harness.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

constexpr int kDenials = 3000;
constexpr int kMalformed = 300;
constexpr int kBurst = 100;  // the policy's defaults
constexpr int kRate = 10;

std::size_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool from_nobody(const nlohmann::json& event) {
  return event.contains("peer") && event["peer"].value("uid", 0u) == sbtest::kNobody;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

TEST_F(Adversarial, AuditFloodFromOneUidIsBoundedAndSummarised) {
  TempDir dir;
  // Each line in the file before the reply it records: what the test counts
  // is what the broker has written, not a batch behind.
  auto broker = Broker::start(dir, sbtest::web_dns_admin(), {"--audit-flush-ms", "0"});
  ASSERT_TRUE(broker);
  const std::string trail = dir.file("audit.log");
  const std::size_t before = file_size(trail);

  const auto started = std::chrono::steady_clock::now();
  auto flood = sbtest::run_as_nobody([&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    for (int i = 0; i < kDenials; ++i) {
      auto got = client->acquire("nosuch");
      if (got || got.error().code != SOCKBROKER_E_UNKNOWN) {
        sbtest::report(report_fd, "acquire " + std::to_string(i) + ": not refused as unknown");
        return 2;
      }
    }
    const char garbage[16] = "not capnproto!";
    for (int i = 0; i < kMalformed; ++i) {
      sockbroker::UniqueFd fd = sbtest::connect_control(broker->control());
      if (!fd || ::send(fd.get(), garbage, sizeof garbage, MSG_NOSIGNAL) != sizeof garbage) return 3;
      char reply[4096];
      if (::recv(fd.get(), reply, sizeof reply, 0) <= 0) return 4;  // each is answered
    }
    return 0;
  });
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(flood.exit_code, 0) << flood.output;

  // Written: the burst and the rate, not the flood. A refusal line is under
  // 600 bytes; unbounded, these 3,300 would be about 1.3 MB.
  const std::size_t allowed = static_cast<std::size_t>(kBurst + kRate * (seconds + 1));
  std::size_t written = 0;
  for (const auto& e : broker->audit_events()) written += from_nobody(e);
  EXPECT_LE(written, allowed) << "in " << seconds << " s";
  EXPECT_GE(written, static_cast<std::size_t>(kBurst));
  EXPECT_LE(file_size(trail) - before, allowed * 600) << "in " << seconds << " s";
  const std::string log = broker->log();
  EXPECT_LE(occurrences(log, "uid 65534, gid"), allowed) << "log lines are limited with the audit lines";

  // Counted all the same.
  auto status = sbtest::cli_as_root(*broker, {"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  auto counters = nlohmann::json::parse(status.output);
  EXPECT_EQ(counters["denials"]["unknown_socket"], kDenials);
  EXPECT_EQ(counters["bad_requests"], kMalformed);
  EXPECT_EQ(counters["audit"]["suppressed"].get<std::size_t>() + written,
            static_cast<std::size_t>(kDenials + kMalformed));

  // Another uid is audited at once, the flood's limit is not its own.
  EXPECT_FALSE(sbtest::acquire_as(sbtest::ChildSetup{1, 1, {}, {}}, *broker, "admin").granted);
  bool daemon_denied = false;
  for (const auto& e : broker->audit_events()) {
    daemon_denied = daemon_denied || (e.value("event", "") == "deny" && e["peer"].value("uid", 0u) == 1u);
  }
  EXPECT_TRUE(daemon_denied);

  // The summary comes at the end of its window, while the broker runs.
  std::vector<nlohmann::json> summaries;
  EXPECT_TRUE(sbtest::wait_until(
      [&] {
        summaries.clear();
        for (auto& e : broker->audit_events()) {
          if (e.value("event", "") == "suppressed") summaries.push_back(e);
        }
        return !summaries.empty();
      },
      std::chrono::seconds(10), std::chrono::milliseconds(100)));
  ASSERT_FALSE(summaries.empty());
  EXPECT_EQ(summaries[0]["uid"], sbtest::kNobody);
  EXPECT_TRUE(summaries[0]["since"].is_string());
  EXPECT_NE(broker->log().find("uid 65534: "), std::string::npos) << "the summary is logged too";

  // Every refusal is accounted for: written, or in a summary (the last ones
  // at the latest when the broker stops).
  EXPECT_EQ(broker->stop(), 0);
  std::size_t lines = 0, summarised = 0;
  for (const auto& e : broker->audit_events()) {
    lines += from_nobody(e);
    if (e.value("event", "") == "suppressed" && e["uid"] == sbtest::kNobody) summarised += e["count"].get<std::size_t>();
  }
  EXPECT_EQ(lines + summarised, static_cast<std::size_t>(kDenials + kMalformed));
  EXPECT_EQ(broker->audit_events().back()["event"], "stop");
}

}  // namespace
