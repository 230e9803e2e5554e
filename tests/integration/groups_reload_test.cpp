// reuse_port groups, quotas and leases, reload and revoke, the administrator's
// listing: the broker's state over time, against the real kernel.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include <sockbroker/client.hpp>

#include "harness.hpp"
#include "policy_builder.hpp"

namespace {

using sbtest::start_worker;

using sbtest::Background;
using sbtest::Broker;
using sbtest::TempDir;

// A worker serving `socket` through `sockbroker run`, answering with its tag.
// sockbroker run --on-revoke=term: the program got SIGTERM, and the supervisor
// exits 75 (EX_TEMPFAIL) so that Restart=on-failure brings the service back.
constexpr int kStoppedForRevoke = 75;

// Waits until the worker printed "ready" (it holds its socket), up to 5 s.
bool wait_ready(const Background& worker) { return worker.wait_for_output("ready"); }

// As nobody in a child that exits at once: the grant, probed for the inode of
// the kernel socket it got (the socket's identity across reloads).
sbtest::Acquired acquire_and_report(const Broker& broker, const std::string& name) {
  return sbtest::acquire_as_nobody(broker, name, [](int fd) -> nlohmann::json { return sbtest::inode_of(fd); });
}

using sbtest::cli_as;

// Retries `name` as nobody for up to 2 s: a lease ends a moment after its holder.
bool granted_within_2s(const Broker& broker, const std::string& name) {
  return sbtest::wait_until([&] { return acquire_and_report(broker, name).granted; }, std::chrono::seconds(2),
                            std::chrono::milliseconds(20));
}

int connect_status(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = sbtest::ipv4_address(port);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// A reuse_port group "web" on 0.0.0.0:port that nobody may join; callers add
// settings (.set), [broker] keys (.broker) and other sockets (.socket).
sbtest::PolicyBuilder reuse_port_policy(std::uint16_t port) {
  sbtest::PolicyBuilder policy;
  policy.socket("web", "0.0.0.0:" + std::to_string(port)).set("reuse_port", "true").allow_user("nobody");
  return policy;
}

// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using AdminList = sbtest::BrokerTest;
using Quota = sbtest::BrokerTest;
using Reload = sbtest::BrokerTest;
using ReusePort = sbtest::BrokerTest;
using Revoke = sbtest::BrokerTest;

TEST_F(ReusePort, TwoWorkersEachGetTheirOwnMemberAndShareTheConnections) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80));
  ASSERT_TRUE(broker);
  auto a = start_worker(*broker, "web", "A");
  auto b = start_worker(*broker, "web", "B");
  ASSERT_TRUE(wait_ready(*a)) << a->output();
  ASSERT_TRUE(wait_ready(*b)) << b->output();

  std::map<std::string, int> answered;
  for (int i = 0; i < 200; ++i) answered[sbtest::tcp_exchange(80, "")]++;
  EXPECT_GT(answered["A\n"], 0) << "A answered none of 200";
  EXPECT_GT(answered["B\n"], 0) << "B answered none of 200";
  EXPECT_EQ(answered["A\n"] + answered["B\n"], 200);

  auto grants = broker->wait_for_events("grant", 2);
  ASSERT_EQ(grants.size(), 2u);
  EXPECT_EQ(grants[0]["reuse_port"], true);
}

TEST_F(ReusePort, AnotherUidCannotJoinTheGroupEvenWithoutLockdown) {
  TempDir dir;
  // A high port, so that the privilege check on low ports is not what refuses it.
  auto broker = Broker::start(dir, reuse_port_policy(8080));
  ASSERT_TRUE(broker);
  auto worker = start_worker(*broker, "web", "A");
  ASSERT_TRUE(wait_ready(*worker)) << worker->output();
  auto intruder = sbtest::run_as_nobody([](int report_fd) {
    int err = sbtest::bind_tcp(INADDR_ANY, 8080, {.port = true});
    if (err == 0) return 1;
    sbtest::report(report_fd, std::strerror(err));
    return err == EADDRINUSE ? 0 : 2;
  });
  EXPECT_EQ(intruder.exit_code, 0) << intruder.output;
}

