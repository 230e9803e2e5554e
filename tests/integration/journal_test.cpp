// `--audit journal` against the real systemd-journald: the test runs its own
// journald in a private mount namespace (tmpfs over /run/systemd, /run/log and
// /var/log/journal, so nothing reaches the host's journal), starts the broker
// with --audit journal, and reads the entries back with `journalctl -o json`:
// one structured field per audit key (SOCKBROKER_EVENT=grant, …). Then the
// journald that is not there yet, and the one that stops reading (SIGSTOP):
// the broker must neither wait for it nor lose a line.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <regex>
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


// journald, started and listening; its socket path is in the private
// namespace isolate_journal_paths() made.
std::unique_ptr<Background> start_journald() {
  auto journald = std::make_unique<Background>(0, 0, std::vector<std::string>{kJournald});
  const bool listening = sbtest::wait_until(
      [] {
        struct stat st {};
        return ::stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
      },
      std::chrono::seconds(5), std::chrono::milliseconds(25));
  EXPECT_TRUE(listening) << "journald did not start:\n" << journald->output();
  return listening ? std::move(journald) : nullptr;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
class Journal : public sbtest::BrokerTest {
 protected:
  // journald listening in a private mount namespace, and a broker whose audit
  // trail it is, serving `web` (127.0.0.1:80) to nobody.
  void start_journald_and_broker() {
    ASSERT_EQ(::access(kJournald, X_OK), 0) << kJournald << " is missing: install the systemd package (scripts/deps.sh)";
    ASSERT_EQ(isolate_journal_paths(), "");
    journald_ = start_journald();
    ASSERT_TRUE(journald_);
    auto started = Broker::start(dir_, sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"),
                                 {"--audit", "journal"});
    ASSERT_TRUE(started);
    broker_.emplace(std::move(*started));
  }

  TempDir dir_;
  std::unique_ptr<Background> journald_;
  std::optional<Broker> broker_;  // stopped before journald
};

nlohmann::json status_json(const Broker& broker) {
  auto status = sbtest::cli_as_root(broker, {"status", "--json"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  return nlohmann::json::parse(status.output, nullptr, false);
}

// What `sockbroker get nosuch` as root says: each is a refusal, and an audit
// line (root's are never rate-limited). The CLI runs in a child the harness
// kills after 60 s, so a broker that froze fails the test instead of hanging it.
sbtest::ChildResult refuse_root(const Broker& broker) {
  return sbtest::cli_as_root(broker, {"get", "nosuch", "--", "/bin/true"});
}

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

// journald stopped (SIGSTOP; in life, a journald stalled on a slow disk) while
// the broker keeps being asked: journald's queue fills (net.unix.max_dgram_qlen
// entries, 10 in this network namespace). sd_journal_sendv(3) would then wait
// in sendmsg(2), and the broker with it, for as long as journald sleeps. The
// broker must go on answering, refuse grants while it cannot record them
// (audit_failure = "deny"), say why in `status`, and, once journald reads
// again, write every line it kept meanwhile, then `audit_resumed`.
TEST_F(Journal, AStoppedJournaldStopsGrantsButNeitherFreezesTheBrokerNorLosesALine) {
  ASSERT_NO_FATAL_FAILURE(start_journald_and_broker());
  auto& journald = journald_;
  auto& broker = broker_;
  EXPECT_TRUE(sbtest::grants(*broker, "web"));
  ASSERT_EQ(wait_for_entries("grant", 1).size(), 1u);

  ASSERT_EQ(::kill(journald->pid(), SIGSTOP), 0);
  // Until journald's queue is full and has been for Audit::kBusyGrace.
  int refusals = 0;
  bool failing = false;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!failing && std::chrono::steady_clock::now() < give_up) {
    auto refused = refuse_root(*broker);
    ASSERT_EQ(refused.exit_code, 65) << "the broker did not answer request " << refusals + 1
                                     << " with journald stopped:\n" << refused.output << broker->log();
    ++refusals;
    failing = status_json(*broker)["audit"]["state"] == "failing";
  }
  ASSERT_TRUE(failing) << refusals << " audit lines in 20 s and journald, stopped, never refused one";

  // While journald sleeps: no grant, a system error naming the audit trail,
  // and the broker answers everything else.
  auto refused = sbtest::acquire_as_nobody(*broker, "web");
  EXPECT_FALSE(refused.granted);
  EXPECT_EQ(refused.code, SOCKBROKER_E_SYSTEM) << refused.message;
  EXPECT_NE(refused.message.find("audit trail"), std::string::npos) << refused.message;
  auto status = status_json(*broker);
  EXPECT_EQ(status["audit"]["state"], "failing") << status.dump();
  EXPECT_EQ(status["audit"]["error"], std::strerror(EAGAIN)) << status.dump();
  EXPECT_EQ(status["denials"]["audit_unavailable"], 1) << status.dump();
  EXPECT_NE(broker->log().find("journald's queue is full"), std::string::npos) << broker->log();

  // journald reads again: within the retry interval, grants resume, and
  // nothing was lost.
  ASSERT_EQ(::kill(journald->pid(), SIGCONT), 0);
  EXPECT_TRUE(sbtest::wait_until([&] { return sbtest::acquire_as_nobody(*broker, "web").granted; },
                                 std::chrono::seconds(5), std::chrono::milliseconds(100)));
  auto after = status_json(*broker);
  EXPECT_EQ(after["audit"]["state"], "ok") << after.dump();
  EXPECT_EQ(after["audit"]["lines_lost"], 0) << after.dump();
  // journald may still have been full for the first asks after SIGCONT.
  const auto refused_for_audit = after["denials"]["audit_unavailable"].get<std::size_t>();
  EXPECT_GE(refused_for_audit, 1u);

  EXPECT_EQ(wait_for_entries("audit_resumed", 1).size(), 1u);
  auto denials = wait_for_entries("deny", static_cast<std::size_t>(refusals) + refused_for_audit);
  std::size_t unknown = 0, unavailable = 0;
  for (const auto& deny : denials) {
    unknown += deny.value("SOCKBROKER_REASON", "") == "unknown_socket";
    unavailable += deny.value("SOCKBROKER_REASON", "") == "audit_unavailable";
  }
  EXPECT_EQ(unknown, static_cast<std::size_t>(refusals)) << "every refusal made while journald slept is in the journal";
  EXPECT_EQ(unavailable, refused_for_audit);
  EXPECT_EQ(broker->stop(), 0);
}

// Once journald reads again after a stall, it has its own backlog to read and
// its queue stays full for a moment. The broker must write its backlog as
// fast as journald takes it (not one queue-full, 10 entries here, per
// one-second retry: 500 lines would take 50 s), count one outage and not one
// per moment the queue is full, and refuse no grant once the trail is back.
TEST_F(Journal, AJournaldCatchingUpGetsTheBacklogAtOnceAndTheTrailDoesNotFlap) {
  ASSERT_NO_FATAL_FAILURE(start_journald_and_broker());
  auto& journald = journald_;
  auto& broker = broker_;

  // One audit line each: root asking for a socket the policy does not have,
  // over a fresh connection (an idle one is dropped after request_timeout_ms).
  std::size_t refusals = 0;
  auto refuse = [&] {
    auto root = sockbroker::Client::connect(broker->control());
    ASSERT_TRUE(root) << root.error().describe();
    auto refused = root->acquire("nosuch");
    ASSERT_FALSE(refused);
    ASSERT_EQ(refused.error().code, SOCKBROKER_E_UNKNOWN) << refused.error().describe();
    ++refusals;
  };
  auto state = [&] { return status_json(*broker)["audit"]["state"].get<std::string>(); };

  ASSERT_EQ(::kill(journald->pid(), SIGSTOP), 0);
  ASSERT_TRUE(sbtest::wait_until(
      [&] {
        refuse();
        return state() == "failing";
      },
      std::chrono::seconds(20), std::chrono::milliseconds(10)))
      << "journald, stopped, never refused a line";
  for (int i = 0; i < 500; ++i) refuse();
  ASSERT_EQ(::kill(journald->pid(), SIGCONT), 0);
  EXPECT_TRUE(sbtest::wait_until([&] { return state() == "ok"; }, std::chrono::seconds(10),
                                 std::chrono::milliseconds(50)))
      << "a backlog of 500 lines was still waiting 10 s after journald resumed:\n" << broker->log();

  // journald is busy with the lot; grants go on, and so does the trail.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 300; ++i) refuse();
    EXPECT_TRUE(sbtest::acquire_as_nobody(*broker, "web").granted) << broker->log();
  }
  auto after = status_json(*broker);
  EXPECT_EQ(after["audit"]["state"], "ok") << after.dump();
  EXPECT_EQ(after["audit"]["lines_lost"], 0) << after.dump();
  EXPECT_EQ(after["denials"].value("audit_unavailable", 0), 0) << after.dump();
  const std::string log = broker->log();
  std::size_t outages = 0;
  for (std::size_t at = 0; (at = log.find("cannot write the audit trail", at)) != std::string::npos; ++at) ++outages;
  EXPECT_EQ(outages, 1u) << log;
  EXPECT_EQ(wait_for_entries("audit_resumed", 1).size(), 1u);
  EXPECT_EQ(wait_for_entries("deny", refusals).size(), refusals) << "every refusal in the journal, once";
  EXPECT_EQ(wait_for_entries("grant", 2).size(), 2u);
  EXPECT_EQ(broker->stop(), 0);
}

// No journald at all: sd_journal_sendv(3) says success and drops the entry.
// An audit trail must not: the broker starts, refuses grants it cannot
// record, and writes everything, its start first, once a journald listens.
TEST_F(Journal, WithoutAJournaldTheTrailFailsUntilOneListensThenLosesNothing) {
  ASSERT_EQ(::access(kJournald, X_OK), 0) << kJournald << " is missing: install the systemd package (scripts/deps.sh)";
  ASSERT_EQ(isolate_journal_paths(), "");

  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"),
                              {"--audit", "journal"});
  ASSERT_TRUE(broker);
  auto refused = sbtest::acquire_as_nobody(*broker, "web");
  EXPECT_FALSE(refused.granted);
  EXPECT_EQ(refused.code, SOCKBROKER_E_SYSTEM) << refused.message;
  auto status = status_json(*broker);
  EXPECT_EQ(status["audit"]["state"], "failing") << status.dump();
  EXPECT_NE(broker->log().find("no journald listens on /run/systemd/journal/socket"), std::string::npos)
      << broker->log();

  auto journald = start_journald();
  ASSERT_TRUE(journald);
  EXPECT_TRUE(sbtest::wait_until([&] { return sbtest::acquire_as_nobody(*broker, "web").granted; },
                                 std::chrono::seconds(5), std::chrono::milliseconds(100)));
  EXPECT_EQ(wait_for_entries("start", 1).size(), 1u) << "the start, kept since before journald listened";
  EXPECT_EQ(wait_for_entries("audit_resumed", 1).size(), 1u);
  auto denials = wait_for_entries("deny", 1);
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0].value("SOCKBROKER_REASON", ""), "audit_unavailable");
  EXPECT_EQ(wait_for_entries("grant", 1).size(), 1u);
  EXPECT_EQ(broker->stop(), 0);
}

