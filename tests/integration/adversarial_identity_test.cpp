// Hostile identities and addresses: connections handed to another uid, pids
// recycled, reuse_port groups another tenant would join, policies that would
// make the broker bind the wrong thing, and the listing's cursor.
#include "adversarial.hpp"
#include "kernel_features.hpp"
#include "policy_builder.hpp"

namespace {

using namespace sbadv;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

// ---------------------------------------------------------------------------
// Identity: connect time is what counts


// Connects as one uid and passes the connection over `pair` to a process of
// another uid, which asks for daemon_only on it. Returns what the receiver
// reported and the connector's pid.
struct Handover {
  sbtest::ChildResult receiver;
  pid_t connector_pid;
};
Handover hand_over(const Broker& broker, uid_t from_uid, gid_t from_gid, uid_t to_uid, gid_t to_gid) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) std::abort();
  UniqueFd near(pair[0]), far(pair[1]);
  Pipe release;
  Child connector(from_uid, from_gid, [&](int) {
    UniqueFd conn = connect_control(broker.control());
    const std::byte one[1] = {std::byte{1}};
    if (!conn || send_raw(near.get(), one, {conn.get()}) != 0) return 1;
    conn.reset();
    return await(release) ? 0 : 2;  // alive until the receiver is done
  });
  Child receiver(to_uid, to_gid, [&](int report_fd) {
    UniqueFd conn = receive_fd(far.get());
    if (!conn) return 1;
    if (send_raw(conn.get(), acquire_request("daemon_only")) != 0) return 2;
    Incoming in = receive(conn.get());
    sbtest::report(report_fd, describe(in));
    return is_grant(in) ? 0 : 3;
  });
  Handover out{receiver.wait(), connector.pid()};
  notify(release);
  (void)connector.wait();
  return out;
}

// A connection handed to another process carries its connector's identity
// (SO_PEERCRED is read at connect time), so the broker answers requests only
// from the connector itself (SCM_CREDENTIALS names each request's sender):
// one uid cannot lend another its rights by passing a connection (security
// review, round 2, items 3 and 6).
TEST_F(Adversarial, HandedOverConnectionServesNoOneButItsConnector) {
  TempDir dir;
  auto broker = Broker::start(dir, with_daemon_only(policy()));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);

  // daemon connects, nobody asks: refused, though daemon would be granted.
  auto lent = hand_over(*broker, kDaemon, kDaemonGroup, sbtest::kNobody, sbtest::kNogroup);
  EXPECT_EQ(lent.receiver.exit_code, 3) << lent.receiver.output;
  EXPECT_NE(lent.receiver.output.find("not from the process that connected (pid " + std::to_string(lent.connector_pid)),
            std::string::npos)
      << lent.receiver.output;

  // nobody connects, daemon asks: refused too.
  auto borrowed = hand_over(*broker, sbtest::kNobody, sbtest::kNogroup, kDaemon, kDaemonGroup);
  EXPECT_EQ(borrowed.receiver.exit_code, 3) << borrowed.receiver.output;
  EXPECT_NE(borrowed.receiver.output.find("failure denied"), std::string::npos) << borrowed.receiver.output;

  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  auto denials = broker->wait_for_events("deny", 2);
  ASSERT_EQ(denials.size(), 2u);
  EXPECT_EQ(denials[0]["reason"], "not_the_connector");
  EXPECT_EQ(denials[0]["peer"]["uid"], kDaemon);
  EXPECT_EQ(denials[0]["peer"]["pid"], lent.connector_pid);
  EXPECT_EQ(denials[1]["peer"]["uid"], sbtest::kNobody);
  EXPECT_EQ(denials[1]["peer"]["pid"], borrowed.connector_pid);
  EXPECT_EQ(wait_for_holders(*broker, "daemon_only", 0), 0u);
  expect_still_serving(*broker, baseline);
}