TEST_F(ReusePort, TheBrokerKeepsNoListeningMemberButHoldsThePort) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(8081));
  ASSERT_TRUE(broker);
  // No worker: a connection must be refused, not queued on a broker-held member
  // nobody will ever accept from.
  EXPECT_EQ(connect_status(8081), ECONNREFUSED);
  // Yet the port is held: another uid cannot take it.
  auto squatter = sbtest::run_as_nobody([](int) { return sbtest::bind_tcp(INADDR_ANY, 8081) == EADDRINUSE ? 0 : 1; });
  EXPECT_EQ(squatter.exit_code, 0);
}

// How many IPv4 TCP sockets on `port` are in each state (/proc/net/tcp "st",
// e.g. 0x06 TIME_WAIT, 0x0A LISTEN), in this network namespace.
std::map<int, int> tcp_states_on(std::uint16_t port) {
  std::map<int, int> states;
  std::istringstream table(sbtest::read_file("/proc/net/tcp"));
  std::string line;
  std::getline(table, line);  // the header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    auto colon = local.find(':');
    if (colon == std::string::npos || std::stoi(local.substr(colon + 1), nullptr, 16) != port) continue;
    states[std::stoi(state, nullptr, 16)]++;
  }
  return states;
}

// Members get SO_REUSEADDR although the group's own TIME_WAIT leftovers never
// block a SO_REUSEPORT bind: without it, those leftovers (carrying no
// SO_REUSEADDR) refuse the port to a broker whose policy no longer says
// reuse_port, for the 60 s of TIME_WAIT.
TEST_F(ReusePort, ItsTimeWaitConnectionsDoNotKeepTheNextBrokerFromASharedSocket) {
  constexpr std::uint16_t kPort = 8082;
  constexpr int kTimeWait = 0x06;
  {
    TempDir dir;
    auto broker = Broker::start(dir, reuse_port_policy(kPort));
    ASSERT_TRUE(broker);
    auto worker = start_worker(*broker, "web", "A");
    ASSERT_TRUE(wait_ready(*worker)) << worker->output();
    // The worker writes its tag and closes; reading to the end before closing
    // leaves the worker's side of each connection in TIME_WAIT.
    for (int i = 0; i < 5; ++i) {
      sockbroker::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in address = sbtest::ipv4_address(kPort);
      ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
      char buffer[64];
      while (::recv(fd.get(), buffer, sizeof buffer, 0) > 0) {
      }
    }
    ASSERT_GT(tcp_states_on(kPort)[kTimeWait], 0) << "no worker-side TIME_WAIT: the test proves nothing";
  }
  TempDir dir;
  auto shared = Broker::start(
      dir, sbtest::PolicyBuilder().socket("web", "0.0.0.0:" + std::to_string(kPort)).allow_user("nobody"));
  ASSERT_TRUE(shared);
  EXPECT_TRUE(acquire_and_report(*shared, "web").granted) << shared->log();
}

