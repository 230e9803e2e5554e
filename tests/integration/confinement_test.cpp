// The broker confines itself once its sockets are bound: only the capabilities
// the policy needs (read back from /proc/PID/status), NO_NEW_PRIVS, its own
// seccomp filter; and it still grants, reloads, revokes and makes Unix socket
// paths under all of that.
#include <fcntl.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

constexpr std::uint64_t bit(int capability) { return std::uint64_t{1} << capability; }

// "Name:\tvalue" lines of /proc/PID/status.
std::map<std::string, std::string> proc_status(pid_t pid) {
  std::map<std::string, std::string> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    out[line.substr(0, colon)] = value;
  }
  return out;
}

std::uint64_t hex_field(const std::map<std::string, std::string>& status, const std::string& key) {
  auto it = status.find(key);
  return it == status.end() ? ~std::uint64_t{0} : std::stoull(it->second, nullptr, 16);
}

std::string hex(std::uint64_t value) {
  std::ostringstream out;
  out << std::hex << value;
  return out.str();
}

// The control socket accepts (and Broker::start returns) as soon as it
// listens; the broker confines itself after that and then logs "ready on".
bool wait_until_ready(const Broker& broker) { return broker.wait_for_log("ready on"); }

// The one socket most cases start from.
sbtest::PolicyBuilder web_only() { return sbtest::PolicyBuilder().socket("web", "127.0.0.1:80").allow_user("nobody"); }

// Every capability set is exactly `caps` (none inheritable or ambient), and
// the process runs with NO_NEW_PRIVS under a seccomp filter.
void expect_confined(const Broker& broker, std::uint64_t caps) {
  ASSERT_TRUE(wait_until_ready(broker)) << broker.log();
  auto status = proc_status(broker.pid());
  EXPECT_EQ(hex(hex_field(status, "CapEff")), hex(caps)) << broker.log();
  EXPECT_EQ(hex(hex_field(status, "CapPrm")), hex(caps));
  EXPECT_EQ(hex(hex_field(status, "CapBnd")), hex(caps));
  EXPECT_EQ(hex_field(status, "CapInh"), 0u);
  EXPECT_EQ(hex_field(status, "CapAmb"), 0u);
  EXPECT_EQ(status["NoNewPrivs"], "1");
  EXPECT_EQ(status["Seccomp"], "2");  // filter mode
  EXPECT_GE(std::stoi(status["Seccomp_filters"]), 1);
}

// Acquires `name` as nobody in a child that exits at once: "" when granted,
// else the broker's message.
std::string refusal(const Broker& broker, const std::string& name) {
  auto acquired = sbtest::acquire_as_nobody(broker, name);
  return acquired.granted ? "" : "not granted: " + acquired.message;
}

// Acquires `name` as nobody, locks down, and answers one stream connection
// with "pong:" + what it read. Returns the child's exit status.
int serve_one_as_nobody(const Broker& broker, const std::string& name, std::string* output) {
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto grant = sockbroker::acquire(name, broker.control());
    if (!grant) {
      sbtest::report(report_fd, grant.error().message);
      return 1;
    }
    if (!sockbroker::lockdown()) return 2;
    if (std::string error = sbtest::answer_pong(grant->fd.get()); !error.empty()) {
      sbtest::report(report_fd, error);
      return 3;
    }
    return 0;
  });
  *output = child.output;
  return child.exit_code;
}

// A client pings the Unix socket at `path` while nobody, holding `name`
// locked down, answers it.
void expect_serves_ping(const Broker& broker, const std::string& name, const std::string& path) {
  std::string answer;
  std::thread client([&] { answer = sbtest::unix_exchange(path, "ping"); });
  std::string output;
  EXPECT_EQ(serve_one_as_nobody(broker, name, &output), 0) << name << ": " << output;
  client.join();
  EXPECT_EQ(answer, "pong:ping") << name;
}

