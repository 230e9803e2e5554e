// `--audit journal` against the real systemd-journald: the test runs its own
// journald in a private mount namespace (tmpfs over /run/systemd, /run/log and
// /var/log/journal, so nothing reaches the host's journal), starts the broker
// with --audit journal, and reads the entries back with `journalctl -o json`:
// one structured field per audit key (SOCKBROKER_EVENT=grant, …).
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Background;
using sbtest::Broker;
using sbtest::TempDir;

constexpr char kJournald[] = "/lib/systemd/systemd-journald";
constexpr char kJournalctl[] = "/usr/bin/journalctl";
constexpr char kJournalDir[] = "/run/log/journal";

// A private mount namespace with empty tmpfs where journald keeps its sockets
// and files. Returns "" or what failed.
std::string isolate_journal_paths() {
  if (::unshare(CLONE_NEWNS) != 0) return std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
  // Private propagation first, or the tmpfs mounts would show on the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return std::string("making / private: ") + std::strerror(errno);
  }
  for (const char* dir : {"/run/systemd", "/run/log", "/var/log/journal"}) {
    std::error_code ignored;
    std::filesystem::create_directories(dir, ignored);
    if (::mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) {
      return std::string("mounting a tmpfs on ") + dir + ": " + std::strerror(errno);
    }
  }
  if (::mkdir("/run/systemd/journal", 0755) != 0) return std::string("mkdir /run/systemd/journal: ") + std::strerror(errno);
  return "";
}

// Every entry sockbrokerd sent, as journalctl -o json prints them.
std::vector<nlohmann::json> broker_entries() {
  auto result = sbtest::run_command_as(0, 0, {kJournalctl, "-D", kJournalDir, "-o", "json", "--no-pager",
                                              "SYSLOG_IDENTIFIER=sockbrokerd"});
  std::vector<nlohmann::json> entries;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.front() != '{') continue;
    entries.push_back(nlohmann::json::parse(line));
  }
  return entries;
}

// The entries of one audit event; waits up to 5 s for at least `at_least`.
std::vector<nlohmann::json> wait_for_entries(const std::string& event, std::size_t at_least) {
  std::vector<nlohmann::json> matching;
  sbtest::wait_until(
      [&] {
        matching.clear();
        for (auto& entry : broker_entries()) {
          if (entry.value("SOCKBROKER_EVENT", "") == event) matching.push_back(std::move(entry));
        }
        return matching.size() >= at_least;
      },
      std::chrono::seconds(5), std::chrono::milliseconds(50));
  return matching;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Journal = sbtest::BrokerTest;

TEST_F(Journal, AuditEventsAreStructuredJournalEntries) {
  ASSERT_EQ(::access(kJournald, X_OK), 0) << kJournald << " is missing: install the systemd package (scripts/deps.sh)";
  ASSERT_EQ(::access(kJournalctl, X_OK), 0) << kJournalctl << " is missing";
  std::string isolated = isolate_journal_paths();
  ASSERT_EQ(isolated, "");

  Background journald(0, 0, {kJournald});
  const bool listening = sbtest::wait_until(
      [] {
        struct stat st {};
        return ::stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
      },
      std::chrono::seconds(5), std::chrono::milliseconds(25));
  ASSERT_TRUE(listening) << "journald did not start:\n" << journald.output();

  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"),
                              {"--audit", "journal"});
  ASSERT_TRUE(broker);

  auto granted = sbtest::acquire_as_nobody(*broker, "web");
  EXPECT_TRUE(granted.granted) << granted.message;
  auto denied = sbtest::acquire_as(sbtest::ChildSetup{1234, 1234, {}, {}}, *broker, "web");
  EXPECT_EQ(denied.code, SOCKBROKER_E_DENIED) << denied.message;

  auto grants = wait_for_entries("grant", 1);
  ASSERT_EQ(grants.size(), 1u) << "journal entries of sockbrokerd: " << broker_entries().size();
  const auto& grant = grants[0];
  EXPECT_EQ(grant.value("SOCKBROKER_SOCKET", ""), "web");
  EXPECT_EQ(grant.value("SOCKBROKER_RULE", ""), "0");
  EXPECT_EQ(grant.value("SOCKBROKER_PEER_UID", ""), "65534");
  EXPECT_EQ(grant.value("SOCKBROKER_PEER_GID", ""), "65534");
  EXPECT_EQ(grant.value("SOCKBROKER_LOCAL_ADDR_SA_FAMILY", ""), "AF_INET");
  EXPECT_EQ(grant.value("SOCKBROKER_LOCAL_ADDR_SIN_ADDR", ""), "127.0.0.1");
  EXPECT_EQ(grant.value("SOCKBROKER_LOCAL_ADDR_SIN_PORT", ""), "80");
  EXPECT_EQ(grant.value("SOCKBROKER_TYPE", ""), "stream");
  EXPECT_EQ(grant.value("PRIORITY", ""), "6");
  // Journald stamps who sent it; the message is the same JSON line a file gets.
  EXPECT_EQ(grant.value("_PID", ""), std::to_string(broker->pid()));
  auto line = nlohmann::json::parse(grant.value("MESSAGE", "{}"));
  EXPECT_EQ(line.value("event", ""), "grant");
  EXPECT_EQ(line["peer"].value("uid", 0), 65534);

  auto denials = wait_for_entries("deny", 1);
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0].value("SOCKBROKER_REASON", ""), "no_rule_matched");
  EXPECT_EQ(denials[0].value("SOCKBROKER_PEER_UID", ""), "1234");
  EXPECT_EQ(denials[0].value("PRIORITY", ""), "5");

  EXPECT_EQ(wait_for_entries("start", 1).size(), 1u);
  EXPECT_EQ(broker->stop(), 0);
  EXPECT_EQ(wait_for_entries("stop", 1).size(), 1u);
}

}  // namespace