// After a grant the broker binds the next member ahead (a spare, not
// listening): it must take no connection, let no one else in, and serve the
// next worker.
TEST_F(ReusePort, TheSpareMemberTakesNoConnectionsLetsNoOneInAndServesTheNextWorker) {
  TempDir dir;
  constexpr std::uint16_t kPort = 8084;
  auto broker = Broker::start(dir, reuse_port_policy(kPort));
  ASSERT_TRUE(broker);
  auto first = start_worker(*broker, "web", "A");
  ASSERT_TRUE(wait_ready(*first)) << first->output();
  EXPECT_EQ(sbtest::tcp_exchange(kPort, ""), "A\n");
  first.reset();  // its member goes; the spare made after its grant stays
  ASSERT_TRUE(sbtest::wait_until([&] { return connect_status(kPort) == ECONNREFUSED; }))
      << "a connection was queued with no worker to accept it";
  for (uid_t intruder : {sbtest::kNobody, uid_t{1}}) {
    auto squatter = sbtest::run_as(intruder, intruder == 1 ? gid_t{1} : sbtest::kNogroup, [&](int report_fd) {
      for (sbtest::Reuse reuse : {sbtest::Reuse{false, false}, sbtest::Reuse{true, false}, sbtest::Reuse{false, true},
                                  sbtest::Reuse{true, true}}) {
        int err = sbtest::bind_tcp(INADDR_ANY, kPort, reuse);
        if (err != EADDRINUSE) {
          sbtest::report(report_fd, "SO_REUSEADDR " + std::to_string(reuse.addr) + " SO_REUSEPORT " +
                                        std::to_string(reuse.port) + ": bind " +
                                        (err == 0 ? "succeeded" : std::strerror(err)));
          return 1;
        }
      }
      return 0;
    });
    EXPECT_EQ(squatter.exit_code, 0) << "uid " << intruder << ": " << squatter.output;
  }
  auto second = start_worker(*broker, "web", "B");
  ASSERT_TRUE(wait_ready(*second)) << second->output();
  EXPECT_EQ(sbtest::tcp_exchange(kPort, ""), "B\n");
  auto third = start_worker(*broker, "web", "C");
  ASSERT_TRUE(wait_ready(*third)) << third->output();
  std::map<std::string, int> answered;
  for (int i = 0; i < 100; ++i) answered[sbtest::tcp_exchange(kPort, "")]++;
  EXPECT_GT(answered["B\n"], 0);
  EXPECT_GT(answered["C\n"], 0);
  EXPECT_EQ(answered["B\n"] + answered["C\n"], 100);
}

TEST_F(ReusePort, DatagramGroupKeepsNoIdleMember) {
  TempDir dir;
  auto broker = Broker::start(dir, sbtest::PolicyBuilder()
                                       .socket("dns", "127.0.0.1:5353")
                                       .set_string("type", "datagram")
                                       .set("reuse_port", "true")
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  // Nothing is bound before the first grant: a plain bind by root succeeds.
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = sbtest::ipv4_address(5353);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
  ::close(fd);
  auto grant = acquire_and_report(*broker, "dns");
  EXPECT_TRUE(grant.granted) << grant.message;
}

TEST_F(Quota, MaxGrantsCountsLiveHoldersAndFreesWhenOneExits) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80).set("max_grants", "2"));
  ASSERT_TRUE(broker);
  const int baseline = broker->settled_fd_count();
  auto a = start_worker(*broker, "web", "A");
  auto b = start_worker(*broker, "web", "B");
  ASSERT_TRUE(wait_ready(*a));
  ASSERT_TRUE(wait_ready(*b));

  auto third = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"get", "web", "--", "/bin/true"});
  EXPECT_EQ(third.exit_code, 75) << third.output;
  EXPECT_NE(third.output.find("max_grants"), std::string::npos) << third.output;
  auto denials = broker->wait_for_events("deny");
  ASSERT_EQ(denials.size(), 1u);
  EXPECT_EQ(denials[0]["reason"], "quota");

  a.reset();  // worker A exits: its lease ends
  EXPECT_TRUE(granted_within_2s(*broker, "web"));
  b.reset();
  // Every member dup and holder pidfd is gone with its holder.
  const int expected = baseline + sbtest::kSpareMember;
  EXPECT_EQ(broker->wait_for_fd_count(expected), expected) << broker->fd_listing();
}

TEST_F(Quota, SharedSocketMaxGrantsCountsProcessesNotRequests) {
  TempDir dir;
  auto broker = Broker::start(
      dir, sbtest::PolicyBuilder().socket("web", "0.0.0.0:80").set("max_grants", "1").allow_user("nobody"));
  ASSERT_TRUE(broker);
  sbtest::Pipe held, release;
  sbtest::Child holder(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    // The same process asking again gets the same socket, not a second lease.
    for (int i = 0; i < 5; ++i) {
      auto grant = client->acquire("web");
      if (!grant) {
        sbtest::report(report_fd, grant.error().message);
        return 2;
      }
    }
    sbtest::notify(held);
    return sbtest::await(release) ? 0 : 3;  // hold the lease until told
  });
  // Bounded: if the holder fails it never notifies, and we hold the write end too.
  if (!sbtest::await(held, 10000)) {
    sbtest::notify(release);
    FAIL() << "the holder never got its grants: " << holder.wait().output;
  }
  // While it lives, another process is refused...
  auto refused = acquire_and_report(*broker, "web");
  EXPECT_EQ(refused.code, SOCKBROKER_E_QUOTA) << refused.message;
  sbtest::notify(release);
  auto held_result = holder.wait();
  EXPECT_EQ(held_result.exit_code, 0) << held_result.output;
  // ...and once it has exited, granted.
  EXPECT_TRUE(granted_within_2s(*broker, "web"));
}