// Under systemd the broker's stdout and stderr are a stream socket to
// journald, and a journald that stops reading lets it fill: a blocking write of
// a log line would then stop the broker, grants, connections and watchdog
// alike. Here the socket is one nobody reads, with a small buffer. The broker
// must keep answering (log lines that do not fit are dropped, whole: journald
// makes an entry of each line, and half a line glued to the next would be a
// false one) and log again once the socket is read.
TEST_F(Journal, ALogSocketNobodyReadsNeitherFreezesTheBroker) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  sockbroker::UniqueFd reader(pair[0]);
  sockbroker::UniqueFd writer(pair[1]);
  const int small = 4096;
  ASSERT_EQ(::setsockopt(writer.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_EQ(::fcntl(reader.get(), F_SETFL, O_NONBLOCK), 0);
  // What the broker wrote so far, read without waiting.
  auto drain = [&] {
    std::string text;
    char buffer[4096];
    for (ssize_t n; (n = ::read(reader.get(), buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<std::size_t>(n));
    return text;
  };

  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"),
                              {"--log-level", "debug"}, {}, SOCKBROKERD_PATH, writer.get());
  ASSERT_TRUE(broker);
  writer.reset();

  // Each refusal of root is one log line (root's are never rate-limited).
  constexpr int kRefusals = 300;
  for (int i = 0; i < kRefusals; ++i) {
    auto refused = refuse_root(*broker);
    ASSERT_EQ(refused.exit_code, 65) << "the broker did not answer request " << i + 1
                                     << " while nobody read its log:\n" << refused.output;
  }
  EXPECT_TRUE(sbtest::grants(*broker, "web"));

  const std::string written = drain();
  EXPECT_NE(written.find("ready on"), std::string::npos) << written;
  std::size_t logged = 0;
  for (std::size_t at = 0; (at = written.find("no socket named \"nosuch\"", at)) != std::string::npos; ++at) ++logged;
  EXPECT_LT(logged, static_cast<std::size_t>(kRefusals)) << "the socket never filled: this test proves nothing";

  // Read again: the broker's lines come through again.
  auto refused = refuse_root(*broker);
  EXPECT_EQ(refused.exit_code, 65) << refused.output;
  std::string after;
  EXPECT_TRUE(sbtest::wait_until([&] {
    after += drain();
    return after.find("no socket named \"nosuch\"") != std::string::npos;
  })) << after;
  EXPECT_EQ(broker->stop(), 0);
  after += drain();

  // Every line whole: one level, at its start (after the time, off a journal).
  const std::regex one_line(R"(^(\S+ \S+ sockbrokerd )?(trace|debug|info|warning|error|critical): )");
  const std::regex a_level(R"((^| )(trace|debug|info|warning|error|critical): )");
  std::istringstream lines(written + after);
  std::size_t checked = 0;
  for (std::string line; std::getline(lines, line); ++checked) {
    EXPECT_TRUE(std::regex_search(line, one_line)) << "not a whole line: " << line;
    const auto levels = std::distance(std::sregex_iterator(line.begin(), line.end(), a_level), std::sregex_iterator());
    EXPECT_EQ(levels, 1) << "two lines in one: " << line;
  }
  EXPECT_GT(checked, 10u);
}

}  // namespace
