// Hostile connections over time: idle ones, ones that never read, exit
// mid-request or keep sending; floods of connections, requests and reloads;
// descriptor exhaustion. The broker serves everyone else throughout.
#include "adversarial.hpp"

namespace {

using namespace sbadv;
// Every test here: root (or a skip), then this process's private network
// namespace (sbtest::BrokerTest).
using Adversarial = sbtest::BrokerTest;

// ---------------------------------------------------------------------------
// Connections that misbehave over time

TEST_F(Adversarial, IdleClientIsDroppedAtRequestTimeout) {
  TempDir dir;
  auto broker = Broker::start(dir, policy().broker("request_timeout_ms", "200"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto connected = Clock::now();
  UniqueFd idle = connect_control(broker->control());
  UniqueFd asked_once = connect_control(broker->control());
  ASSERT_TRUE(idle && asked_once);
  ASSERT_TRUE(list_page(asked_once.get(), 0));  // active once, then idle
  EXPECT_TRUE(sbtest::grants(*broker, "web")) << "served while the idle ones wait";
  Incoming end = receive(idle.get(), 3000);
  auto waited = Clock::now() - connected;
  EXPECT_EQ(end.size, 0) << describe(end);
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::milliseconds(2500));
  Incoming end_too = receive(asked_once.get(), 3000);
  EXPECT_EQ(end_too.size, 0) << describe(end_too);
  idle.reset();
  asked_once.reset();
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, TenThousandConnectionsFromOneUidAreCappedAndOthersStillServed) {
  TempDir dir;
  auto broker = Broker::start(dir, policy().broker("max_clients_per_uid", "64").broker("request_timeout_ms", "30000"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  constexpr int kTotal = 10000;
  constexpr int kAllowed = 64;
  Pipe holding, flood, flooded, release;
  Child attacker(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    // The first 64 are admitted: each gets its listing, and stays open.
    std::vector<UniqueFd> held;
    for (int i = 0; i < kAllowed; ++i) {
      UniqueFd conn = connect_control(broker->control());
      if (!conn || send_raw(conn.get(), list_request(0)) != 0) return 1;
      Incoming in = receive(conn.get());
      auto reply = reply_of(in);
      if (!reply || !std::holds_alternative<proto::Listing>(*reply)) {
        sbtest::report(report_fd, "connection " + std::to_string(i) + ": " + describe(in));
        return 2;
      }
      held.push_back(std::move(conn));
    }
    notify(holding);
    if (!await(flood)) return 3;
    // The rest, in batches that are open at once: each is refused with a
    // quota failure naming the limit, then hung up on.
    int refused = 0;
    for (int done = kAllowed; done < kTotal;) {
      int n = std::min(250, kTotal - done);
      std::vector<UniqueFd> batch;
      for (int i = 0; i < n; ++i) batch.push_back(connect_control(broker->control()));
      for (auto& conn : batch) {
        Incoming in = receive(conn.get());
        if (!conn || !is_failure(in, proto::ErrorCode::quota, "max_clients_per_uid") || receive(conn.get()).size != 0) {
          sbtest::report(report_fd, "expected a refusal, got " + describe(in));
          return 4;
        }
        ++refused;
      }
      done += n;
    }
    sbtest::report(report_fd, "refused " + std::to_string(refused));
    notify(flooded);
    return await(release) ? 0 : 5;
  });
  ASSERT_TRUE(await(holding));
  EXPECT_TRUE(sbtest::grants(*broker, "web", kDaemon, kDaemonGroup)) << "another uid while 64 are held";
  notify(flood);
  // Served during the flood, too.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(sbtest::grants(*broker, "web", kDaemon, kDaemonGroup));
  ASSERT_TRUE(await(flooded, 60000));
  EXPECT_TRUE(sbtest::grants(*broker, "web", kDaemon, kDaemonGroup));
  // Each admitted connection costs two descriptors: it and its pidfd.
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 2 * kAllowed), baseline + 2 * kAllowed) << broker->fd_listing();
  notify(release);
  auto result = attacker.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("refused " + std::to_string(kTotal - kAllowed)), std::string::npos) << result.output;
  // Every refusal is accounted for in the trail: as its own deny event, or
  // (past the uid's audit rate limit, audit_rate_limit.hpp) in the count of a
  // suppressed event, due at the end of its window.
  std::size_t limits = 0, suppressed = 0;
  EXPECT_TRUE(sbtest::wait_until(
      [&] {
        limits = suppressed = 0;
        for (const auto& e : broker->audit_events()) {
          if (e.value("event", "") == "deny" && e.value("reason", "") == "limit") ++limits;
          if (e.value("event", "") == "suppressed" && e["uid"] == sbtest::kNobody) suppressed += e["count"].get<std::size_t>();
        }
        return limits + suppressed == static_cast<std::size_t>(kTotal - kAllowed);
      },
      std::chrono::seconds(15), std::chrono::milliseconds(100)));
  EXPECT_EQ(limits + suppressed, static_cast<std::size_t>(kTotal - kAllowed)) << limits << " + " << suppressed;
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ClientThatNeverReadsCostsOneReplyAndOthersAreServed) {
  TempDir dir;
  // The grant lines count what the broker has answered at each moment: each
  // must be in the file when its reply is sent, not a batch later.
  auto broker = Broker::start(dir, policy().broker("request_timeout_ms", "20000"), {"--audit-flush-ms", "0"});
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe stalled, read_now;
  Child greedy(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    UniqueFd conn = connect_control(broker->control());
    Bytes request = acquire_request("web");
    int sent = 0;
    // Send until the socket takes no more for a while: the broker has stopped reading.
    while (sent < 100000) {
      if (send_raw(conn.get(), request, {}, MSG_DONTWAIT) == 0) {
        ++sent;
        continue;
      }
      // A broker that takes nothing for a second has stopped reading us.
      pollfd room{conn.get(), POLLOUT, 0};
      if (::poll(&room, 1, 1000) != 1) break;
    }
    (void)!::write(stalled.write.get(), &sent, sizeof sent);
    if (!await(read_now)) return 1;
    // Nothing was dropped: every request is answered, in order, once read.
    for (int i = 0; i < sent; ++i) {
      Incoming in = receive(conn.get());
      if (!is_grant(in)) {
        sbtest::report(report_fd, "reply " + std::to_string(i) + " of " + std::to_string(sent) + ": " + describe(in));
        return 2;
      }
    }
    return 0;
  });
  int sent = 0;
  pollfd p{stalled.read.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1);
  ASSERT_EQ(::read(stalled.read.get(), &sent, sizeof sent), static_cast<ssize_t>(sizeof sent));
  // The broker answers until the client's unread replies fill its socket,
  // keeps one reply pending and stops reading: the grants stop short of
  // what was sent and stay there.
  auto grants = [&] { return broker->wait_for_events("grant", 0).size(); };
  std::size_t answered = grants();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(grants(), answered) << "still reading a session whose replies pile up";
  EXPECT_LT(answered, static_cast<std::size_t>(sent));
  // One session (connection, pidfd) and one holder pidfd: a pending reply
  // carries the shared socket, not a copy of it.
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 3), baseline + 3) << broker->fd_listing();
  EXPECT_TRUE(sbtest::grants(*broker, "web")) << "served while one client sits on its replies";
  notify(read_now);
  auto result = greedy.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(grants(), static_cast<std::size_t>(sent) + 1);  // and the other client's
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ClientThatNeverReadsIsDroppedAtRequestTimeout) {
  TempDir dir;
  auto broker = Broker::start(dir, policy().broker("request_timeout_ms", "300"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe stalled, done;
  Child greedy(sbtest::kNobody, sbtest::kNogroup, [&](int) {
    UniqueFd conn = connect_control(broker->control());
    Bytes request = acquire_request("web");
    for (int i = 0; i < 100000;) {
      if (send_raw(conn.get(), request, {}, MSG_DONTWAIT) == 0) {
        ++i;
        continue;
      }
      pollfd room{conn.get(), POLLOUT, 0};
      if (::poll(&room, 1, 100) != 1) break;
    }
    notify(stalled);
    return await(done) ? 0 : 1;
  });
  ASSERT_TRUE(await(stalled));
  // The session goes at the timeout although its process lives on. The
  // holder's pidfd stays: the broker granted it sockets, read or not.
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 1), baseline + 1) << broker->fd_listing();
  notify(done);
  EXPECT_EQ(greedy.wait().exit_code, 0);
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ClientExitingMidRequestLeavesNoLease) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  {
    // Deterministic: the broker reads the requests only after the client has
    // exited and been reaped, and grants to a process that is gone.
    PausedBroker paused(*broker);
    Child quitter(sbtest::kNobody, sbtest::kNogroup, [&](int) {
      UniqueFd conn = connect_control(broker->control());
      for (int i = 0; i < 3; ++i) (void)send_raw(conn.get(), acquire_request("web"));
      return 0;
    });
    EXPECT_EQ(quitter.wait().exit_code, 0);
    paused.resume();
  }
  // A grant leased to a process that is gone would stop counting at once
  // while whoever holds the connection keeps the socket (security review,
  // round 2, item 6): the broker refuses it instead.
  auto gone = broker->wait_for_events("deny");
  ASSERT_GE(gone.size(), 1u);
  EXPECT_EQ(gone[0]["reason"], "requester_gone") << gone[0].dump();
  EXPECT_TRUE(broker->wait_for_events("grant", 0).empty());
  // Racy on purpose: exits at every point of the exchange.
  for (int i = 0; i < 20; ++i) {
    auto quitter = sbtest::run_as_nobody([&](int) {
      UniqueFd conn = connect_control(broker->control());
      (void)send_raw(conn.get(), acquire_request("web"));
      if (i % 2 == 0) {
        Pipe pipe;
        (void)send_raw(conn.get(), acquire_request("web"), {pipe.read.get()});
      }
      return 0;
    });
    EXPECT_EQ(quitter.exit_code, 0);
  }
  EXPECT_EQ(wait_for_holders(*broker, "web", 0), 0u);
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, ReplyStaysReadableWhenTheClientKeepsSendingAfterABadRequest) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd conn = connect_control(broker->control());
  {
    // All queued before the broker reads the first: a bad request, then more.
    PausedBroker paused(*broker);
    ASSERT_EQ(send_raw(conn.get(), Bytes(16, std::byte{0x42})), 0);
    for (int i = 0; i < 10; ++i) ASSERT_EQ(send_raw(conn.get(), list_request(0)), 0);
    paused.resume();
  }
  // Read only once the broker has closed its end. Closing a socket with
  // unread datagrams would reset us (ECONNRESET): the broker discards them first.
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
  EXPECT_TRUE(rejected_then_hung_up(conn.get(), "more than one segment"));
  // And after it hung up, sending fails instead of reaching anyone.
  EXPECT_EQ(send_raw(conn.get(), list_request(0)), EPIPE);
  conn.reset();
  expect_still_serving(*broker, baseline);
}