TEST_F(Quota, PerClientCapOnLiveGrants) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80).broker("max_grants_per_client", "3"));
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    std::vector<sockbroker::Grant> held;
    for (int i = 0; i < 3; ++i) {
      auto grant = client->acquire("web");
      if (!grant) return 2;
      held.push_back(std::move(*grant));
    }
    auto fourth = client->acquire("web");
    if (fourth) return 3;
    sbtest::report(report_fd, fourth.error().message);
    return fourth.error().code == SOCKBROKER_E_QUOTA ? 0 : 4;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_NE(child.output.find("max_grants_per_client"), std::string::npos) << child.output;
}

sbtest::PolicyBuilder reload_policy() {
  return sbtest::PolicyBuilder()
      .socket("web", "0.0.0.0:80")
      .allow_user("nobody")
      .socket("api", "127.0.0.1:8443")
      .allow_user("nobody")
      .socket("old", "127.0.0.1:9000")
      .allow_user("nobody");
}

// reload_policy with "web" changed in place, "api" moved, "old" replaced by "new".
sbtest::PolicyBuilder reloaded_policy() {
  return sbtest::PolicyBuilder()
      .socket("web", "0.0.0.0:80")
      .set("backlog", "511")
      .allow_user("nobody")
      .allow_user("daemon")
      .socket("api", "127.0.0.1:8444")
      .allow_user("nobody")
      .socket("new", "127.0.0.1:9001")
      .allow_user("nobody");
}

TEST_F(Reload, UnchangedKeepsTheKernelSocketChangedIsReboundRemovedIsClosed) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  auto web_before = acquire_and_report(*broker, "web");
  auto api_before = acquire_and_report(*broker, "api");
  ASSERT_TRUE(web_before.granted) << web_before.message;
  ASSERT_TRUE(api_before.granted) << api_before.message;

  dir.write("policy.toml", reloaded_policy());
  auto reloaded = cli_as(0, 0, *broker, {"reload"});
  ASSERT_EQ(reloaded.exit_code, 0) << reloaded.output;
  EXPECT_NE(reloaded.output.find("1 added, 1 rebound, 1 removed, 1 unchanged"), std::string::npos) << reloaded.output;

  auto web_after = acquire_and_report(*broker, "web");
  EXPECT_TRUE(web_after.granted) << web_after.message;
  EXPECT_EQ(web_after.probe, web_before.probe) << "an unchanged entry must keep the same kernel socket";
  auto api_after = acquire_and_report(*broker, "api");
  ASSERT_TRUE(api_after.granted) << api_after.message;
  EXPECT_NE(api_after.probe, api_before.probe) << "a changed entry is bound afresh";
  EXPECT_EQ(connect_status(8444), 0);
  EXPECT_EQ(connect_status(8443), ECONNREFUSED);
  EXPECT_TRUE(acquire_and_report(*broker, "new").granted);
  EXPECT_FALSE(acquire_and_report(*broker, "old").granted);  // unknown now
  EXPECT_EQ(connect_status(9000), ECONNREFUSED);                 // closed by the broker

  auto events = broker->wait_for_events("reload");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["generation"], 2);
  EXPECT_EQ(events[0]["added"], nlohmann::json({"new"}));
  EXPECT_EQ(events[0]["changed"], nlohmann::json({"api"}));
  EXPECT_EQ(events[0]["removed"], nlohmann::json({"old"}));
}

