// The sockbroker command as services and operators run it: exit codes, the one
// line of failure, LISTEN_FDS for socket-activated programs.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Broker;
using sbtest::TempDir;

using sbtest::cli_as_nobody;

const std::string kPolicy = sbtest::web_dns_admin();

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Cli = sbtest::BrokerTest;

// The probe's one JSON line. The command may print a note on stderr first
// (before Linux 6.7: Landlock has no network rules), and the output holds both.
nlohmann::json probe_of(const std::string& output) {
  const std::size_t start = output.rfind("\n{");
  return nlohmann::json::parse(start == std::string::npos ? output : output.substr(start + 1));
}

TEST_F(Cli, RunPassesListenFdsThatSdListenFdsAccepts) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto result = cli_as_nobody(*broker, {"run", "-s", "web", "-s", "dns", "--", sbtest::programs().self, "--probe-listen-fds"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto probe = probe_of(result.output);
  EXPECT_EQ(probe["n"], 2);
  EXPECT_EQ(probe["names"], nlohmann::json({"web", "dns"}));
  EXPECT_EQ(probe["fds"][0]["fd"], 3);
  EXPECT_EQ(probe["fds"][0]["listening_stream"], true);
  EXPECT_EQ(probe["fds"][0]["cloexec"], false);
  EXPECT_EQ(probe["fds"][1]["fd"], 4);
  EXPECT_EQ(probe["fds"][1]["datagram"], true);
  EXPECT_EQ(probe["seccomp"], 2);  // filter mode: the lockdown is on
}

// `sockbroker run` started by a socket-activating manager inherits LISTEN_*
// meant for itself: the program sees only the variables of its own grants,
// with LISTEN_PID its own pid, in each way the command starts it.
TEST_F(Cli, RunReplacesInheritedListenVariables) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  const std::vector<std::string> inherited = {"SOCKBROKER_CONTROL=" + broker->control(), "LISTEN_PID=1",
                                              "LISTEN_FDS=7", "LISTEN_FDNAMES=a:b:c:d:e:f:g"};
  const std::string& self = sbtest::programs().self;
  const std::string& sockbroker = sbtest::programs().sockbroker;
  struct Case {
    std::vector<std::string> argv;
    int expected_n;
  };
  const Case cases[] = {
      {{sockbroker, "run", "-s", "web", "--", self, "--probe-listen-fds"}, 1},
      {{sockbroker, "run", "--no-supervise", "-s", "web", "--", self, "--probe-listen-fds"}, 1},
      {{sockbroker, "run", "--", self, "--probe-listen-fds"}, 0},
      {{sockbroker, "run", "--no-supervise", "--", self, "--probe-listen-fds"}, 0},
  };
  for (const auto& c : cases) {
    std::string options;
    for (auto arg = c.argv.begin() + 1; *arg != "--"; ++arg) options += " " + *arg;
    SCOPED_TRACE("sockbroker" + options);
    auto result = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, c.argv, inherited);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    auto probe = probe_of(result.output);
    EXPECT_EQ(probe["n"], c.expected_n);
    if (c.expected_n == 0) {
      EXPECT_EQ(probe["environment"], nlohmann::json::object());
    } else {
      EXPECT_EQ(probe["environment"], nlohmann::json({{"LISTEN_PID", std::to_string(probe["pid"].get<int>())},
                                                      {"LISTEN_FDS", "1"},
                                                      {"LISTEN_FDNAMES", "web"}}));
    }
  }
}