// Found by this suite: before hanging up on a misbehaving client the broker
// discarded at most 64 unread datagrams, but a client may queue several
// hundred (its send buffer bounds a connected SOCK_SEQPACKET socket). Closing
// with the rest unread resets the client, whose next recv() then returns
// ECONNRESET ahead of the failure reply. The broker now drains the queue.
TEST_F(Adversarial, ReplyStaysReadableAfterHundredsOfDatagramsFollowABadRequest) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd conn = connect_control(broker->control());
  int queued = 0;
  {
    PausedBroker paused(*broker);
    ASSERT_EQ(send_raw(conn.get(), Bytes(16, std::byte{0x42})), 0);
    while (queued < 200 && send_raw(conn.get(), list_request(0), {}, MSG_DONTWAIT) == 0) ++queued;
    paused.resume();
  }
  ASSERT_GT(queued, 64);
  EXPECT_EQ(broker->wait_for_fd_count(baseline), baseline) << broker->fd_listing();
  Incoming first = receive(conn.get());
  EXPECT_TRUE(is_failure(first, proto::ErrorCode::protocol, "more than one segment"))
      << queued << " datagrams queued; the read after it: " << describe(receive(conn.get()));
  conn.reset();
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Load

TEST_F(Adversarial, ReloadStormWhileClientsAcquire) {
  TempDir dir;
  auto broker = Broker::start(dir, with_daemon_only(policy()));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe started;
  Child clients(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    int failures = 0;
    std::string first_inode, last_inode;
    for (int i = 0; i < 300; ++i) {
      auto grant = sockbroker::acquire("web", broker->control());
      if (!grant) {
        sbtest::report(report_fd, grant.error().message);
        ++failures;
        continue;
      }
      (i == 0 ? first_inode : last_inode) = std::to_string(sbtest::inode_of(grant->fd.get()));
      if (i == 0) notify(started);
    }
    // An unchanged entry keeps its kernel socket through every reload.
    if (first_inode != last_inode) sbtest::report(report_fd, "inode " + first_inode + " became " + last_inode);
    return failures == 0 && first_inode == last_inode ? 0 : 1;
  });
  ASSERT_TRUE(await(started));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(::kill(broker->pid(), SIGHUP), 0);
  auto result = clients.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // Signals coalesce: at least one reload, none refused, the same generation
  // of sockets serving.
  EXPECT_GE(broker->wait_for_events("reload").size(), 1u);
  EXPECT_TRUE(broker->wait_for_events("reload_failed", 0).empty());
  EXPECT_TRUE(sbtest::grants(*broker, "daemon_only", kDaemon, kDaemonGroup));
  expect_still_serving(*broker, baseline);
}