TEST_F(Reload, InvalidPolicyChangesNothingAndTheErrorsArePrinted) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  auto before = acquire_and_report(*broker, "web");
  // Written out: the error's file:line is checked (line 3, the backlog).
  dir.write("policy.toml", "[socket.web]\nlisten = \"0.0.0.0:80\"\nbacklog = \"lots\"\n");
  auto reloaded = cli_as(0, 0, *broker, {"reload"});
  EXPECT_EQ(reloaded.exit_code, 78) << reloaded.output;
  EXPECT_NE(reloaded.output.find(dir.file("policy.toml") + ":3:"), std::string::npos) << reloaded.output;
  ASSERT_TRUE(before.granted) << before.message;
  EXPECT_EQ(acquire_and_report(*broker, "web").probe, before.probe);
  EXPECT_TRUE(acquire_and_report(*broker, "old").granted);  // still there
  auto failed = broker->wait_for_events("reload_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["generation"], 1);
}

TEST_F(Reload, SighupReloads) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  dir.write("policy.toml", reloaded_policy());
  ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  EXPECT_EQ(broker->wait_for_events("reload").size(), 1u);
  EXPECT_TRUE(acquire_and_report(*broker, "new").granted);
}

TEST_F(Reload, OnlyAdministratorsMayReloadOrRevoke) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  auto reload = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"reload"});
  EXPECT_EQ(reload.exit_code, 77) << reload.output;
  EXPECT_NE(reload.output.find("uid 65534"), std::string::npos) << reload.output;
  auto revoke = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"revoke", "web"});
  EXPECT_EQ(revoke.exit_code, 77) << revoke.output;
  auto denials = broker->wait_for_events("deny", 2);
  ASSERT_EQ(denials.size(), 2u);
  EXPECT_EQ(denials[0]["reason"], "not_admin");
}

TEST_F(Reload, AdminGroupMembersMayReload) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy().broker("admin_group", sbtest::toml_string("nogroup")));
  ASSERT_TRUE(broker);
  auto reload = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"reload", "--json"});
  EXPECT_EQ(reload.exit_code, 0) << reload.output;
  auto outcome = nlohmann::json::parse(reload.output);
  EXPECT_EQ(outcome["ok"], true);
}

TEST_F(Revoke, HoldersStopAcceptingAndFutureGrantsGetAFreshSocket) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  auto before = acquire_and_report(*broker, "web");
  // Told of the revoke, it runs on: what is checked here is the shutdown itself.
  auto worker = start_worker(*broker, "web", "A", "ignore");
  ASSERT_TRUE(wait_ready(*worker)) << worker->output();
  EXPECT_EQ(sbtest::tcp_exchange(80, ""), "A\n");

  auto revoked = cli_as(0, 0, *broker, {"revoke", "web"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_NE(revoked.output.find("revoked"), std::string::npos) << revoked.output;
  // The holder's accept() fails: its listening socket was shut down.
  EXPECT_EQ(worker->wait(), 3) << worker->output();
  EXPECT_NE(worker->output().find("accept: "), std::string::npos) << worker->output();
  EXPECT_NE(worker->output().find("--on-revoke=ignore"), std::string::npos) << worker->output();

  ASSERT_TRUE(before.granted) << before.message;
  auto after = acquire_and_report(*broker, "web");
  ASSERT_TRUE(after.granted) << after.message;
  EXPECT_NE(after.probe, before.probe);  // a fresh kernel socket
  auto fresh = start_worker(*broker, "web", "B");
  ASSERT_TRUE(wait_ready(*fresh)) << fresh->output();
  EXPECT_EQ(sbtest::tcp_exchange(80, ""), "B\n");

  auto events = broker->wait_for_events("revoke");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["socket"], "web");
  EXPECT_EQ(events[0]["holders"], 1);
}

