// sockbroker status: the broker's counters after real grants and denials from
// uid 65534, read back as text, JSON and Prometheus (checked by the real
// parser, python3-prometheus-client), and paged for a large policy.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sockbroker/client.hpp>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

// One socket of each fate: granted (shared and reuse_port), root's only, and
// one on 192.0.2.1 (TEST-NET-1, on no interface of the test's netns), which
// cannot be bound.
std::string four_sockets() {
  return sbtest::PolicyBuilder()
      .socket("web", "127.0.0.1:80")
      .allow_user("nobody")
      .socket("workers", "127.0.0.1:8080")
      .set("reuse_port", "true")
      .set("max_grants", "1")
      .allow_user("nobody")
      .socket("admin", "127.0.0.1:443")
      .allow_user("root")
      .socket("unroutable", "192.0.2.1:81")
      .allow_user("nobody");
}

// `sockbroker` as root (uid 0) or as nobody (any other uid given).
sbtest::ChildResult cli(uid_t uid, const Broker& broker, const std::vector<std::string>& args) {
  return uid == 0 ? sbtest::cli_as_root(broker, args) : sbtest::cli_as_nobody(broker, args);
}

// Acquires `name` as nobody in a child that exits at once; returns its error
// code (0: granted; 1 when the child failed before an answer: no SOCKBROKER_E_*).
int acquire_code(const Broker& broker, const std::string& name) {
  auto acquired = sbtest::acquire_as_nobody(broker, name);
  if (acquired.granted) return 0;
  if (acquired.code == 0) ADD_FAILURE() << "acquire of \"" << name << "\": " << acquired.message;
  return acquired.code != 0 ? acquired.code : 1;
}

// A datagram that is not a message, from nobody: one bad request.
void send_garbage_as_nobody(const Broker& broker) {
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    sockbroker::UniqueFd fd = sbtest::connect_control(broker.control());
    if (!fd) {
      sbtest::report(report_fd, std::string("connect: ") + std::strerror(errno));
      return 1;
    }
    const char garbage[8] = {'n', 'o', 't', ' ', 'c', 'a', 'p', 'n'};
    char reply[4096];
    // The broker answers (a protocol failure) before it counts the next request.
    if (::send(fd.get(), garbage, sizeof garbage, 0) != sizeof garbage || ::recv(fd.get(), reply, sizeof reply, 0) <= 0) {
      sbtest::report(report_fd, std::string("send/recv: ") + std::strerror(errno));
      return 2;
    }
    return 0;
  });
  ASSERT_EQ(child.exit_code, 0) << child.output;
}

// Socket inodes the process holds, from /proc/PID/fd ("socket:[INODE]").
std::set<std::uint64_t> socket_inodes_of(pid_t pid) {
  std::set<std::uint64_t> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    char target[256];
    ssize_t n = ::readlink(it->path().c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    std::string link(target, static_cast<std::size_t>(n));
    if (link.rfind("socket:[", 0) == 0) out.insert(std::stoull(link.substr(8)));
  }
  return out;
}

nlohmann::json status_json(const Broker& broker) {
  auto result = cli(0, broker, {"status", "--json"});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return nlohmann::json::parse(result.output);
}