TEST_F(Adversarial, TenThousandAcquiresOnOneConnectionHoldOneLease) {
  TempDir dir;
  auto broker = Broker::start(dir, policy());
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  constexpr int kRequests = 10000;
  Pipe flooded, release;
  Child flooder(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    auto client = sockbroker::Client::connect(broker->control());
    if (!client) return 1;
    for (int i = 0; i < kRequests; ++i) {
      auto grant = client->acquire("web");  // dropped (closed) at once
      if (!grant) {
        sbtest::report(report_fd, std::to_string(i) + ": " + grant.error().message);
        return 2;
      }
    }
    notify(flooded);
    return await(release) ? 0 : 3;
  });
  ASSERT_TRUE(await(flooded, 60000));
  // One process, one shared socket: one lease, however often it asks.
  auto entry = admin_entry(*broker, "web");
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->holders, 1u);
  EXPECT_EQ(entry->grants_total, static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(broker->wait_for_fd_count(baseline + 3), baseline + 3) << broker->fd_listing();  // connection, its pidfd, the holder's
  notify(release);
  auto result = flooder.wait();
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(wait_for_holders(*broker, "web", 0), 0u);
  expect_still_serving(*broker, baseline);
}

// ---------------------------------------------------------------------------
// Exhaustion: connections and descriptors