// The notice is on the holder's watch connection before its socket is shut
// down: when accept(2) fails, a supervisor that looks at once finds why. It
// used to go at the end of the broker's turn, here after the reload bound 400
// more sockets, and a supervisor woken by its program's exit could miss it.
TEST_F(Reload, TheNoticeIsQueuedBeforeTheHoldersAcceptFails) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  sbtest::Pipe ready;
  sbtest::Child holder(sbtest::kNobody, sbtest::kNogroup, [&](int report) {
    auto watcher = sockbroker::Client::connect(broker->control());
    if (!watcher || !watcher->watch()) return 10;
    auto grant = sockbroker::acquire("api", broker->control());
    if (!grant) return 11;
    sbtest::notify(ready);
    const int accepted = ::accept(grant->fd.get(), nullptr, nullptr);
    const int err = errno;
    pollfd notice{watcher->notice_fd(), POLLIN, 0};
    const int readable = ::poll(&notice, 1, 0);  // at once: no time for a late notice to arrive
    auto said = watcher->next_notice();
    std::string line = "accept " + std::to_string(accepted) + " " + std::strerror(err) + "; readable " +
                       std::to_string(readable) + "; notice " +
                       (said && *said ? (*said)->socket + ": " + (*said)->message : std::string("none"));
    (void)!::write(report, line.data(), line.size());
    return accepted < 0 && readable == 1 ? 0 : 1;
  });
  ASSERT_TRUE(sbtest::await(ready));
  // "api" moves (bound afresh: its holders' socket is shut down), then 400 new
  // sockets are bound, in the same turn.
  auto next = sbtest::PolicyBuilder().socket("web", "0.0.0.0:80").allow_user("nobody");
  next.socket("api", "127.0.0.1:8444").allow_user("nobody");
  for (int i = 0; i < 400; ++i) next.socket("extra" + std::to_string(i), "127.0.0.1:" + std::to_string(20000 + i));
  dir.write("policy.toml", next);
  auto reloaded = cli_as(0, 0, *broker, {"reload"});
  ASSERT_EQ(reloaded.exit_code, 0) << reloaded.output;
  auto ended = holder.wait();
  EXPECT_EQ(ended.exit_code, 0) << ended.output;
  EXPECT_NE(ended.output.find("notice api: the broker shut the socket down"), std::string::npos) << ended.output;
}

TEST_F(Revoke, UnknownNameExits65) {
  TempDir dir;
  auto broker = Broker::start(dir, reload_policy());
  ASSERT_TRUE(broker);
  EXPECT_EQ(cli_as(0, 0, *broker, {"revoke", "nosuch"}).exit_code, 65);
}