TEST_F(Cli, GetIsRunWithOneSocketAndNoLockdownIsHonoured) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto result = cli_as_nobody(*broker, {"get", "web", "--no-lockdown", "--", sbtest::programs().self, "--probe-listen-fds"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto probe = nlohmann::json::parse(result.output);
  EXPECT_EQ(probe["n"], 1);
  EXPECT_EQ(probe["names"], nlohmann::json({"web"}));
  EXPECT_EQ(probe["seccomp"], 0);
}

TEST_F(Cli, ControlPathWorksFromTheEnvironment) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto result = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                       {sbtest::programs().sockbroker, "list", "--json"},
                                       {"SOCKBROKER_CONTROL=" + broker->control()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto listing = nlohmann::json::parse(result.output);
  EXPECT_EQ(listing["admin"], false);
  ASSERT_EQ(listing["sockets"].size(), 2u);  // web and dns; admin is root's
  EXPECT_EQ(listing["sockets"][0]["name"], "dns");
  EXPECT_EQ(listing["sockets"][1]["name"], "web");
  EXPECT_EQ(listing["sockets"][1]["address"], "0.0.0.0:80");
}

TEST_F(Cli, ControlOptionAfterTheCommandName) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto result = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "list", "--json", "--control", broker->control()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto listing = nlohmann::json::parse(result.output);
  EXPECT_EQ(listing["admin"], true);  // root sees everything, with state
  ASSERT_EQ(listing["sockets"].size(), 3u);
  EXPECT_EQ(listing["sockets"][0]["state"], "bound");
}

// The human listing: aligned columns, each as wide as its widest cell, and
// no blanks at the end of a line.
TEST_F(Cli, ListPrintsAlignedColumns) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto user = cli_as_nobody(*broker, {"list"});
  EXPECT_EQ(user.exit_code, 0) << user.output;
  EXPECT_EQ(user.output,
            "NAME  TYPE      ADDRESS\n"
            "dns   datagram  127.0.0.1:53\n"
            "web   stream    0.0.0.0:80\n");
  auto admin = sbtest::cli_as_root(*broker, {"list"});
  EXPECT_EQ(admin.exit_code, 0) << admin.output;
  EXPECT_EQ(admin.output,
            "NAME   TYPE      ADDRESS        STATE  HOLDERS  GRANTS  LIMIT  NOTE\n"
            "admin  stream    127.0.0.1:443  bound  0        0       -\n"
            "dns    datagram  127.0.0.1:53   bound  0        0       -\n"
            "web    stream    0.0.0.0:80     bound  0        0       -\n");
}

TEST_F(Cli, DeniedExits77NamingTheSocketAndTheCaller) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto result = cli_as_nobody(*broker, {"get", "admin", "--", "/bin/true"});
  EXPECT_EQ(result.exit_code, 77) << result.output;
  EXPECT_NE(result.output.find("\"admin\""), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("uid 65534"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("gid 65534"), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << "one line: " << result.output;
  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "no_rule_matched");
}

// A refused revoke says what was refused, and why: the broker's reason.
TEST_F(Cli, RevokeByANonAdministratorSaysWhatWasRefused) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto refused = cli_as_nobody(*broker, {"revoke", "web"});
  EXPECT_EQ(refused.exit_code, 77) << refused.output;
  EXPECT_TRUE(refused.output.starts_with("sockbroker: cannot revoke \"web\": permission denied: administrators only "
                                         "(root or admin_group); the broker saw uid 65534"))
      << refused.output;
  EXPECT_EQ(std::count(refused.output.begin(), refused.output.end(), '\n'), 1) << "one line: " << refused.output;

  auto unreachable = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                            {sbtest::programs().sockbroker, "--control", dir.file("none.sock"),
                                             "revoke", "web"});
  EXPECT_EQ(unreachable.exit_code, 69) << unreachable.output;
  EXPECT_TRUE(unreachable.output.starts_with("sockbroker: cannot revoke \"web\": ")) << unreachable.output;
}

TEST_F(Cli, UnknownSocketExits65) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  auto result = cli_as_nobody(*broker, {"run", "-s", "nosuch", "--", "/bin/true"});
  EXPECT_EQ(result.exit_code, 65) << result.output;
  EXPECT_NE(result.output.find("\"nosuch\""), std::string::npos) << result.output;
}

TEST_F(Cli, BrokerNotRunningExits69) {
  TempDir dir;
  auto result = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                       {sbtest::programs().sockbroker, "--control", dir.file("none.sock"), "get", "web",
                                        "--", "/bin/true"});
  EXPECT_EQ(result.exit_code, 69) << result.output;
  EXPECT_NE(result.output.find("\"web\""), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("none.sock"), std::string::npos) << result.output;
}