TEST_F(Adversarial, ReusePortPortHolderCannotBeTakenWithReuseAddr) {
  TempDir dir;
  constexpr std::uint16_t kPort = 21092;
  auto broker = Broker::start(dir, with_reuse_port_group(policy(), kPort));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  // With no worker the broker holds the port with a bound, non-listening
  // socket. Two SO_REUSEADDR sockets may share a port while neither listens,
  // which is why that socket never has SO_REUSEADDR: check that an intruder
  // setting it gets nowhere.
  for (uid_t intruder : {kDaemon, sbtest::kNobody}) {
    auto attempt = sbtest::run_as(intruder, intruder == kDaemon ? kDaemonGroup : sbtest::kNogroup, [&](int report_fd) {
      int taken = 0;
      for (in_addr_t address : {INADDR_ANY, INADDR_LOOPBACK}) {
        UniqueFd fd;
        if (int err = sbtest::bind_tcp(address, kPort, {.addr = true}, &fd); err != 0) {
          sbtest::report(report_fd, std::string("bind: ") + std::strerror(err));
          continue;
        }
        sbtest::report(report_fd, "bound " + std::to_string(address));
        if (::listen(fd.get(), 4) == 0) {
          sbtest::report(report_fd, "listening");
          ++taken;
        }
      }
      return taken;
    });
    EXPECT_EQ(attempt.exit_code, 0) << "uid " << intruder << ":\n" << attempt.output;
    EXPECT_EQ(attempt.output.find("bound"), std::string::npos) << "uid " << intruder << ":\n" << attempt.output;
  }
  expect_still_serving(*broker, baseline);
}