using sbtest::cli_as_root;
using sbtest::PolicyBuilder;

// ---------------------------------------------------------------------------
// Which capabilities each policy feature keeps

struct Case {
  const char* name;
  PolicyBuilder (*policy)(const std::string& dir);  // one socket "x"; dir is the test's directory
  std::uint64_t extra;  // besides CAP_NET_BIND_SERVICE, kept always
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.name; }

class ConfinementCapabilities : public ::testing::TestWithParam<Case> {};

TEST_P(ConfinementCapabilities, KeepsExactlyWhatThePolicyNeeds) {
  SBTEST_PREPARE();
  const Case& c = GetParam();
  TempDir dir;
  auto broker = Broker::start(dir, c.policy(dir.path()));
  ASSERT_TRUE(broker);
  expect_confined(*broker, bit(CAP_NET_BIND_SERVICE) | c.extra);
  // Bound under full root, so it serves whatever it needed. A netns = "request"
  // socket is bound at grant time instead, in the requester's namespace.
  const std::size_t binds_at_start = std::string(c.name) == "NetnsRequest" ? 0 : 1;
  EXPECT_EQ(broker->wait_for_events("bind", binds_at_start).size(), binds_at_start) << broker->log();
  EXPECT_TRUE(broker->wait_for_events("bind_failed", 0).empty()) << broker->log();
  EXPECT_NE(broker->log().find("confined: keeping CAP_NET_BIND_SERVICE"), std::string::npos) << broker->log();
}

INSTANTIATE_TEST_SUITE_P(
    Confinement, ConfinementCapabilities,
    ::testing::Values(
        Case{"Ipv4",
             [](const std::string&) { return PolicyBuilder().socket("x", "127.0.0.1:80").allow_user("nobody"); }, 0},
        // Neither needs a capability on Linux >= 5.7 (a first SO_BINDTODEVICE).
        Case{"BindToDeviceAndFreeBind",
             [](const std::string&) {
               return PolicyBuilder()
                   .socket("x", "192.0.2.1:80")
                   .set_string("bind_to_device", "lo")
                   .set("free_bind", "true")
                   .allow_user("nobody");
             },
             0},
        Case{"Transparent",
             [](const std::string&) {
               return PolicyBuilder().socket("x", "127.0.0.1:81").set("transparent", "true").allow_user("nobody");
             },
             bit(CAP_NET_ADMIN)},
        Case{"UnixPath",
             [](const std::string& dir) { return PolicyBuilder().socket("x", dir + "/app.sock").allow_user("nobody"); },
             bit(CAP_CHOWN) | bit(CAP_FOWNER)},
        Case{"UnixPathOfAGroup",
             [](const std::string& dir) {
               return PolicyBuilder()
                   .socket("x", dir + "/app.sock")
                   .set_string("socket_group", "nogroup")
                   .set_string("socket_mode", "0660")
                   .allow_user("nobody");
             },
             bit(CAP_CHOWN) | bit(CAP_FOWNER)},
        // Root may not write this file, yet must connect to it to tell whether
        // it is stale before a revoke or rebind replaces it.
        Case{"UnixPathRootCannotWrite",
             [](const std::string& dir) {
               return PolicyBuilder()
                   .socket("x", dir + "/app.sock")
                   .set_string("socket_user", "nobody")
                   .set_string("socket_mode", "0600")
                   .allow_user("nobody");
             },
             bit(CAP_CHOWN) | bit(CAP_FOWNER) | bit(CAP_DAC_OVERRIDE)},
        // An abstract name is no file: nothing to chown.
        Case{"AbstractName",
             [](const std::string&) {
               return PolicyBuilder()
                   .socket("x", "@sockbroker-confinement-test")
                   .set("allow_abstract", "true")
                   .allow_user("nobody");
             },
             0},
        // readlink /proc/PID/exe of another uid is a ptrace access check.
        Case{"ExecutableRule",
             [](const std::string&) {
               return PolicyBuilder().socket("x", "127.0.0.1:82").allow({{"executable", "/usr/bin/true"}});
             },
             bit(CAP_SYS_PTRACE)},
        // /proc/PID/cgroup is world-readable, and the liveness check a poll.
        Case{"UnitRule",
             [](const std::string&) {
               return PolicyBuilder().socket("x", "127.0.0.1:83").allow({{"unit", "web.service"}});
             },
             0},
        Case{"CgroupRule",
             [](const std::string&) {
               return PolicyBuilder().socket("x", "127.0.0.1:84").allow({{"cgroup", "/system.slice"}});
             },
             0},
        Case{"NetnsRequest",
             [](const std::string&) {
               return PolicyBuilder().socket("x", "127.0.0.1:85").set_string("netns", "request").allow_user("nobody");
             },
             bit(CAP_SYS_ADMIN)}),
    [](const ::testing::TestParamInfo<Case>& param) { return std::string(param.param.name); });