// clone3 with set_tid: a child with exactly the pid `wanted` (root may choose
// pids, as CRIU does), running as uid/gid 65534 like the connector it
// succeeds. It writes a byte to `ready` once it is, waits for a byte on
// `hold` and exits; it runs no library code that might trust state copied
// from the parent.
pid_t fork_with_pid(pid_t wanted, int ready, int hold) {
  struct {
    std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
  } args{};
  pid_t tids[1] = {wanted};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<std::uintptr_t>(tids);
  args.set_tid_size = 1;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    if (::syscall(SYS_setresgid, sbtest::kNogroup, sbtest::kNogroup, sbtest::kNogroup) != 0 ||
        ::syscall(SYS_setresuid, sbtest::kNobody, sbtest::kNobody, sbtest::kNobody) != 0) {
      ::syscall(SYS_exit_group, 1);
    }
    char byte = 1;
    (void)!::write(ready, &byte, 1);
    (void)!::read(hold, &byte, 1);
    ::syscall(SYS_exit_group, 0);
  }
  return static_cast<pid_t>(pid);
}

TEST_F(Adversarial, ConnectionWhoseCreatorExitedBeforeAcceptGetsNoExecutable) {
  TempDir dir;
  // Children forked from this test run its binary: the rule a live child meets.
  std::string self = fs::read_symlink("/proc/self/exe").string();
  auto broker = Broker::start(dir, policy()
                                       .socket("exe_only", "127.0.0.1:21082")
                                       .allow({{"executable", self}})
                                       .socket("user_ok", "127.0.0.1:21083")
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  ASSERT_TRUE(sbtest::grants(*broker, "exe_only")) << "a live process running " << self << " qualifies";

  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd near(pair[0]), far(pair[1]);
  Pipe hold;
  Child survivor(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    UniqueFd conn = receive_fd(far.get());
    if (!conn) return 1;
    for (const char* name : {"exe_only", "user_ok"}) {
      if (send_raw(conn.get(), acquire_request(name)) != 0) return 2;
      Incoming in = receive(conn.get(), 10000);
      sbtest::report(report_fd, std::string(name) + ": " + describe(in));
    }
    return 0;
  });
  pid_t creator_pid = -1;
  pid_t successor = -1;
  int successor_errno = 0;
  {
    // The broker reads identity at accept time: make that after the creator is gone.
    PausedBroker paused(*broker);
    Child creator(sbtest::kNobody, sbtest::kNogroup, [&](int) {
      UniqueFd conn = connect_control(broker->control());
      const std::byte one[1] = {std::byte{1}};
      return conn && send_raw(near.get(), one, {conn.get()}) == 0 ? 0 : 1;
    });
    creator_pid = creator.pid();
    ASSERT_EQ(creator.wait().exit_code, 0);
    // Its pid recycled by a process that runs the very executable the rule
    // names: /proc/PID now describes the successor, which must not count.
    // (Linux 6.18 hands out SO_PEERPIDFD even for a reaped peer, so what
    // refuses it is the broker's check that the pidfd's process still lives.)
    Pipe successor_ready;
    successor = fork_with_pid(creator_pid, successor_ready.write.get(), hold.read.get());
    if (successor < 0) successor_errno = errno;
    // Not before it runs as 65534: the broker would read a root process.
    if (successor > 0) {
      EXPECT_TRUE(await(successor_ready, 10000));
    }
    paused.resume();
  }
  auto result = survivor.wait();
  notify(hold);
  int successor_status = 0;
  if (successor > 0) ::waitpid(successor, &successor_status, 0);
  EXPECT_EQ(successor_status, 0) << "the successor could not become uid 65534";
  if (successor < 0) {
    std::cerr << "note: could not recycle pid " << creator_pid << ": " << std::strerror(successor_errno) << "\n";
  } else {
    EXPECT_EQ(successor, creator_pid);
  }
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("exe_only: failure denied"), std::string::npos) << result.output;
  // The survivor is not the connector: nothing is granted to it on that
  // connection (HandedOverConnectionServesNoOneButItsConnector).
  EXPECT_NE(result.output.find("user_ok: failure denied"), std::string::npos) << result.output;
  auto denials = broker->wait_for_events("deny", 2);
  ASSERT_EQ(denials.size(), 2u);
  EXPECT_EQ(denials[1]["socket"], "user_ok");
  EXPECT_EQ(denials[1]["reason"], "not_the_connector");
  EXPECT_EQ(denials[0]["socket"], "exe_only");
  EXPECT_EQ(denials[0]["peer"]["pid"], creator_pid);
  if (successor > 0 && sbtest::brokers_find_callers_by_pid()) {
    // Without SO_PEERPIDFD the broker takes a successor of the same uid and
    // gid, found on the pid before the accept, for the connector (README,
    // kernel features): it reads the successor's executable, which the rule
    // names. What still refuses the grant is that the request came from
    // another process than the one on that pid.
    EXPECT_EQ(denials[0]["reason"], "not_the_connector") << denials[0].dump();
    EXPECT_EQ(denials[0]["peer"]["exe"], self) << denials[0].dump();
  } else {
    EXPECT_EQ(denials[0]["reason"], "no_rule_matched") << denials[0].dump();
    EXPECT_TRUE(denials[0]["peer"]["exe"].is_null()) << denials[0].dump();
    EXPECT_TRUE(denials[0]["peer"]["unit"].is_null()) << denials[0].dump();
  }
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Reuseport groups: nobody else may join or steer them