// The broker keeps no duplicate of a member, so it cannot shut one down: it
// tells each holder, whose supervisor stops the program (--on-revoke=term).
TEST_F(ReusePort, RevokeTellsEveryMemberHolderAndTheirSupervisorsStopThem) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80));
  ASSERT_TRUE(broker);
  auto a = start_worker(*broker, "web", "A");
  auto b = start_worker(*broker, "web", "B");
  ASSERT_TRUE(wait_ready(*a));
  ASSERT_TRUE(wait_ready(*b));
  auto revoked = cli_as(0, 0, *broker, {"revoke", "web"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_NE(revoked.output.find("2 holder"), std::string::npos) << revoked.output;
  EXPECT_EQ(a->wait(), kStoppedForRevoke) << a->output();
  EXPECT_EQ(b->wait(), kStoppedForRevoke) << b->output();
  EXPECT_NE(a->output().find("revoked \"web\""), std::string::npos) << a->output();
  EXPECT_NE(a->output().find("sending SIGTERM"), std::string::npos) << a->output();
  EXPECT_EQ(broker->wait_for_events("revoke")[0]["holders"], 2);
  // Both members closed with their holders: the port takes a new worker.
  auto c = start_worker(*broker, "web", "C");
  ASSERT_TRUE(wait_ready(*c)) << c->output();
  EXPECT_EQ(sbtest::tcp_exchange(80, "", 2000), "C\n");
}

TEST_F(Revoke, OnRevokeExitKillsTheProgramAndExits75) {
  TempDir dir;
  // A reuse_port member, which only the notice stops (see below).
  auto broker = Broker::start(dir, reuse_port_policy(80));
  ASSERT_TRUE(broker);
  auto worker = start_worker(*broker, "web", "A", "exit");
  ASSERT_TRUE(wait_ready(*worker)) << worker->output();
  ASSERT_EQ(cli_as(0, 0, *broker, {"revoke", "web"}).exit_code, 0);
  EXPECT_EQ(worker->wait(), 75) << worker->output();
  EXPECT_NE(worker->output().find("--on-revoke=exit"), std::string::npos) << worker->output();
}

// A reload that must replace a live socket (its address changed) revokes the
// old one: its holders are told as by a revoke.
TEST_F(Reload, ReplacingASocketStopsItsSupervisedHolders) {
  TempDir dir;
  // A reuse_port member: the broker cannot shut it down, so only the notice
  // stops its holder (a shared socket's holder may see its accept fail first).
  auto broker = Broker::start(dir, reuse_port_policy(8443));
  ASSERT_TRUE(broker);
  auto worker = start_worker(*broker, "web", "A");
  ASSERT_TRUE(wait_ready(*worker)) << worker->output();
  dir.write("policy.toml", reuse_port_policy(8444));  // a new address: a new group
  auto reloaded = cli_as(0, 0, *broker, {"reload"});
  ASSERT_EQ(reloaded.exit_code, 0) << reloaded.output;
  EXPECT_EQ(worker->wait(), kStoppedForRevoke) << worker->output();
  EXPECT_NE(worker->output().find("revoked \"web\""), std::string::npos) << worker->output();
}

// A member its holder closes leaves the group at once, though the holder
// lives on: no connection is hashed to a socket nobody accepts on.
TEST_F(ReusePort, AMemberItsHolderClosesLeavesTheGroupAtOnce) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80));
  ASSERT_TRUE(broker);
  auto worker = start_worker(*broker, "web", "A");
  ASSERT_TRUE(wait_ready(*worker)) << worker->output();
  int to_parent[2];
  ASSERT_EQ(::pipe2(to_parent, O_CLOEXEC), 0);
  int from_parent[2];
  ASSERT_EQ(::pipe2(from_parent, O_CLOEXEC), 0);
  std::thread holder([&] {
    (void)sbtest::run_as_nobody([&](int) {
      for (int i = 0; i < 3; ++i) {
        auto grant = sockbroker::acquire("web", broker->control());
        if (!grant) return 1;
      }  // each closed at once; this process lives on
      char byte = 'h';
      (void)!::write(to_parent[1], &byte, 1);
      (void)!::read(from_parent[0], &byte, 1);
      return 0;
    });
  });
  char byte = 0;
  ASSERT_EQ(::read(to_parent[0], &byte, 1), 1);
  // The broker drops its own copy of a member just after sending it, which
  // may be a moment after the holder closed its own: until then the member
  // still listens. What is checked is that it then leaves the group, with
  // the holder alive: one listener left, A's.
  EXPECT_TRUE(sbtest::wait_until([] { return tcp_states_on(80)[0x0A] == 1; }, std::chrono::seconds(2)))
      << tcp_states_on(80)[0x0A] << " listeners on port 80";
  int answered = 0;
  std::string others;
  for (int i = 0; i < 40; ++i) {
    const std::string got = sbtest::tcp_exchange(80, "", 1000);
    if (got == "A\n") {
      ++answered;
    } else {
      others += "[" + got + "] ";
    }
  }
  (void)!::write(from_parent[1], &byte, 1);
  holder.join();
  for (int fd : {to_parent[0], to_parent[1], from_parent[0], from_parent[1]}) ::close(fd);
  EXPECT_EQ(answered, 40) << "connections hashed to a closed member hung or were refused: " << others;
}

// max_grants and max_grants_per_client count members that still exist: a
// process that takes and closes members one after the other is never refused.
TEST_F(Quota, MembersClosedByALiveHolderStopCounting) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80).set("max_grants", "2").broker("max_grants_per_client", "3"));
  ASSERT_TRUE(broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    std::vector<sockbroker::Grant> held;
    for (int i = 0; i < 300; ++i) {
      auto grant = client->acquire("web");
      if (!grant) {
        sbtest::report(report_fd, "grant " + std::to_string(i) + ": " + grant.error().message);
        return 2;
      }
    }  // each closed at once
    for (int i = 0; i < 2; ++i) {
      auto grant = client->acquire("web");
      if (!grant) return 3;
      held.push_back(std::move(*grant));
    }
    auto third = client->acquire("web");  // two held: max_grants says no
    if (third) return 4;
    sbtest::report(report_fd, third.error().message);
    return third.error().code == SOCKBROKER_E_QUOTA ? 0 : 5;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  EXPECT_NE(child.output.find("max_grants"), std::string::npos) << child.output;
}

