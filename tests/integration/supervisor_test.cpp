// `sockbroker run` supervising an unmodified program (client/cli/supervisor.cpp,
// bind_server.cpp): its own bind(2) of a policy address answered with the
// broker's socket, every other bind refused and audited, signals forwarded,
// its exit status returned, and no program outliving its supervisor. The real
// servers (nginx, Go, Node, ...) are in tests/servers/.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::Background;
using sbtest::Broker;
using sbtest::TempDir;

constexpr std::uint16_t kPort = 80;
constexpr std::uint16_t kDeniedPort = 81;
constexpr std::uint16_t kUdpPort = 53;

std::string policy(const TempDir& dir) {
  return sbtest::PolicyBuilder()
      .socket("web", "127.0.0.1:80")
      .allow_user("nobody")
      .socket("dns", "127.0.0.1:53")
      .set_string("type", "datagram")
      .allow_user("nobody")
      .socket("app", dir.file("run/app.sock"))
      .set_string("socket_mode", "0666")
      .allow_user("nobody");
}

std::vector<std::string> run(const Broker& broker, std::vector<std::string> program) {
  std::vector<std::string> argv{sbtest::programs().sockbroker, "--control", broker.control(), "run", "--"};
  argv.insert(argv.end(), program.begin(), program.end());
  return argv;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Supervisor = sbtest::BrokerTest;

TEST_F(Supervisor, AProgramsOwnBindsAreServedFromThePolicyAndTheRestRefused) {
  TempDir dir;
  auto broker = Broker::start(dir, policy(dir));
  ASSERT_TRUE(broker);
  Background probe(sbtest::kNobody, sbtest::kNogroup,
                   run(*broker, {sbtest::programs().self, "--supervised-probe", std::to_string(kPort),
                                 std::to_string(kDeniedPort), dir.file("run/app.sock"), std::to_string(kUdpPort)}));
  ASSERT_TRUE(probe.wait_for_output("}")) << probe.output();
  EXPECT_EQ(sbtest::tcp_exchange(kPort, ""), "probe\n") << "the program serves the broker's socket";
  EXPECT_EQ(probe.wait(), 0) << probe.output();
  const std::string text = probe.output();
  auto out = nlohmann::json::parse(text.substr(text.find('{'), text.rfind('}') - text.find('{') + 1));

  EXPECT_EQ(out["reuseaddr"], "ok") << "SO_REUSEADDR succeeds without effect";
  EXPECT_EQ(out["reuseport"], "ok");
  EXPECT_EQ(out["bind"], "ok");
  EXPECT_EQ(out["bound_port"], kPort) << "getsockname() reports the policy address";
  EXPECT_EQ(out["nodelay"], 1) << "TCP_NODELAY set before the bind is carried over";
  EXPECT_EQ(out["nonblock"], true) << "O_NONBLOCK too";
  EXPECT_EQ(out["cloexec"], true) << "the descriptor keeps its close-on-exec";
  EXPECT_EQ(out["listen"], "ok") << "listen(2) on a granted socket";
  EXPECT_EQ(out["accepting"], 1);
  EXPECT_EQ(out["bind_again"], "Invalid argument") << "a second bind fails as the kernel's would";
  EXPECT_EQ(out["bind_denied"], "Permission denied") << "an address the policy lacks: EACCES";
  EXPECT_EQ(out["bind_port_0"], "Permission denied") << "a port the kernel would choose";
  EXPECT_EQ(out["listen_unbound"], "Operation not permitted") << "listen(2) would bind an ephemeral port";
  EXPECT_EQ(out["bind_netlink"], "ok");
  EXPECT_EQ(out["getifaddrs"], "ok");
  EXPECT_EQ(out["bind_unix"], "ok");
  EXPECT_EQ(out["unix_name"], dir.file("run/app.sock")) << "named by the policy's path";
  EXPECT_EQ(out["bind_udp"], "ok");
  EXPECT_EQ(out["listen_udp"], "Operation not supported") << "listen(2) of a datagram socket, as the kernel says";

  // The broker saw one client, the supervisor, and granted it three sockets;
  // it audited the refusals, naming the addresses asked for.
  auto grants = broker->wait_for_events("grant", 3);
  ASSERT_EQ(grants.size(), 3u);
  auto denials = broker->wait_for_events("deny", 1);
  ASSERT_GE(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "no_socket_for_address") << denials[0].dump();
  EXPECT_EQ(denials[0]["local_addr"]["sin_port"], kDeniedPort) << denials[0].dump();
  EXPECT_TRUE(denials[0]["socket"].is_null()) << denials[0].dump();
  EXPECT_NE(text.find("bind of 127.0.0.1:81 refused: no socket of the policy listens on 127.0.0.1:81"),
            std::string::npos)
      << "the supervisor says why on stderr:\n" << text;
}

// The notification names the calling thread, not its process: a bind from a
// thread other than the first must be answered as the first's is, never left
// waiting (the program would hang in bind(2) for good).
TEST_F(Supervisor, BindsAndListensFromAnotherThreadAreAnswered) {
  TempDir dir;
  auto broker = Broker::start(dir, policy(dir));
  ASSERT_TRUE(broker);
  Background probe(sbtest::kNobody, sbtest::kNogroup,
                   run(*broker, {sbtest::programs().self, "--threaded-bind-probe", std::to_string(kPort),
                                 std::to_string(kDeniedPort)}));
  ASSERT_TRUE(probe.wait_for_output("}", std::chrono::seconds(20)))
      << "the thread's calls were not answered:\n" << probe.output();
  EXPECT_EQ(sbtest::tcp_exchange(kPort, ""), "probe\n") << "the program serves the broker's socket";
  EXPECT_EQ(probe.wait(), 0) << probe.output();
  const std::string text = probe.output();
  auto out = nlohmann::json::parse(text.substr(text.find('{'), text.rfind('}') - text.find('{') + 1));
  EXPECT_EQ(out["bind"], "ok");
  EXPECT_EQ(out["bound_port"], kPort);
  EXPECT_EQ(out["listen"], "ok");
  EXPECT_EQ(out["bind_denied"], "Permission denied") << "an address the policy lacks: EACCES";
  EXPECT_EQ(out["listen_unbound"], "Operation not permitted");
}

TEST_F(Supervisor, ForwardsSignalsAndExitsWithTheProgramsStatus) {
  TempDir dir;
  auto broker = Broker::start(dir, policy(dir));
  ASSERT_TRUE(broker);
  // A program that says it is ready, exits 7 on SIGTERM and counts SIGHUPs.
  Background program(sbtest::kNobody, sbtest::kNogroup,
                     run(*broker, {"/bin/sh", "-c",
                                   "trap 'echo hup' HUP; trap 'exit 7' TERM; echo ready; "
                                   "while :; do sleep 0.05; done"}));
  ASSERT_TRUE(program.wait_for_output("ready")) << program.output();
  ASSERT_EQ(::kill(program.pid(), SIGHUP), 0);
  EXPECT_TRUE(program.wait_for_output("hup")) << "SIGHUP reaches the program:\n" << program.output();
  ASSERT_EQ(::kill(program.pid(), SIGTERM), 0);
  EXPECT_EQ(program.wait(), 7) << program.output();

  Background killed(sbtest::kNobody, sbtest::kNogroup, run(*broker, {"/bin/sh", "-c", "echo ready; kill -9 $$"}));
  EXPECT_EQ(killed.wait(), 128 + SIGKILL) << "a program killed by a signal: 128 + N";
  EXPECT_EQ(killed.killed_by(), SIGKILL) << "sockbroker run dies of the program's signal";

  // systemctl stop: SIGTERM, forwarded, kills the program; sockbroker run
  // then dies of SIGTERM too, which systemd counts as a clean stop (an exit
  // status of 143 would leave the unit failed).
  Background stopped(sbtest::kNobody, sbtest::kNogroup,
                     run(*broker, {"/bin/sh", "-c", "echo ready; exec sleep 100"}));
  ASSERT_TRUE(stopped.wait_for_output("ready")) << stopped.output();
  ASSERT_EQ(::kill(stopped.pid(), SIGTERM), 0);
  stopped.wait();
  EXPECT_EQ(stopped.killed_by(), SIGTERM) << stopped.output();
}

TEST_F(Supervisor, StaysWhileTheProgramsTreeLivesAndForwardsToWhatRemains) {
  TempDir dir;
  auto broker = Broker::start(dir, policy(dir));
  ASSERT_TRUE(broker);
  // A daemon: the program forks a child that outlives it, as nginx does.
  Background daemon(sbtest::kNobody, sbtest::kNogroup,
                    run(*broker, {"/bin/sh", "-c",
                                  "(trap 'exit 5' TERM; echo daemon; while :; do sleep 0.05; done) & exit 0"}));
  ASSERT_TRUE(daemon.wait_for_output("daemon")) << daemon.output();
  // A negative check: the supervisor must not exit within this time.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(::kill(daemon.pid(), 0), 0) << "the supervisor went away while the daemon lives";
  ASSERT_EQ(::kill(daemon.pid(), SIGTERM), 0);
  EXPECT_EQ(daemon.wait(), 5) << "the signal reached the daemon, and its status is the supervisor's";
}

TEST_F(Supervisor, TheProgramDiesWithItsSupervisor) {
  TempDir dir;
  auto broker = Broker::start(dir, policy(dir));
  ASSERT_TRUE(broker);
  Background program(sbtest::kNobody, sbtest::kNogroup,
                     run(*broker, {"/bin/sh", "-c", "echo pid $$; while :; do sleep 0.05; done"}));
  ASSERT_TRUE(program.wait_for_output("pid ")) << program.output();
  const std::string text = program.output();
  const pid_t child = std::stoi(text.substr(text.find("pid ") + 4));
  ASSERT_EQ(::kill(program.pid(), SIGKILL), 0);
  (void)program.wait();
  EXPECT_TRUE(sbtest::wait_until([&] { return ::kill(child, 0) != 0; })) << "pid " << child << " outlived its supervisor";
}

TEST_F(Supervisor, NestedSupervisionSaysWhatToDo) {
  TempDir dir;
  auto broker = Broker::start(dir, policy(dir));
  ASSERT_TRUE(broker);
  auto inner = run(*broker, {"/bin/true"});
  auto result = sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, run(*broker, inner));
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("run the inner `sockbroker run` with --no-supervise"), std::string::npos)
      << result.output;
  inner.insert(inner.begin() + 4, "--no-supervise");
  EXPECT_EQ(sbtest::run_command_as(sbtest::kNobody, sbtest::kNogroup, run(*broker, inner)).exit_code, 0);
}

}  // namespace