// The broker must be serving; if it is not, it has stopped reading its
// signals too, so it is killed here (the harness's SIGTERM-and-wait would hang).
void expect_serving_or_kill(const Broker& broker, int baseline) {
  bool serving = answers_within(broker, 2000);
  EXPECT_TRUE(serving) << "the broker stopped serving";
  if (!serving) {
    ::kill(broker.pid(), SIGKILL);
    return;
  }
  expect_still_serving(broker, baseline);
}

// Lowers this process's soft RLIMIT_NOFILE while the broker starts (it
// inherits it), then restores it. The hard limit stays: lowering it could not
// be undone without CAP_SYS_RESOURCE.
std::optional<Broker> start_with_descriptor_limit(const TempDir& dir, const std::string& policy_toml, rlim_t soft) {
  rlimit saved{};
  if (::getrlimit(RLIMIT_NOFILE, &saved) != 0) return std::nullopt;
  rlimit tight{std::min(soft, saved.rlim_max), saved.rlim_max};
  if (::setrlimit(RLIMIT_NOFILE, &tight) != 0) return std::nullopt;
  auto broker = Broker::start(dir, policy_toml);
  if (::setrlimit(RLIMIT_NOFILE, &saved) != 0) std::abort();  // raising the soft limit back cannot fail
  return broker;
}

// Found by this suite: accept_clients() accepted until EAGAIN, so one process
// connecting and closing in a few threads kept the loop from ever returning
// to epoll_wait, and every connected client waited for the flood to stop.
// The broker now accepts a bounded batch per wake-up.
TEST_F(Adversarial, ConnectionFloodDoesNotStarveAConnectedClient) {
  TempDir dir;
  auto broker = Broker::start(dir, policy().broker("request_timeout_ms", "30000"));
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  UniqueFd victim = connect_control(broker->control());
  ASSERT_TRUE(list_page(victim.get(), 0));
  Pipe started;
  Child attacker(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    std::atomic<long> connects{0};
    auto until = Clock::now() + std::chrono::milliseconds(1500);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        while (Clock::now() < until) {
          UniqueFd c = connect_control(broker->control());
          if (++connects == 1000) notify(started);
        }
      });
    }
    for (auto& t : threads) t.join();
    sbtest::report(report_fd, std::to_string(connects.load()) + " connections in 1.5 s");
    return 0;
  });
  ASSERT_TRUE(await(started));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto asked = Clock::now();
  ASSERT_EQ(send_raw(victim.get(), list_request(0)), 0);
  Incoming in = receive(victim.get(), 10000);
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - asked);
  auto result = attacker.wait();
  auto reply = reply_of(in);
  EXPECT_TRUE(reply && std::holds_alternative<proto::Listing>(*reply)) << describe(in);
  EXPECT_LT(waited, std::chrono::milliseconds(250)) << "a connected client waited while " << result.output;
  victim.reset();
  expect_serving_or_kill(*broker, baseline);
}

