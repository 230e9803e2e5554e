// `sockbroker audit` against the real kernel's socket tables: the broker's
// sockets, a granted one held by a uid-65534 service, and listeners nobody
// accounted for, all in the test's private network namespace.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include <sockbroker/fd.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;
using sockbroker::UniqueFd;

std::string web_and_dns() {
  return sbtest::PolicyBuilder()
      .socket("web", "0.0.0.0:80")
      .allow_user("nobody")
      .socket("dns", "127.0.0.1:53")
      .set_string("type", "datagram")
      .allow_user("nobody");
}

constexpr std::uint16_t kTcpPort = 8081;
constexpr std::uint16_t kUdpPort = 5353;
// A space in an abstract name: the listing must escape it (\x20) and a
// baseline written from the listing must still match.
const std::string kAbstractName = "sbtest audit";
// The kernel keeps 15 bytes of the test binary's name.
const std::string kSelfComm = "integration_tes";

UniqueFd inet_listener(int type, std::uint32_t address, std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd) << std::strerror(errno);
  sockaddr_in sin = sbtest::ipv4_address(port, address);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0) << std::strerror(errno);
  if (type == SOCK_STREAM) {
    EXPECT_EQ(::listen(fd.get(), 8), 0) << std::strerror(errno);
  }
  return fd;
}

UniqueFd unix_listener(int type, const std::string& name, bool abstract) {
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd) << std::strerror(errno);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::size_t offset = abstract ? 1 : 0;  // abstract: a leading NUL, no terminating one
  std::memcpy(sun.sun_path + offset, name.data(), name.size());
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + offset + name.size() + (abstract ? 0 : 1));
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), length), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(fd.get(), 8), 0) << std::strerror(errno);
  return fd;
}

struct Audit {
  int exit_code = -1;
  std::string output;
  nlohmann::json json;
};

// Runs `sockbroker audit` as root; the JSON starts at the first '{' (warnings
// on stderr come first in the combined output).
Audit run_audit(const std::string& control, std::vector<std::string> args) {
  std::vector<std::string> argv{sbtest::programs().sockbroker, "--control", control, "audit"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = sbtest::run_command_as(0, 0, argv);
  Audit audit{result.exit_code, result.output, nullptr};
  auto brace = result.output.find('{');
  if (brace != std::string::npos) audit.json = nlohmann::json::parse(result.output.substr(brace), nullptr, false);
  return audit;
}

const nlohmann::json* find(const nlohmann::json& audit, const std::string& proto, const std::string& address) {
  for (const auto& l : audit["listeners"]) {
    if (l["proto"] == proto && l["address"] == address) return &l;
  }
  return nullptr;
}

bool held_by(const nlohmann::json& listener, pid_t pid) {
  for (const auto& p : listener["processes"]) {
    if (p["pid"] == pid) return true;
  }
  return false;
}

uid_t uid_of(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) return static_cast<uid_t>(std::stoul(line.substr(4)));
  }
  return static_cast<uid_t>(-1);
}

// The listeners of the test, the broker, and a service holding "web".
class AuditTest : public ::testing::Test {
 protected:
  void start() {
    auto started = Broker::start(dir_, web_and_dns());
    ASSERT_TRUE(started);
    broker_.emplace(std::move(*started));
    service_ = std::make_unique<sbtest::Background>(
        sbtest::kNobody, sbtest::kNogroup,
        std::vector<std::string>{sbtest::programs().sockbroker, "--control", broker_->control(), "run", "-s", "web",
                                 "--", "/bin/sleep", "30"});
    tcp_ = inet_listener(SOCK_STREAM, INADDR_LOOPBACK, kTcpPort);
    udp_ = inet_listener(SOCK_DGRAM, INADDR_ANY, kUdpPort);
    abstract_ = unix_listener(SOCK_STREAM, kAbstractName, true);
    path_ = unix_listener(SOCK_SEQPACKET, dir_.file("app.sock"), false);
    // The service holds "web" from the grant on; wait until it is sleep itself.
    ASSERT_FALSE(broker_->wait_for_events("grant").empty()) << broker_->log();
    const bool held = sbtest::wait_until(
        [&] {
          auto audit = run_audit(broker_->control(), {"--json"});
          const auto* web = audit.json.is_object() ? find(audit.json, "tcp", "0.0.0.0:80") : nullptr;
          if (web == nullptr) return false;
          for (const auto& p : (*web)["processes"]) {
            if (p["comm"] == "sleep") return true;
          }
          return false;
        },
        std::chrono::seconds(20));
    ASSERT_TRUE(held) << "the service never held \"web\" as /bin/sleep";
  }