TEST_F(Adversarial, SecondTenantCannotJoinTheReusePortGroup) {
  TempDir dir;
  constexpr std::uint16_t kPort = 21090;
  auto broker = Broker::start(dir, with_reuse_port_group(policy(), kPort));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe holding, release;
  Child worker(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto member = sockbroker::acquire("group", broker->control());
    if (!member) {
      sbtest::report(report_fd, member.error().message);
      return 1;
    }
    notify(holding);
    return await(release) ? 0 : 2;
  });
  ASSERT_TRUE(await(holding));
  // Members belong to root (the broker made them), so not even the worker's
  // own uid may add one, with or without SO_REUSEADDR, wildcard or specific.
  for (uid_t intruder : {kDaemon, sbtest::kNobody}) {
    auto attempt = sbtest::run_as(intruder, intruder == kDaemon ? kDaemonGroup : sbtest::kNogroup, [&](int report_fd) {
      for (in_addr_t address : {INADDR_ANY, INADDR_LOOPBACK}) {
        int err = sbtest::bind_tcp(address, kPort, {.addr = true, .port = true});
        sbtest::report(report_fd, std::strerror(err));
        if (err != EADDRINUSE) return 1;
      }
      return 0;
    });
    EXPECT_EQ(attempt.exit_code, 0) << "uid " << intruder << ": " << attempt.output;
  }
  notify(release);
  EXPECT_EQ(worker.wait().exit_code, 0);
  EXPECT_EQ(wait_for_holders(*broker, "group", 0), 0u);
  expect_still_serving(*broker, baseline + sbtest::kSpareMember);
}

TEST_F(Adversarial, AttachReusePortBpfIsRefusedUnderLockdown) {
  TempDir dir;
  constexpr std::uint16_t kPort = 21091;
  auto broker = Broker::start(dir, with_reuse_port_group(policy(), kPort));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // "Always the first member": one worker steering every connection to itself.
  sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  sock_fprog program{1, code};
  auto attach = [&](bool locked_down) {
    return sbtest::run_as_nobody([&](int report_fd) {
      auto member = sockbroker::acquire("group", broker->control());
      if (!member) return 1;
      if (locked_down && !sockbroker::lockdown()) return 2;
      if (::setsockopt(member->fd.get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof program) == 0) {
        sbtest::report(report_fd, "cbpf attached");
        return 0;
      }
      sbtest::report(report_fd, std::string("cbpf: ") + std::strerror(errno));
      int bpf_fd = -1;  // refused before the kernel looks at the program
      if (::setsockopt(member->fd.get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &bpf_fd, sizeof bpf_fd) == 0 ||
          errno != EPERM) {
        sbtest::report(report_fd, std::string("ebpf: ") + std::strerror(errno));
        return 3;
      }
      return 4;
    });
  };
  // Without the filter the kernel lets any holder steer the group: that is
  // why the lockdown must refuse it.
  auto open = attach(false);
  EXPECT_EQ(open.exit_code, 0) << open.output;
  auto locked = attach(true);
  EXPECT_EQ(locked.exit_code, 4) << locked.output;
  EXPECT_NE(locked.output.find(std::string("cbpf: ") + std::strerror(EPERM)), std::string::npos) << locked.output;
  EXPECT_EQ(wait_for_holders(*broker, "group", 0), 0u);
  expect_still_serving(*broker, baseline + sbtest::kSpareMember);
}