TEST_F(Cli, BindFailureExits71) {
  TempDir dir;
  // Two sockets on one Unix path would be refused by check: use a path that exists as a file.
  dir.write("taken", "not a socket");
  auto broker = Broker::start(dir, sbtest::PolicyBuilder().socket("app", dir.file("taken")).allow_user("nobody"));
  ASSERT_TRUE(broker);
  auto result = cli_as_nobody(*broker, {"get", "app", "--", "/bin/true"});
  EXPECT_EQ(result.exit_code, 71) << result.output;
  EXPECT_NE(result.output.find("not a socket"), std::string::npos) << result.output;
}

// A --netns path the caller may not open is a permission failure (77), not a
// usage error: here a network namespace bound to a file, as `ip netns add`
// does, in a directory only root may enter.
TEST_F(Cli, NetnsPathTheCallerMayNotOpenExits77) {
  // The bind mount lives and dies with this test process's own mount namespace.
  ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
  ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << std::strerror(errno);
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("netns").c_str(), 0700), 0) << std::strerror(errno);
  const std::string path = dir.file("netns/ctr1");
  dir.write("netns/ctr1", "");
  ASSERT_EQ(::mount("/proc/self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr), 0) << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{path};
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);

  // For root the same path is a namespace run can send.
  auto root = sbtest::cli_as_root(*broker, {"run", "--netns", path, "-s", "web", "--", "/bin/true"});
  EXPECT_EQ(root.exit_code, 0) << root.output;

  auto nobody = cli_as_nobody(*broker, {"run", "--netns", path, "-s", "web", "--", "/bin/true"});
  EXPECT_EQ(nobody.exit_code, 77) << nobody.output;
  EXPECT_EQ(nobody.output, "sockbroker: cannot open the network namespace \"" + path + "\": Permission denied\n");
}

TEST_F(Cli, MissingProgramExits127AndUsageErrorsExit64) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  for (const char* supervision : {"--on-revoke=term", "--no-supervise"}) {
    SCOPED_TRACE(supervision);
    auto missing = cli_as_nobody(*broker, {"run", supervision, "-s", "web", "--", dir.file("no-such-program")});
    EXPECT_EQ(missing.exit_code, 127);
    EXPECT_NE(missing.output.find("cannot execute \"" + dir.file("no-such-program") + "\": No such file or directory"),
              std::string::npos)
        << missing.output;
    dir.write("not-executable", "#!/bin/sh\n");
    auto refused = cli_as_nobody(*broker, {"run", supervision, "-s", "web", "--", dir.file("not-executable")});
    EXPECT_EQ(refused.exit_code, 126);
    EXPECT_NE(refused.output.find("Permission denied"), std::string::npos) << refused.output;
  }
  EXPECT_EQ(cli_as_nobody(*broker, {"run", "-s", "web"}).exit_code, 64);
  EXPECT_EQ(cli_as_nobody(*broker, {"frobnicate"}).exit_code, 64);
  EXPECT_EQ(cli_as_nobody(*broker, {"--help"}).exit_code, 0);
}

// Every command is found under its name (with --control before or after it),
// and help without one, or with an unknown one, lists them all.
TEST_F(Cli, EveryCommandIsReachableAndHelpListsThemAll) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  const std::vector<std::string> all{"run",    "get",   "list",   "check", "reload", "revoke",
                                     "status", "audit", "doctor", "help",  "version"};
  for (const auto& command : all) {
    auto help = cli_as_nobody(*broker, {command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << command << ": " << help.output;
    EXPECT_NE(help.output.find("sockbroker " + command), std::string::npos) << command << ": " << help.output;
  }
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"-h"}, {"frobnicate", "--help"}}) {
    auto help = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup,
                                       [&] {
                                         std::vector<std::string> argv{sbtest::programs().sockbroker};
                                         argv.insert(argv.end(), args.begin(), args.end());
                                         return argv;
                                       }());
    for (const auto& command : all) {
      EXPECT_NE(help.output.find("  " + command), std::string::npos) << args[0] << ": " << command << "\n" << help.output;
    }
  }
  // --control before and after the command name, and as --control=PATH.
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{sbtest::programs().sockbroker, "--control", broker->control(), "list"},
        {sbtest::programs().sockbroker, "list", "--control", broker->control()},
        {sbtest::programs().sockbroker, "--control=" + broker->control(), "list"}}) {
    auto listed = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, argv);
    EXPECT_EQ(listed.exit_code, 0) << listed.output;
    EXPECT_NE(listed.output.find("web"), std::string::npos) << listed.output;
  }
}