  TempDir dir_;
  std::optional<Broker> broker_;
  std::unique_ptr<sbtest::Background> service_;
  UniqueFd tcp_, udp_, abstract_, path_;
};

TEST_F(AuditTest, MarksBrokerWildcardAndUnexpectedListenersWithTheirOwners) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(start());
  auto audit = run_audit(broker_->control(), {"--json"});
  EXPECT_EQ(audit.exit_code, 1) << audit.output;  // the test's own listeners are unexpected
  ASSERT_TRUE(audit.json.is_object()) << audit.output;
  const auto& j = audit.json;
  EXPECT_EQ(j["broker"]["reachable"], true);
  EXPECT_EQ(j["broker"]["admin"], true);
  EXPECT_EQ(j["broker"]["pids"], nlohmann::json::array({broker_->pid()}));

  const auto* web = find(j, "tcp", "0.0.0.0:80");
  ASSERT_NE(web, nullptr) << audit.output;
  EXPECT_EQ((*web)["marks"], nlohmann::json({"broker", "wildcard"}));
  EXPECT_EQ((*web)["port"], 80);
  EXPECT_TRUE(held_by(*web, broker_->pid())) << web->dump();
  bool service_holds_it = false;
  for (const auto& p : (*web)["processes"]) {
    if (p["comm"] == "sleep") service_holds_it = uid_of(p["pid"].get<pid_t>()) == sbtest::kNobody;
  }
  EXPECT_TRUE(service_holds_it) << "the uid-65534 service holding \"web\" is not listed: " << web->dump();

  const auto* dns = find(j, "udp", "127.0.0.1:53");
  ASSERT_NE(dns, nullptr) << audit.output;
  EXPECT_EQ((*dns)["marks"], nlohmann::json({"broker"}));
  EXPECT_EQ((*dns)["type"], "datagram");

  const auto* control = find(j, "unix", broker_->control());
  ASSERT_NE(control, nullptr) << audit.output;
  EXPECT_EQ((*control)["marks"], nlohmann::json({"broker"}));
  EXPECT_EQ((*control)["type"], "seqpacket");

  const pid_t self = ::getpid();
  struct Case {
    const char* proto;
    std::string address;
    nlohmann::json marks;
    const char* type;
  } cases[] = {
      {"tcp", "127.0.0.1:" + std::to_string(kTcpPort), {"unexpected"}, "stream"},
      {"udp", "0.0.0.0:" + std::to_string(kUdpPort), {"unexpected", "wildcard"}, "datagram"},
      {"unix", "@sbtest\\x20audit", {"unexpected"}, "stream"},
      {"unix", dir_.file("app.sock"), {"unexpected"}, "seqpacket"},
  };
  for (const auto& c : cases) {
    const auto* l = find(j, c.proto, c.address);
    ASSERT_NE(l, nullptr) << c.proto << " " << c.address << " missing from:\n" << audit.output;
    EXPECT_EQ((*l)["marks"], c.marks) << l->dump();
    EXPECT_EQ((*l)["type"], c.type) << l->dump();
    ASSERT_EQ((*l)["processes"].size(), 1u) << l->dump();
    EXPECT_EQ((*l)["processes"][0]["pid"], self);
    EXPECT_EQ((*l)["processes"][0]["comm"], kSelfComm);
  }
  EXPECT_EQ(j["summary"]["listeners"], 7);
  EXPECT_EQ(j["summary"]["broker"], 3);
  EXPECT_EQ(j["summary"]["unexpected"], 4);
  EXPECT_EQ(j["summary"]["wildcard"], 2);

  // The table for people: a header, one row per listener, the summary.
  auto human = run_audit(broker_->control(), {});
  EXPECT_EQ(human.exit_code, 1) << human.output;
  EXPECT_EQ(human.output.rfind("PROTO", 0), 0u) << human.output;
  EXPECT_NE(human.output.find("7 listeners: 3 broker, 0 expected, 4 unexpected (2 wildcard)"), std::string::npos)
      << human.output;
}