// ---------------------------------------------------------------------------
// Policies that would let the broker be tricked into the wrong bind

TEST_F(Adversarial, DualStackWildcardConflictsWithIpv4WildcardAndTheBrokerRefusesToStart) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // [::]:P with v6only = false takes 0.0.0.0:P too; in either order, both
  // positions are named (file:line:column of each listen). Written out, as
  // the lines checked are the text's.
  const std::string v6 = "[socket.v6]\nlisten = \"[::]:21100\"\nv6only = false\n";
  const std::string v4 = "[socket.v4]\nlisten = \"0.0.0.0:21100\"\n";
  for (const auto& [name, text, first_line, second_line] :
       {std::tuple{"v6first.toml", v6 + "\n" + v4, 2, 6}, std::tuple{"v4first.toml", v4 + "\n" + v6, 2, 5}}) {
    dir.write(name, text);
    std::string output;
    int code = sbtest::run_broker_to_exit(dir, {"--policy", dir.file(name), "--control", dir.file("other.sock")}, &output);
    EXPECT_EQ(code, 78) << output;
    EXPECT_NE(output.find(dir.file(name) + ":" + std::to_string(first_line) + ":"), std::string::npos) << output;
    EXPECT_NE(output.find(dir.file(name) + ":" + std::to_string(second_line) + ":"), std::string::npos) << output;
    EXPECT_NE(output.find("conflicts"), std::string::npos) << output;
  }
  // With v6only = true they are separate sockets, and both bind.
  TempDir other;
  auto separate = Broker::start(
      other, sbtest::PolicyBuilder().socket("v6", "[::]:21100").set("v6only", "true").socket("v4", "0.0.0.0:21100"));
  ASSERT_TRUE(separate);
  EXPECT_EQ(separate->wait_for_events("bind", 2).size(), 2u);
  EXPECT_TRUE(separate->wait_for_events("bind_failed", 0).empty());
  separate->stop();
  // The refused starts did not disturb the broker already running.
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, SquattedAbstractNameIsBindFailedAndTheOthersServe) {
  std::string name = "sockbroker-adversarial-" + std::to_string(::getpid());
  UniqueFd squatter(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sbtest::AbstractAddress address = sbtest::abstract_address(name);
  ASSERT_EQ(::bind(squatter.get(), address.get(), address.length), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(squatter.get(), 4), 0);

  TempDir dir;
  auto broker =
      Broker::start(dir, policy().socket("abstract", "@" + name).set("allow_abstract", "true").allow_user("nobody"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto failed = broker->wait_for_events("bind_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["socket"], "abstract");
  auto refused = sbtest::acquire_as_nobody(*broker, "abstract");
  EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
  // The squatter still owns its name: nothing was taken from it.
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(probe.get(), address.get(), address.length), 0);
  UniqueFd accepted(::accept4(squatter.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted);
  probe.reset();
  accepted.reset();
  // Once the squatter is gone, an administrator's revoke binds it afresh.
  squatter.reset();
  {
    auto admin = sockbroker::Client::connect(broker->control());
    ASSERT_TRUE(admin);
    auto outcome = admin->revoke("abstract");
    ASSERT_TRUE(outcome) << outcome.error().message;
    EXPECT_TRUE(outcome->ok) << outcome->message;
  }
  EXPECT_TRUE(sbtest::grants(*broker, "abstract"));
  const int rebound = baseline + 1;  // the broker now holds the abstract socket
  expect_still_serving(*broker, rebound);
}

TEST_F(Adversarial, SymlinkedUnixSocketPathIsBindFailedAndLeftAlone) {
  TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("run").c_str(), 0755), 0);
  dir.write("precious", "do not touch\n");
  ASSERT_EQ(::symlink(dir.file("precious").c_str(), dir.file("run/app.sock").c_str()), 0);
  ASSERT_EQ(::symlink(dir.file("victim.sock").c_str(), dir.file("run/dangling.sock").c_str()), 0);
  auto broker = Broker::start(dir, policy()
                                       .socket("app", dir.file("run/app.sock"))
                                       .allow_user("nobody")
                                       .socket("dangling", dir.file("run/dangling.sock"))
                                       .allow_user("nobody"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto failed = broker->wait_for_events("bind_failed", 2);
  ASSERT_EQ(failed.size(), 2u);
  for (const auto& event : failed) {
    EXPECT_NE(event["error"].get<std::string>().find("symbolic link"), std::string::npos) << event.dump();
  }
  // Both links, their targets and the directory are as they were.
  EXPECT_EQ(fs::read_symlink(dir.file("run/app.sock")).string(), dir.file("precious"));
  EXPECT_EQ(fs::read_symlink(dir.file("run/dangling.sock")).string(), dir.file("victim.sock"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir.file("victim.sock"))));
  EXPECT_EQ(sbtest::read_file(dir.file("precious")), "do not touch\n");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir.file("precious"))));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.file("run"))) ++entries;
  EXPECT_EQ(entries, 2u) << "a leftover private directory or socket in run/";
  auto refused = sbtest::acquire_as_nobody(*broker, "app");
  EXPECT_EQ(refused.code, SOCKBROKER_E_BIND) << refused.message;
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Listing