// Found by this suite: at RLIMIT_NOFILE the broker wedged. accept4 fails with
// EMFILE before it looks at the queue, so the accept-and-drop of the spare-fd
// trick got EAGAIN and the loop `continue`d into the same EMFILE forever (100%
// CPU, no session served, SIGTERM never read). Any uid allowed one socket got
// there with live holders alone, each costing the broker a pidfd. Now the
// broker drops one connection per wake-up and goes back to serving, and the
// number of holder processes is bounded (max_clients, max_clients_per_uid).
TEST_F(Adversarial, ManyLiveHoldersCannotWedgeTheBroker) {
  TempDir dir;
  // A small limit for a fast test; the broker's own check (max_clients +
  // sockets + 64 = 81) is satisfied by it.
  auto broker = start_with_descriptor_limit(dir, policy().broker("max_clients", "16").broker("max_clients_per_uid", "16"), 128);
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  Pipe forked, release;
  Child army(sbtest::kNobody, sbtest::kNogroup, [&](int report_fd) {
    Pipe answered;
    std::vector<pid_t> holders;
    int granted = 0, refused = 0;
    for (int i = 0; i < 200; ++i) {
      pid_t pid = ::fork();
      if (pid == 0) {
        // Dies with the army, and holds no write end of `release` itself.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::close(release.write.get());
        auto grant = sockbroker::acquire("web", broker->control());
        (void)!::write(answered.write.get(), grant ? "g" : "r", 1);
        char byte;
        (void)!::read(release.read.get(), &byte, 1);  // hold the grant until told
        _exit(0);
      }
      holders.push_back(pid);
      pollfd p{answered.read.get(), POLLIN, 0};
      char verdict = 0;
      if (::poll(&p, 1, 2000) != 1 || ::read(answered.read.get(), &verdict, 1) != 1) {
        sbtest::report(report_fd, "holder " + std::to_string(i) + " got no answer within 2 s");
        break;
      }
      (verdict == 'g' ? granted : refused)++;
    }
    sbtest::report(report_fd, std::to_string(granted) + " granted, " + std::to_string(refused) + " refused");
    notify(forked);
    (void)await(release);
    for (pid_t pid : holders) ::kill(pid, SIGKILL);
    for (pid_t pid : holders) ::waitpid(pid, nullptr, 0);
    return 0;
  });
  ASSERT_TRUE(await(forked, 60000));
  notify(release);  // the army kills its holders
  auto result = army.wait();
  // Each request is answered, granted or refused, even at the limit...
  EXPECT_EQ(result.output.find("no answer"), std::string::npos) << result.output;
  // ...and once the holders are gone their pidfds are released and service resumes.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  expect_serving_or_kill(*broker, baseline);
}

// Found by this suite: ensure_descriptor_budget() reserved one descriptor per
// client, but every session holds two (the connection and its pidfd), every
// holder one more, every reuse_port member's dup one more. The broker now
// raises its soft limit to the hard one and warns when that is below its
// estimate.
TEST_F(Adversarial, DescriptorBudgetCoversEveryClientTheLimitsAdmit) {
  TempDir dir;
  // 300 + 1 + 64 = 365 <= 400: the broker believes 300 clients fit.
  auto broker = start_with_descriptor_limit(
      dir, policy().broker("max_clients", "300").broker("max_clients_per_uid", "300").broker("request_timeout_ms", "30000"), 400);
  ASSERT_TRUE(broker);
  const int baseline = baseline_of(*broker);
  auto child = sbtest::run_as_nobody([&](int report_fd) {
    std::vector<UniqueFd> held;
    int served = 0;
    for (int i = 0; i < 250; ++i) {
      UniqueFd conn = connect_control(broker->control());
      Incoming in;
      if (conn && send_raw(conn.get(), list_request(0)) == 0) in = receive(conn.get(), 1000);
      auto reply = reply_of(in);
      if (!reply || !std::holds_alternative<proto::Listing>(*reply)) {
        sbtest::report(report_fd, "client " + std::to_string(i) + ": " + describe(in));
        break;
      }
      ++served;
      held.push_back(std::move(conn));
    }
    sbtest::report(report_fd, "served " + std::to_string(served) + " of 250");
    return served == 250 ? 0 : 1;
  });
  EXPECT_EQ(child.exit_code, 0) << child.output;
  expect_serving_or_kill(*broker, baseline);
}

}  // namespace