const nlohmann::json& socket_named(const nlohmann::json& status, const std::string& name) {
  for (const auto& socket : status["sockets"]) {
    if (socket["name"] == name) return socket;
  }
  static const nlohmann::json none;
  ADD_FAILURE() << "no socket " << name << " in " << status.dump();
  return none;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Status = sbtest::BrokerTest;

TEST_F(Status, CountsGrantsDenialsAndReloadsExactly) {
  TempDir dir;
  auto broker = Broker::start(dir, four_sockets());
  ASSERT_TRUE(broker);

  // Grants: web twice (each holder exits at once), workers once (held below).
  EXPECT_EQ(acquire_code(*broker, "web"), 0);
  EXPECT_EQ(acquire_code(*broker, "web"), 0);
  sbtest::Background holder(sbtest::kNobody, sbtest::kNogroup,
                            {sbtest::programs().sockbroker, "--control", broker->control(), "run", "--no-supervise",
                             "-s", "workers", "--", "/bin/sleep", "30"});
  auto grants = broker->wait_for_events("grant", 3);
  ASSERT_EQ(grants.size(), 3u);
  const pid_t holder_pid = grants[2]["peer"]["pid"].get<pid_t>();

  // One denial of each reason a client can provoke.
  EXPECT_EQ(acquire_code(*broker, "admin"), SOCKBROKER_E_DENIED);           // no_rule_matched
  EXPECT_EQ(acquire_code(*broker, "nosuch"), SOCKBROKER_E_UNKNOWN);         // unknown_socket
  EXPECT_EQ(acquire_code(*broker, "unroutable"), SOCKBROKER_E_BIND);        // bind_failed
  EXPECT_EQ(acquire_code(*broker, "workers"), SOCKBROKER_E_QUOTA);          // quota: max_grants = 1
  auto refused = cli(sbtest::kNobody, *broker, {"status"});                  // not_admin
  EXPECT_EQ(refused.exit_code, 77) << refused.output;
  EXPECT_EQ(std::count(refused.output.begin(), refused.output.end(), '\n'), 1) << refused.output;
  EXPECT_NE(refused.output.find("status: permission denied: administrators only"), std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("uid 65534"), std::string::npos) << refused.output;
  send_garbage_as_nobody(*broker);

  // One reload that is applied, one that is refused. The applied one exits 71:
  // it tried "unroutable" again, which still cannot be bound.
  EXPECT_EQ(cli(0, *broker, {"reload"}).exit_code, 71);
  dir.write("policy.toml", "[socket.web]\nlisten = \"127.0.0.1:80\"\nlisen = 1\n");  // invalid on purpose
  EXPECT_EQ(cli(0, *broker, {"reload"}).exit_code, 78);
  dir.write("policy.toml", four_sockets());

  // The holder's reuse_port member, once `sockbroker run` has exec'd sleep.
  std::set<std::uint64_t> held;
  sbtest::wait_until(
      [&] {
        if (sbtest::read_file("/proc/" + std::to_string(holder_pid) + "/comm") == "sleep\n") {
          held = socket_inodes_of(holder_pid);
        }
        return !held.empty();
      },
      std::chrono::seconds(2));
  ASSERT_EQ(held.size(), 1u) << "the holder should hold exactly its member";

  // What the broker holds while idle, plus the status connection and its pidfd.
  const int idle_fds = broker->settled_fd_count();
  auto status = status_json(*broker);
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  EXPECT_FALSE(status["version"].get<std::string>().empty());
  EXPECT_EQ(status["pid"], broker->pid());
  EXPECT_LE(status["start_time"].get<std::int64_t>(), now);
  EXPECT_GE(status["start_time"].get<std::int64_t>(), now - 60);
  EXPECT_LT(status["uptime_seconds"].get<std::uint64_t>(), 60u);
  EXPECT_EQ(status["policy_generation"], 2);
  EXPECT_EQ(status["policy_paths"], nlohmann::json({dir.file("policy.toml")}));
  EXPECT_EQ(status["sockets_bound"], 3);
  EXPECT_EQ(status["sockets_failed"], 1);
  EXPECT_EQ(status["grants_total"], 3);
  EXPECT_EQ(status["denials"], (nlohmann::json{{"bind_failed", 1},
                                               {"no_rule_matched", 1},
                                               {"not_admin", 1},
                                               {"quota", 1},
                                               {"unknown_socket", 1}}));
  EXPECT_EQ(status["denials_total"], 5);
  EXPECT_EQ(status["bad_requests"], 1);
  EXPECT_EQ(status["clients"], 1);  // this status request
  EXPECT_GE(status["peak_clients"].get<int>(), 1);
  EXPECT_EQ(status["fds"], idle_fds + 2) << broker->fd_listing();
  EXPECT_EQ(status["reloads_ok"], 1);
  EXPECT_EQ(status["reloads_failed"], 1);
  ASSERT_TRUE(status["last_reload"].is_object()) << status.dump();
  EXPECT_EQ(status["last_reload"]["ok"], false);
  EXPECT_NE(status["last_reload"]["message"].get<std::string>().find("generation 2 stays in force"), std::string::npos);
  EXPECT_EQ(status["audit"], (nlohmann::json{{"state", "ok"},
                                             {"audit_failure", "deny"},
                                             {"error", nullptr},
                                             {"failing_since", nullptr},
                                             {"lines_lost", 0},
                                             {"suppressed", 0},
                                             {"lines_waiting", 0},
                                             {"kept_in_store", false},
                                             {"kept_in_file", nullptr}}))
      << status.dump();

  ASSERT_EQ(status["sockets"].size(), 4u);
  const auto& web = socket_named(status, "web");
  EXPECT_EQ(web["state"], "bound");
  EXPECT_EQ(web["grants_total"], 2);
  EXPECT_EQ(web["holders"], 0);
  EXPECT_EQ(web["inodes"].size(), 1u);  // the broker's own socket; no live grant
  const auto& workers = socket_named(status, "workers");
  EXPECT_EQ(workers["grants_total"], 1);
  EXPECT_EQ(workers["holders"], 1);
  // The broker's bound, never-listening member and the one the holder has.
  ASSERT_EQ(workers["inodes"].size(), 2u) << workers.dump();
  EXPECT_EQ(workers["inodes"][1], *held.begin()) << workers.dump();
  EXPECT_NE(workers["inodes"][0], *held.begin());
  const auto& unroutable = socket_named(status, "unroutable");
  EXPECT_EQ(unroutable["state"], "failed");
  EXPECT_EQ(unroutable["inodes"].size(), 0u);
  EXPECT_NE(unroutable["error"].get<std::string>().find("Cannot assign requested address"), std::string::npos);
  EXPECT_EQ(socket_named(status, "admin")["grants_total"], 0);

  // The same numbers for humans.
  auto human = cli(0, *broker, {"status"});
  ASSERT_EQ(human.exit_code, 0) << human.output;
  for (const char* line : {"Sockets: 3 bound, 1 failed", "Grants: 3", "Denials: 5", "Bad requests: 1",
                           "Reloads: 1 ok, 1 failed", "Denials by reason:", "  no_rule_matched  1",
                           "SOCKET      STATE   HOLDERS  GRANTS  NOTE", "workers     bound   1        1",
                           "Audit: ok (audit_failure = deny); 0 line(s) lost, 0 suppressed by the rate limit"}) {
    EXPECT_NE(human.output.find(line), std::string::npos) << "missing \"" << line << "\" in:\n" << human.output;
  }

  // The Prometheus text, read by the reference parser.
  auto prometheus = cli(0, *broker, {"status", "--prometheus"});
  ASSERT_EQ(prometheus.exit_code, 0) << prometheus.output;
  dir.write("metrics.prom", prometheus.output);
  auto parsed = sbtest::run_command_as(
      0, 0,
      {"/usr/bin/python3", "-c",
       "import json, sys\n"
       "from prometheus_client.parser import text_string_to_metric_families\n"
       "out = {}\n"
       "for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
       "    out['TYPE ' + family.name] = family.type\n"
       "    for s in family.samples:\n"
       "        out[s.name + ','.join('{%s=%s}' % kv for kv in sorted(s.labels.items()))] = s.value\n"
       "print(json.dumps(out))\n",
       dir.file("metrics.prom")});
  ASSERT_EQ(parsed.exit_code, 0) << parsed.output << "\n" << prometheus.output;
  auto samples = nlohmann::json::parse(parsed.output);
  EXPECT_EQ(samples["sockbroker_up"], 1.0);
  EXPECT_EQ(samples["sockbroker_policy_generation"], 2.0);
  EXPECT_EQ(samples["sockbroker_sockets{state=bound}"], 3.0);
  EXPECT_EQ(samples["sockbroker_sockets{state=failed}"], 1.0);
  EXPECT_EQ(samples["sockbroker_grants_total{socket=web}"], 2.0);
  EXPECT_EQ(samples["sockbroker_grants_total{socket=workers}"], 1.0);
  EXPECT_EQ(samples["sockbroker_holders{socket=workers}"], 1.0);
  EXPECT_EQ(samples["sockbroker_denials_total{reason=no_rule_matched}"], 1.0);
  EXPECT_EQ(samples["sockbroker_denials_total{reason=not_admin}"], 1.0);
  EXPECT_EQ(samples["sockbroker_bad_requests_total"], 1.0);
  EXPECT_EQ(samples["sockbroker_clients"], 1.0);
  EXPECT_GT(samples["sockbroker_fds"].get<double>(), 0.0);
  EXPECT_EQ(samples["sockbroker_reloads_total{result=ok}"], 1.0);
  EXPECT_EQ(samples["sockbroker_reloads_total{result=failed}"], 1.0);
  EXPECT_LT(samples["sockbroker_uptime_seconds"].get<double>(), 60.0);
  EXPECT_EQ(samples["sockbroker_audit_failing"], 0.0);
  EXPECT_EQ(samples["sockbroker_audit_lines_lost_total"], 0.0);
  EXPECT_EQ(samples["sockbroker_audit_suppressed_total"], 0.0);
  EXPECT_EQ(samples["sockbroker_audit_lines_waiting"], 0.0);
  EXPECT_EQ(samples["TYPE sockbroker_grants"], "counter") << parsed.output;
  EXPECT_EQ(samples["TYPE sockbroker_holders"], "gauge") << parsed.output;
}

TEST_F(Status, UnreachableBrokerIsExit69AndUpZero) {
  TempDir dir;
  auto result = sbtest::run_command_as(
      0, 0, {sbtest::programs().sockbroker, "--control", dir.file("none.sock"), "status", "--prometheus"});
  EXPECT_EQ(result.exit_code, 69) << result.output;
  EXPECT_NE(result.output.find("sockbroker_up 0\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("none.sock"), std::string::npos) << result.output;
}

TEST_F(Status, PagesThroughTwoThousandSockets) {
  TempDir dir;
  sbtest::PolicyBuilder policy;
  constexpr int kSockets = 2000;
  for (int i = 0; i < kSockets; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "s%04d", i);
    policy.socket(name, "127.0.0.1:" + std::to_string(20000 + i));
  }
  auto broker = Broker::start(dir, policy, {"--log-level", "warn"});
  ASSERT_TRUE(broker);
  auto status = status_json(*broker);
  EXPECT_EQ(status["sockets_bound"], kSockets);
  EXPECT_EQ(status["sockets_failed"], 0);
  ASSERT_EQ(status["sockets"].size(), static_cast<std::size_t>(kSockets));
  std::set<std::uint64_t> inodes;
  for (int i = 0; i < kSockets; ++i) {
    const auto& socket = status["sockets"][static_cast<std::size_t>(i)];
    char name[32];
    std::snprintf(name, sizeof name, "s%04d", i);
    ASSERT_EQ(socket["name"], name);
    ASSERT_EQ(socket["inodes"].size(), 1u);
    inodes.insert(socket["inodes"][0].get<std::uint64_t>());
  }
  EXPECT_EQ(inodes.size(), static_cast<std::size_t>(kSockets)) << "every socket its own inode";
  EXPECT_GE(status["fds"].get<int>(), kSockets);
}

}  // namespace