TEST_F(Adversarial, ListCursorBeyondTheEndIsAnEmptyLastPage) {
  TempDir dir;
  auto broker = Broker::start(dir, with_daemon_only(policy()));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd conn = connect_control(broker->control());
  auto all = list_page(conn.get(), 0);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->entries.size(), 2u);
  EXPECT_EQ(all->next_cursor, 0u);
  for (std::uint32_t cursor : {2U, 3U, 1000U, 0x7fffffffU, 0xffffffffU}) {
    auto page = list_page(conn.get(), cursor);
    ASSERT_TRUE(page) << cursor;
    EXPECT_TRUE(page->entries.empty()) << cursor;
    EXPECT_EQ(page->next_cursor, 0u) << cursor;
  }
  // The same connection still works: such a cursor is odd, not malformed.
  auto again = list_page(conn.get(), 1);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->entries.size(), 1u);
  EXPECT_EQ(again->entries[0].name, "web");
  conn.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ListPaginationOver300SocketsReturnsEveryEntryInOrder) {
  TempDir dir;
  constexpr int kSockets = 300;
  sbtest::PolicyBuilder built = policy();
  std::vector<std::string> expected;
  for (int i = 0; i < kSockets; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "s%03d", i);
    expected.emplace_back(name);
    built.socket(name, "127.0.0.1:" + std::to_string(20000 + i)).set_string("type", "stream").allow_user("nobody");
  }
  expected.emplace_back("web");  // entries come in name order
  auto broker = Broker::start(dir, built);
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);

  // The administrator's view, page by page.
  UniqueFd conn = connect_control(broker->control());
  std::vector<std::string> seen;
  int pages = 0;
  for (std::uint32_t cursor = 0;;) {
    std::size_t wire = 0;
    auto page = list_page(conn.get(), cursor, &wire);
    ASSERT_TRUE(page);
    ++pages;
    EXPECT_LE(wire, proto::kMaxDatagram);
    EXPECT_FALSE(page->entries.empty()) << "an empty page before the end, cursor " << cursor;
    for (const auto& entry : page->entries) {
      seen.push_back(entry.name);
      EXPECT_EQ(entry.state, "bound") << entry.name << ": " << entry.detail;
    }
    if (page->next_cursor == 0) break;
    ASSERT_GT(page->next_cursor, cursor) << "the cursor must advance";
    cursor = page->next_cursor;
    ASSERT_LT(pages, 100);
  }
  conn.reset();
  EXPECT_GT(pages, 1);
  EXPECT_EQ(seen, expected);

  // A client's view, through the library's own paging.
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    auto list = sockbroker::Client::connect(broker->control())->list();
    if (!list) return 1;
    for (const auto& s : list->sockets) sbtest::report(report_fd, s.name);
    return list->admin_view ? 2 : 0;
  });
  EXPECT_EQ(child.exit_code, 0);
  std::string joined;
  for (const auto& name : expected) joined += name + "\n";
  EXPECT_EQ(child.output, joined);
  expect_still_serving(*broker, baseline);
}

}  // namespace