TEST_F(AuditTest, BaselineAcceptsTheRestAndWriteBaselineRoundTrips) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(start());
  dir_.write("baseline", "# the test's own listeners\n"
                         "tcp  127.0.0.1:*   " + kSelfComm + "\n"
                         "udp  0.0.0.0:" + std::to_string(kUdpPort) + "   # any process\n"
                         "unix @sbtest\\x20audit  *\n"
                         "unix " + dir_.file("app.sock") + " " + kSelfComm + "\n");
  auto audit = run_audit(broker_->control(), {"--json", "--baseline", dir_.file("baseline")});
  EXPECT_EQ(audit.exit_code, 0) << audit.output;
  ASSERT_TRUE(audit.json.is_object()) << audit.output;
  EXPECT_EQ(audit.json["summary"]["expected"], 4);
  EXPECT_EQ(audit.json["summary"]["unexpected"], 0);
  const auto* tcp = find(audit.json, "tcp", "127.0.0.1:" + std::to_string(kTcpPort));
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ((*tcp)["marks"], nlohmann::json({"expected"}));
  EXPECT_EQ((*tcp)["baseline"], dir_.file("baseline") + ":2");

  // A process name that does not hold the socket does not accept it.
  dir_.write("wrong-process", "tcp 127.0.0.1:" + std::to_string(kTcpPort) + " sshd\n");
  auto wrong = run_audit(broker_->control(), {"--json", "--baseline", dir_.file("wrong-process")});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;

  // Today's state as a baseline accepts today's state, even without the broker.
  auto written = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "audit", "--write-baseline"});
  ASSERT_EQ(written.exit_code, 0) << written.output;
  EXPECT_NE(written.output.find("unix @sbtest\\x20audit " + kSelfComm + "\n"), std::string::npos) << written.output;
  dir_.write("written", written.output);
  auto again = run_audit(dir_.file("no-broker.sock"), {"--json", "--baseline", dir_.file("written")});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.json["summary"]["unexpected"], 0) << again.output;
}

TEST_F(AuditTest, WithoutABrokerEverythingOutsideTheBaselineIsUnexpected) {
  SBTEST_PREPARE();
  ASSERT_NO_FATAL_FAILURE(start());
  auto audit = run_audit(dir_.file("no-broker.sock"), {"--json"});
  EXPECT_EQ(audit.exit_code, 1) << audit.output;
  EXPECT_EQ(audit.output.rfind("sockbroker: warning: no listener is marked broker: ", 0), 0u) << audit.output;
  EXPECT_NE(audit.output.find("no-broker.sock"), std::string::npos) << audit.output;
  ASSERT_TRUE(audit.json.is_object()) << audit.output;
  EXPECT_EQ(audit.json["broker"]["reachable"], false);
  EXPECT_EQ(audit.json["summary"]["broker"], 0);
  EXPECT_EQ(audit.json["summary"]["unexpected"], 7);
}

TEST(Audit, MalformedBaselineIsReportedByLineAndColumnWithExit78) {
  SBTEST_PREPARE();
  TempDir dir;
  dir.write("bad", "tcp 127.0.0.1:99999\n"
                   "\n"
                   "sctp 0.0.0.0:1\n"
                   "udp ::1:53\n"
                   "unix /run/x.sock sshd extra\n"
                   "tcp 0.0.0.0:22 sshd # fine\n");
  auto result = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "audit", "--baseline", dir.file("bad")});
  EXPECT_EQ(result.exit_code, 78) << result.output;
  const std::string f = dir.file("bad");
  for (const std::string& expected : {f + ":1:15: error: bad port \"99999\"", f + ":3:1: error: unknown protocol \"sctp\"",
                                      f + ":4:5: error: bad address \"::1:53\": write an IPv6 address in brackets",
                                      f + ":5:23: error: unexpected \"extra\"", std::string("baseline invalid: 4 error(s)")}) {
    EXPECT_NE(result.output.find(expected), std::string::npos) << "missing: " << expected << "\n" << result.output;
  }
  auto missing =
      sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "audit", "--baseline", dir.file("none")});
  EXPECT_EQ(missing.exit_code, 66) << missing.output;
  EXPECT_NE(missing.output.find("No such file or directory"), std::string::npos) << missing.output;
  auto usage = sbtest::run_command_as(
      0, 0, {sbtest::programs().sockbroker, "audit", "--write-baseline", "--baseline", dir.file("bad")});
  EXPECT_EQ(usage.exit_code, 64) << usage.output;
}

}  // namespace