TEST_F(AdminList, ShowsStateHoldersAndGrantsToAdministratorsOnly) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80).set("max_grants", "4").socket("admin", "127.0.0.1:443"));
  ASSERT_TRUE(broker);
  auto worker = start_worker(*broker, "web", "A");
  ASSERT_TRUE(wait_ready(*worker));
  ASSERT_TRUE(acquire_and_report(*broker, "web").granted);  // a second grant, whose holder exits

  auto admin = cli_as(0, 0, *broker, {"list", "--json"});
  ASSERT_EQ(admin.exit_code, 0) << admin.output;
  auto view = nlohmann::json::parse(admin.output);
  EXPECT_EQ(view["admin"], true);
  ASSERT_EQ(view["sockets"].size(), 2u);
  const auto& web = view["sockets"][1];
  EXPECT_EQ(web["name"], "web");
  EXPECT_EQ(web["state"], "bound");
  EXPECT_EQ(web["reuse_port"], true);
  EXPECT_EQ(web["max_grants"], 4);
  EXPECT_EQ(web["grants_total"], 2);
  // The exited holder's lease may take a moment to be released.
  EXPECT_TRUE(sbtest::wait_until([&] {
    view = nlohmann::json::parse(cli_as(0, 0, *broker, {"list", "--json"}).output);
    return view["sockets"][1]["holders"] == 1;
  })) << view.dump();
  EXPECT_EQ(view["sockets"][1]["holders"], 1);

  auto mine = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"list", "--json"});
  auto user_view = nlohmann::json::parse(mine.output);
  EXPECT_EQ(user_view["admin"], false);
  ASSERT_EQ(user_view["sockets"].size(), 1u);
  EXPECT_FALSE(user_view["sockets"][0].contains("holders"));

  auto table = cli_as(0, 0, *broker, {"list"});
  EXPECT_NE(table.output.find("HOLDERS"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("reuse_port group"), std::string::npos) << table.output;
}

// `list --holders`: which processes hold each socket, to administrators only.
TEST_F(AdminList, HoldersNamesTheProcessesHoldingEachSocket) {
  TempDir dir;
  auto broker = Broker::start(dir, reuse_port_policy(80).socket("admin", "127.0.0.1:443"));
  ASSERT_TRUE(broker);
  auto worker = start_worker(*broker, "web", "A");
  ASSERT_TRUE(wait_ready(*worker));

  auto admin = cli_as(0, 0, *broker, {"list", "--holders", "--json"});
  ASSERT_EQ(admin.exit_code, 0) << admin.output;
  auto view = nlohmann::json::parse(admin.output);
  ASSERT_EQ(view["sockets"].size(), 2u);
  const auto& idle = view["sockets"][0];
  EXPECT_EQ(idle["name"], "admin");
  EXPECT_TRUE(idle["holder_processes"].empty()) << idle.dump();
  const auto& web = view["sockets"][1];
  ASSERT_EQ(web["holder_processes"].size(), 1u) << web.dump();
  const auto& holder = web["holder_processes"][0];
  // The process that asked: `sockbroker run`, the worker's supervisor.
  EXPECT_EQ(holder["pid"], worker->pid());
  EXPECT_EQ(holder["uid"], sbtest::kNobody);

  auto table = cli_as(0, 0, *broker, {"list", "--holders"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("held by pid " + std::to_string(worker->pid()) + " (uid 65534"), std::string::npos)
      << table.output;

  auto refused = cli_as(sbtest::kNobody, sbtest::kNogroup, *broker, {"list", "--holders"});
  EXPECT_EQ(refused.exit_code, 77) << refused.output;
  EXPECT_NE(refused.output.find("administrators only"), std::string::npos) << refused.output;
}

}  // namespace