// ---------------------------------------------------------------------------
// Serving while confined

PolicyBuilder start_policy(const TempDir& dir) {
  return PolicyBuilder()
      .broker("control_mode", sbtest::toml_string("0666"))
      .socket("web", "127.0.0.1:80")
      .allow_user("nobody")
      .socket("app", dir.file("run/app.sock"))
      .set_string("socket_user", "nobody")
      .set_string("socket_mode", "0600")
      .allow_user("nobody");
}

// start_policy plus a TCP socket and a second Unix path, owned by nogroup.
PolicyBuilder grown_policy(const TempDir& dir) {
  return start_policy(dir)
      .socket("api", "127.0.0.1:443")
      .allow_user("nobody")
      .socket("log", dir.file("run/new/log.sock"))
      .set_string("type", "datagram")
      .set_string("socket_group", "nogroup")
      .set_string("socket_mode", "0660")
      .allow_user("nobody");
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Confinement = sbtest::BrokerTest;

TEST_F(Confinement, GrantsReloadsRevokesAndServesAUnixPathWhileConfined) {
  TempDir dir;
  auto broker = Broker::start(dir, start_policy(dir));
  ASSERT_TRUE(broker);
  const std::uint64_t caps = bit(CAP_NET_BIND_SERVICE) | bit(CAP_CHOWN) | bit(CAP_FOWNER) | bit(CAP_DAC_OVERRIDE);
  expect_confined(*broker, caps);

  EXPECT_EQ(refusal(*broker, "web"), "");

  // SIGHUP: the policy grows by a TCP socket and a Unix path in a directory
  // that does not exist yet; the broker makes both while confined.
  dir.write("policy.toml", grown_policy(dir));
  ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  auto reloads = broker->wait_for_events("reload");
  ASSERT_EQ(reloads.size(), 1u) << broker->log();
  EXPECT_EQ(reloads[0]["added"], nlohmann::json({"api", "log"})) << reloads[0];
  EXPECT_TRUE(broker->wait_for_events("bind_failed", 0).empty()) << broker->log();
  EXPECT_EQ(refusal(*broker, "api"), "");
  EXPECT_EQ(refusal(*broker, "log"), "");
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("run/new/log.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, sbtest::kNogroup);
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  // `sockbroker reload` (nothing changed) and `sockbroker revoke`.
  auto reloaded = cli_as_root(*broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
  EXPECT_NE(reloaded.output.find("0 added, 0 rebound, 0 removed, 4 unchanged"), std::string::npos) << reloaded.output;
  auto revoked = cli_as_root(*broker, {"revoke", "app"});
  EXPECT_EQ(revoked.exit_code, 0) << revoked.output;
  auto revokes = broker->wait_for_events("revoke");
  ASSERT_EQ(revokes.size(), 1u);
  EXPECT_EQ(revokes[0]["rebound"], true) << revokes[0];

  // The Unix path, bound afresh by the revoke while confined, serves.
  ASSERT_EQ(::lstat(dir.file("run/app.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, sbtest::kNobody);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  expect_serves_ping(*broker, "app", dir.file("run/app.sock"));

  // Nothing of the above widened it, and it still answers.
  expect_confined(*broker, caps);
  EXPECT_EQ(refusal(*broker, "web"), "");
  EXPECT_EQ(broker->stop(), 0) << broker->log();
}

// A socket added by a reload that needs a capability the broker gave up at
// start-up (IP_TRANSPARENT wants CAP_NET_ADMIN) fails to bind, says why, and
// the broker keeps serving the rest.
TEST_F(Confinement, ReloadedSocketNeedingADroppedCapabilityFailsAndTheBrokerStaysUp) {
  TempDir dir;
  auto broker = Broker::start(dir, web_only());
  ASSERT_TRUE(broker);
  expect_confined(*broker, bit(CAP_NET_BIND_SERVICE));

  dir.write("policy.toml",
            web_only().socket("tproxy", "127.0.0.1:8080").set("transparent", "true").allow_user("nobody"));
  // Applied, with the new socket not bound: reload says so and exits 71 (the
  // broker retries the socket meanwhile).
  auto reloaded = cli_as_root(*broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 71) << reloaded.output;
  EXPECT_NE(reloaded.output.find("1 socket(s) not bound"), std::string::npos) << reloaded.output;
  EXPECT_NE(reloaded.output.find("not bound: tproxy: "), std::string::npos) << reloaded.output;
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_EQ(failed.size(), 1u) << broker->log();
  EXPECT_EQ(failed[0]["socket"], "tproxy");
  const std::string error = failed[0]["error"];
  EXPECT_NE(error.find("IP_TRANSPARENT"), std::string::npos) << error;
  EXPECT_NE(error.find(std::strerror(EPERM)), std::string::npos) << error;

  auto denied = refusal(*broker, "tproxy");
  EXPECT_NE(denied.find("IP_TRANSPARENT"), std::string::npos) << denied;
  EXPECT_EQ(refusal(*broker, "web"), "");
  expect_confined(*broker, bit(CAP_NET_BIND_SERVICE));
  EXPECT_EQ(broker->stop(), 0) << broker->log();
}

// A Unix path owned by root needs no capability: a reload may add one to a
// broker that kept neither CAP_CHOWN nor CAP_FOWNER. One owned by another user
// does, and fails without harming the rest.
TEST_F(Confinement, ReloadedUnixPathsWithoutChownCapability) {
  TempDir dir;
  auto broker = Broker::start(dir, web_only());
  ASSERT_TRUE(broker);
  expect_confined(*broker, bit(CAP_NET_BIND_SERVICE));

  dir.write("policy.toml", web_only()
                               .socket("rooted", dir.file("rooted.sock"))
                               .set_string("socket_mode", "0666")
                               .allow_user("nobody")
                               .socket("owned", dir.file("owned.sock"))
                               .set_string("socket_user", "nobody")
                               .allow_user("nobody"));
  ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  ASSERT_EQ(broker->wait_for_events("reload").size(), 1u) << broker->log();

  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("rooted.sock").c_str(), &st), 0) << broker->log();
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  expect_serves_ping(*broker, "rooted", dir.file("rooted.sock"));

  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_EQ(failed.size(), 1u) << broker->log();
  EXPECT_EQ(failed[0]["socket"], "owned");
  const std::string error = failed[0]["error"];
  EXPECT_NE(error.find("chown"), std::string::npos) << error;
  EXPECT_NE(error.find(std::strerror(EPERM)), std::string::npos) << error;
  // No half-made socket and no private directory left behind.
  EXPECT_NE(::lstat(dir.file("owned.sock").c_str(), &st), 0);
  EXPECT_EQ(refusal(*broker, "web"), "");
  EXPECT_EQ(broker->stop(), 0) << broker->log();
}

// Reading another uid's /proc/PID/exe takes CAP_SYS_PTRACE, kept only when a
// rule names an executable. Without it the executable is unknown ("exe": null)
// and an executable rule added by a reload fails closed until a restart.
TEST_F(Confinement, ExecutableIsReadOnlyWhenARuleNeedsIt) {
  TempDir dir;
  auto broker = Broker::start(dir, web_only());
  ASSERT_TRUE(broker);
  expect_confined(*broker, bit(CAP_NET_BIND_SERVICE));
  EXPECT_EQ(refusal(*broker, "web"), "");
  auto grants = broker->wait_for_events("grant");
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_TRUE(grants[0]["peer"]["exe"].is_null()) << grants[0];

  // This very binary is what a forked child runs: the rule would match it.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  dir.write("policy.toml", web_only().socket("mine", "127.0.0.1:81").allow({{"executable", self}}));
  ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  ASSERT_EQ(broker->wait_for_events("reload").size(), 1u) << broker->log();
  EXPECT_NE(refusal(*broker, "mine"), "");
  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["socket"], "mine");
  EXPECT_TRUE(denials[0]["peer"]["exe"].is_null()) << denials[0];
  EXPECT_EQ(broker->stop(), 0) << broker->log();

  // Started with that policy, the broker keeps CAP_SYS_PTRACE and grants.
  TempDir again;
  auto restarted = Broker::start(again, PolicyBuilder().socket("mine", "127.0.0.1:81").allow({{"executable", self}}));
  ASSERT_TRUE(restarted);
  expect_confined(*restarted, bit(CAP_NET_BIND_SERVICE) | bit(CAP_SYS_PTRACE));
  EXPECT_EQ(refusal(*restarted, "mine"), "");
  auto granted = restarted->wait_for_events("grant");
  ASSERT_EQ(granted.size(), 1u);
  EXPECT_EQ(granted[0]["peer"]["exe"], self) << granted[0];
}

// A broker that cannot confine itself does not serve: it exits 71 (EX_OSERR)
// saying why, and removes the control socket it had made. Here a filter the
// broker inherits refuses seccomp(2) itself.
TEST_F(Confinement, BrokerThatCannotConfineItselfExitsWithOsErr) {
  TempDir dir;
  dir.write("policy.toml", web_only());
  const std::string control = dir.file("control.sock");
  const std::string log = dir.file("broker.log");
  std::vector<std::string> args{SOCKBROKERD_PATH, "--policy", dir.file("policy.toml"), "--control", control,
                                "--audit", dir.file("audit.log")};
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) _exit(125);
    scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == nullptr || ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(seccomp), 0) != 0 ||
        ::seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_SECCOMP)) != 0 ||
        ::seccomp_load(ctx) != 0) {
      _exit(126);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  const std::string output = sbtest::read_file(log);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 71) << output;
  EXPECT_NE(output.find("cannot confine the broker"), std::string::npos) << output;
  EXPECT_EQ(output.find("ready on"), std::string::npos) << output;
  struct stat st {};
  EXPECT_NE(::lstat(control.c_str(), &st), 0) << "the control socket is left behind";
}

// --no-confine, for debugging: every capability stays and there is no filter.
TEST_F(Confinement, NoConfineIsForDebuggingOnly) {
  TempDir dir;
  auto broker = Broker::start(dir, web_only(), {"--no-confine"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(wait_until_ready(*broker)) << broker->log();
  auto status = proc_status(broker->pid());
  EXPECT_EQ(status["Seccomp"], "0");
  EXPECT_EQ(status["NoNewPrivs"], "0");
  EXPECT_NE(hex_field(status, "CapEff") & bit(CAP_SYS_ADMIN), 0u);
  EXPECT_NE(broker->log().find("--no-confine"), std::string::npos) << broker->log();
  EXPECT_EQ(refusal(*broker, "web"), "");
}

}  // namespace