// `sockbroker ARGS...` as nobody, without a broker.
sbtest::ChildResult sockbroker_as_nobody(const std::vector<std::string>& args) {
  std::vector<std::string> argv{sbtest::programs().sockbroker};
  argv.insert(argv.end(), args.begin(), args.end());
  return sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, argv);
}

// What a newcomer types first: help, version, and a command that does not
// exist, which must be named as such with the commands there are.
TEST_F(Cli, HelpAndVersionAreCommands) {
  auto help = sockbroker_as_nobody({"help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_EQ(help.output, sockbroker_as_nobody({"--help"}).output);
  EXPECT_NE(help.output.find("  revoke"), std::string::npos) << help.output;
  // An index: each command in its first sentence, the rest under help COMMAND.
  EXPECT_EQ(help.output.find("Uptime, policy generation"), std::string::npos) << help.output;
  EXPECT_NE(sockbroker_as_nobody({"help", "status"}).output.find("Uptime, policy generation"), std::string::npos);

  for (const std::string command : {"run", "check", "revoke", "help"}) {
    auto one = sockbroker_as_nobody({"help", command});
    EXPECT_EQ(one.exit_code, 0) << command << ": " << one.output;
    EXPECT_EQ(one.output, sockbroker_as_nobody({command, "--help"}).output) << command;
    EXPECT_NE(one.output.find("sockbroker " + command), std::string::npos) << one.output;
  }
  EXPECT_NE(sockbroker_as_nobody({"help", "run"}).output.find("Examples:"), std::string::npos);

  auto version = sockbroker_as_nobody({"version"});
  EXPECT_EQ(version.exit_code, 0) << version.output;
  EXPECT_TRUE(version.output.starts_with("sockbroker ")) << version.output;
  EXPECT_EQ(version.output, sockbroker_as_nobody({"--version"}).output);
}

TEST_F(Cli, UnknownOrMissingCommandExits64NamingTheCommands) {
  const std::string commands = "run, get, list, check, reload, revoke, upgrade, status, audit, doctor, help, version";
  for (const std::vector<std::string>& args : {std::vector<std::string>{"frobnicate"},
                                               {"--control", "/nonexistent.sock", "frobnicate"},
                                               {"frobnicate", "--control", "/nonexistent.sock"},
                                               {"help", "frobnicate"}}) {
    auto result = sockbroker_as_nobody(args);
    EXPECT_EQ(result.exit_code, 64) << result.output;
    EXPECT_EQ(result.output, "sockbroker: unknown command \"frobnicate\"; the commands are " + commands +
                                 " (sockbroker help COMMAND explains one)\n");
  }
  auto none = sockbroker_as_nobody({});
  EXPECT_EQ(none.exit_code, 64) << none.output;
  EXPECT_EQ(none.output, "sockbroker: no command given; the commands are " + commands +
                             " (sockbroker help explains them)\n");
  // An unknown option is still CLI11's usage error, not an unknown command.
  auto option = sockbroker_as_nobody({"list", "--frobnicate"});
  EXPECT_EQ(option.exit_code, 64) << option.output;
  EXPECT_NE(option.output.find("--frobnicate"), std::string::npos) << option.output;
  EXPECT_EQ(option.output.find("unknown command"), std::string::npos) << option.output;
}

// CLI11's errors, like every other failure, in one line that says what to read.
TEST_F(Cli, UsageErrorsAreOneLineNamingTheHelp) {
  auto option = sockbroker_as_nobody({"list", "--frobnicate"});
  EXPECT_EQ(option.exit_code, 64) << option.output;
  EXPECT_EQ(option.output,
            "sockbroker: the following argument was not expected: --frobnicate (see sockbroker help list)\n");
  auto missing = sockbroker_as_nobody({"revoke"});
  EXPECT_EQ(missing.exit_code, 64) << missing.output;
  EXPECT_EQ(missing.output, "sockbroker: name is required (see sockbroker help revoke)\n");
  auto value = sockbroker_as_nobody({"check", "--policy"});
  EXPECT_EQ(value.exit_code, 64) << value.output;
  EXPECT_EQ(value.output, "sockbroker: --policy: 1 required TEXT missing (see sockbroker help check)\n");
  auto top = sockbroker_as_nobody({"--frobnicate"});
  EXPECT_EQ(top.exit_code, 64) << top.output;
  EXPECT_EQ(top.output, "sockbroker: the following argument was not expected: --frobnicate (see sockbroker help)\n");
}

TEST_F(Cli, DemoHttpdServesThroughRunAsNobody) {
  TempDir dir;
  auto broker = Broker::start(dir, kPolicy);
  ASSERT_TRUE(broker);
  sbtest::Background service(sbtest::kNobody, sbtest::kNogroup,
                             {sbtest::programs().sockbroker, "--control", broker->control(), "run", "-s", "web", "--",
                              sbtest::programs().demo_httpd, "--count", "1"});
  std::string response = sbtest::tcp_exchange(80, "GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(service.wait(), 0) << service.output();
  EXPECT_NE(response.find("HTTP/1.0 200 OK"), std::string::npos) << response;
  EXPECT_NE(response.find("uid: 65534"), std::string::npos) << response;
  // Supervised, the server's own bind of a port the policy lacks is refused
  // as an unprivileged low-port bind is, and audited naming the address.
  EXPECT_NE(response.find("refused (Permission denied)"), std::string::npos) << response;
  auto denied = broker->wait_for_events("deny");
  ASSERT_FALSE(denied.empty());
  EXPECT_EQ(denied.back()["reason"], "no_socket_for_address") << denied.back().dump();
  EXPECT_EQ(denied.back()["local_addr"]["sin_port"], 8080) << denied.back().dump();
}

TEST_F(Cli, CheckReportsPositionsAndExit78) {
  TempDir dir;
  dir.write("bad.toml", "[socket.web]\nlisten = \"0.0.0.0:80\"\nlisen = 1\n");
  auto result = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--policy", dir.file("bad.toml")});
  EXPECT_EQ(result.exit_code, 78) << result.output;
  EXPECT_NE(result.output.find(dir.file("bad.toml") + ":3:1: error: unknown key \"lisen\""), std::string::npos)
      << result.output;

  auto ok = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--policy", SOCKBROKER_EXAMPLES_DIR "/demo.toml"});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  auto strict = sbtest::run_command_as(
      0, 0, {sbtest::programs().sockbroker, "check", "--strict", "--policy", SOCKBROKER_EXAMPLES_DIR "/demo.toml"});
  EXPECT_EQ(strict.exit_code, 78) << strict.output;  // wildcard warnings become errors
}

// No allow rule means root only, as documented; check says so, because in a
// policy that is more often a rule forgotten than a decision.
TEST_F(Cli, CheckWarnsAboutASocketOnlyRootGets) {
  TempDir dir;
  dir.write("policy.toml",
            "[socket.app]\nlisten = \"127.0.0.1:9000\"\n\n"
            "[socket.web]\nlisten = \"0.0.0.0:80\"\n[[socket.web.allow]]\nuser = \"nobody\"\n\n"
            "[socket.\"app.v2\"]\nlisten = \"127.0.0.1:9001\"\n\n"
            "[socket.root]\nlisten = \"127.0.0.1:9002\"\n[[socket.root.allow]]\nuser = \"root\"\n");
  const std::string file = dir.file("policy.toml");
  auto result = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--policy", file});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // In position order with the loader's own warnings; root named by a rule is no mistake.
  EXPECT_EQ(result.output,
            file + ":1:1: warning: socket \"app\" has no allow rule, so only root gets it; add [[socket.app.allow]] "
                   "rules, or one with user = \"root\" to say that is meant\n" +
                file + ":5:10: warning: listen \"0.0.0.0:80\" listens on every interface; name the address it should "
                       "serve\n" +
                file + ":9:1: warning: socket \"app.v2\" has no allow rule, so only root gets it; add "
                       "[[socket.\"app.v2\".allow]] rules, or one with user = \"root\" to say that is meant\n"
                       "policy OK: 4 socket(s) from 1 file(s), 3 warning(s)\n");

  auto json = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--json", "--policy", file});
  EXPECT_EQ(json.exit_code, 0) << json.output;
  auto parsed = nlohmann::json::parse(json.output);
  ASSERT_EQ(parsed["diagnostics"].size(), 3u) << json.output;
  EXPECT_EQ(parsed["diagnostics"][0]["severity"], "warning");
  EXPECT_EQ(parsed["diagnostics"][0]["line"], 1);

  // --strict: a warning like the others, so an error.
  dir.write("root-only.toml", "[socket.app]\nlisten = \"127.0.0.1:9000\"\n");
  auto strict = sbtest::run_command_as(
      0, 0, {sbtest::programs().sockbroker, "check", "--strict", "--policy", dir.file("root-only.toml")});
  EXPECT_EQ(strict.exit_code, 78) << strict.output;
  EXPECT_NE(strict.output.find(dir.file("root-only.toml") + ":1:1: error: socket \"app\" has no allow rule"),
            std::string::npos)
      << strict.output;
  EXPECT_NE(strict.output.find("policy invalid: 1 error(s)"), std::string::npos) << strict.output;
}

// The shipped unit's FileDescriptorStoreMax=4096 holds 4,093 sockets beside
// the broker's own entries; check names the first socket past that, in file
// order, and the value to set. Request sockets are never kept and do not count.
TEST_F(Cli, CheckWarnsWhenTheShippedUnitCannotKeepEverySocketAcrossARestart) {
  TempDir dir;
  auto policy_of = [](int sockets) {
    std::string text = "[socket.per-container]\nlisten = \"0.0.0.0:7000\"\nnetns = \"request\"\n"
                       "[[socket.per-container.allow]]\nuser = \"root\"\n\n";
    // Names that sort otherwise than they are written: the warning follows the file.
    for (int i = sockets; i > 0; --i) {
      const std::string name = "s" + std::to_string(i);
      text += "[socket." + name + "]\nlisten = \"127.0.0.1:" + std::to_string(10000 + i) + "\"\n[[socket." + name +
              ".allow]]\nuser = \"nobody\"\n";
    }
    return text;
  };
  dir.write("fits.toml", policy_of(4093));
  auto fits = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--policy", dir.file("fits.toml")});
  EXPECT_EQ(fits.exit_code, 0) << fits.output.substr(0, 2000);
  EXPECT_EQ(fits.output.find("FileDescriptorStoreMax"), std::string::npos) << fits.output.substr(0, 2000);

  dir.write("too-many.toml", policy_of(4095));
  const std::string file = dir.file("too-many.toml");
  auto over = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--policy", file});
  EXPECT_EQ(over.exit_code, 0) << over.output.substr(0, 2000);
  // The 4,094th socket the broker binds is s2 (written from s4095 down), at line 7 + 4,093 * 4.
  EXPECT_NE(over.output.find(file + ":" + std::to_string(7 + 4093 * 4) +
                             ":1: warning: socket \"s2\" and the 1 after it in the policy do not fit in the shipped "
                             "sockbroker.service's file descriptor store (FileDescriptorStoreMax=4096 holds 4093 "
                             "sockets and the broker's own 3 entries), so a restart binds them afresh; set "
                             "FileDescriptorStoreMax=4098 or more in a drop-in\n"),
            std::string::npos)
      << over.output.substr(0, 2000);
  auto strict = sbtest::run_command_as(0, 0, {sbtest::programs().sockbroker, "check", "--strict", "--policy", file});
  EXPECT_EQ(strict.exit_code, 78) << strict.output.substr(0, 2000);
}

}  // namespace
